"""HTTP endpoints of credential flows: the per-user headers form and the OAuth callback.

Both are reached by a person's browser, from a link a tool error (or URL elicitation) gave them;
the link's flow id is the only proof needed, because it was minted for exactly one identity and
upstream and works once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from mcp_gateway.config import PerUserHeaders, StdioUpstream, UpstreamConfig
from mcp_gateway.credentials.broker import CALLBACK_PATH, CredentialBroker
from mcp_gateway.credentials.flows import FlowKind, FlowRegistry, PendingFlow
from mcp_gateway.errors import OAuthError
from mcp_gateway.http.web.forms import credential_form_routes
from mcp_gateway.http.web.pages import result_page

logger = logging.getLogger(__name__)

BrokerRef = Callable[[], CredentialBroker | None]
UpstreamsRef = Callable[[], dict[str, UpstreamConfig]]
Stored = Callable[[PendingFlow], None]
"""Told when a flow has stored a credential (so the upstream can connect or list its tools)."""


def credential_routes(flows: FlowRegistry, broker: BrokerRef, upstreams: UpstreamsRef, stored: Stored) -> list[Route]:
    """`broker` is read per request: it exists only while the gateway runs (it needs the store)."""

    def header_keys_of(upstream: str) -> Sequence[str] | None:
        config = upstreams().get(upstream)
        if config is None or isinstance(config, StdioUpstream) or not isinstance(config.auth, PerUserHeaders):
            return None
        return config.auth.header_keys

    async def save(flow: PendingFlow, values: dict[str, str]) -> None:
        current = broker()
        if current is None:
            raise RuntimeError("the gateway is not running")
        await current.save_headers(flow, values)
        stored(flow)

    async def oauth_callback(request: Request) -> HTMLResponse:
        params = request.query_params
        state, code, error = params.get("state"), params.get("code"), params.get("error")
        current = broker()
        if current is None:
            return result_page(
                "Not available", "The gateway is starting or stopping; try again.", ok=False, status_code=503
            )
        if not state:
            return result_page("Sign-in failed", "The request has no state parameter.", ok=False, status_code=400)
        if error:
            flows.consume(state, FlowKind.OAUTH)
            # Only the error code: its description comes from elsewhere and is not ours to show.
            code_text = error if error.replace("_", "").isalnum() and len(error) <= 64 else "error"
            return result_page(
                "Sign-in cancelled",
                f"The provider answered '{code_text}'. Call the tool again for a fresh link.",
                ok=False,
                status_code=400,
            )
        if not code:
            return result_page("Sign-in failed", "The request has no authorization code.", ok=False, status_code=400)
        try:
            flow = await current.complete_oauth(state, code)
        except OAuthError as exc:
            return result_page("Sign-in failed", str(exc), ok=False, status_code=400)
        stored(flow)
        return result_page(
            "Signed in",
            f"mcpgw can now use {flow.upstream} as you. You can return to your client.",
            ok=True,
            status_code=200,
        )

    return [
        *credential_form_routes(flows, header_keys_of, save),
        Route(CALLBACK_PATH, endpoint=oauth_callback, methods=["GET"]),
    ]
