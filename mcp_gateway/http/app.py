"""Assembly: one `Gateway` and the Starlette application that serves its faces.

Routes: `/mcp` (MCP clients), `/api` (admin REST API and the caller's `/api/me`), `/healthz`
and `/readyz` (operators), `/metrics` (Prometheus), and the consent pages a person's browser
opens from a link (per-user headers form, OAuth callback). This module only wires them; each
face lives in its own module and the runtime state they share in `http/gateway.py`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from llm_gateway.http_common import anthropic_refusal, openai_refusal
from llm_gateway.routes import llm_routes
from llm_gateway.tools.execute import tool_execute_routes
from mcp_gateway.config import GatewayConfig
from mcp_gateway.errors import NotReady
from mcp_gateway.http.answers import AnswerAsJson
from mcp_gateway.http.api.app import create_admin_api
from mcp_gateway.http.consent import credential_routes
from mcp_gateway.http.fast_calls import FastCalls
from mcp_gateway.http.gateway import Gateway, resolve_database_url
from mcp_gateway.http.guards import BrowserCors, EnvelopeGuard, HostOriginGuard, is_loopback, transport_security
from mcp_gateway.http.health import operator_routes
from mcp_gateway.http.identify import IdentityMiddleware
from mcp_gateway.http.mcp_server import build_server
from mcp_gateway.http.oauth.provider import GatewayOAuthProvider
from mcp_gateway.http.oauth.routes import challenge, oauth_routes
from mcp_gateway.http.oauth.sso import SsoClient
from mcp_gateway.http.ratelimit import ConcurrentCalls, limit_requests
from mcp_gateway.http.request_context import RequestContextMiddleware
from mcp_gateway.http.sdk_server import end_session
from mcp_gateway.oauth_server.tokens import TokenKeys
from mcp_gateway.supervisor import Supervisor

__all__ = ["Gateway", "create_gateway", "is_loopback", "resolve_database_url"]


def create_gateway(
    config: GatewayConfig,
    *,
    database_url: str | None = None,
    admin_token: str | None = None,
    insecure_admin: bool = False,
    supervisor: Supervisor | None = None,
) -> Gateway:
    """Build the gateway. `config` may still hold `${VAR}` references; they are expanded per upstream.

    `supervisor` runs the background tasks; tests pass one with a short restart backoff.
    """
    gateway = Gateway(config, database_url=database_url, supervisor=supervisor or Supervisor())
    limiter = ConcurrentCalls(config.limits.concurrent_calls) if config.limits.concurrent_calls is not None else None
    gateway.sessions = _mcp_sessions(gateway, limiter)
    oauth = _oauth_provider(gateway)
    mcp_endpoint = _mcp_endpoint(gateway, oauth, limiter)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        faces: list[contextlib.AbstractAsyncContextManager[object]] = [gateway.sessions.run()]
        if gateway.llm is not None:
            faces.append(contextlib.aclosing(gateway.llm))
        async with gateway.running(*faces):
            yield

    manager = gateway.manager
    cors: dict[str, Any] = {
        "allow_origins": config.cors.allowed_origins,
        "allow_methods": ["GET", "POST", "DELETE", "PUT", "OPTIONS"],
        "allow_headers": config.cors.allowed_headers,
        "expose_headers": ["Mcp-Session-Id", "X-Request-Id"],
    }
    gateway.app = GatewayApp(
        RequestContextMiddleware(BrowserCors(mcp_endpoint, **cors), metrics=gateway.metrics),
        routes=[
            Mount("/api", app=create_admin_api(gateway, token=admin_token, insecure=insecure_admin)),
            Route("/mcp", endpoint=mcp_endpoint, methods=["GET", "POST", "DELETE"]),
            *operator_routes(gateway),
            *(
                oauth_routes(
                    oauth,
                    gateway.caches.key,
                    allow_anonymous=config.auth.oauth.allow_anonymous,
                    sso=_sso_client(gateway, oauth),
                )
                if oauth is not None
                else []
            ),
            *(_llm_routes(gateway) if gateway.llm is not None else []),
            *credential_routes(
                gateway.flows,
                lambda: gateway.broker,
                lambda: {name: c.config for name, c in manager.connections.items()},
                manager.credential_stored,
            ),
        ],
        middleware=[
            # Outermost: every log line of a request carries its id, and every response is counted.
            Middleware(RequestContextMiddleware, metrics=gateway.metrics),
            Middleware(BrowserCors, **cors),
        ],
        lifespan=lifespan,
    )
    return gateway


def _mcp_sessions(gateway: Gateway, limiter: ConcurrentCalls | None) -> StreamableHTTPSessionManager:
    """The MCP server over the gateway's state, in the SDK's streamable-HTTP session manager."""

    async def end_client_session(session_id: str) -> None:
        await end_session(gateway.sessions, session_id)
        gateway.facts.forget(session_id)

    server = build_server(
        gateway.manager,
        gateway.clients,
        gateway.policy,
        gateway.tools,
        gateway.refresh_identity,
        end_session=end_client_session,
    )
    gateway.tool_lists = server.tool_lists
    if limiter is not None:
        server.middleware.append(limiter)
    # Host/Origin are checked once, by HostOriginGuard in front of /mcp (before identity and rate
    # limits); handing the same settings to the SDK as well would check every request twice.
    return StreamableHTTPSessionManager(
        app=server, security_settings=None, max_request_body_size=gateway.config.server.max_body_bytes
    )


def _oauth_provider(gateway: Gateway) -> GatewayOAuthProvider | None:
    """The OAuth server for `/mcp` (MCP hosts' sign-in), unless `/mcp` takes header credentials only."""
    config = gateway.config
    if config.auth.mcp_auth == "headers":
        return None

    def keys() -> TokenKeys:
        if gateway.oauth_keys is None:
            raise NotReady("the gateway is starting or stopping; try again")
        return gateway.oauth_keys

    return GatewayOAuthProvider(
        config.auth.oauth,
        config.server.public_url,
        gateway.running_store,
        keys,
        gateway.caches.key_by_id,
        gateway.find_user_by_id,
        gateway.grant_revoked,
    )


class GatewayApp(Starlette):
    """The gateway's Starlette app, with a short lane for `POST /mcp` (the hot path).

    Every other request takes the usual way: Starlette's error middleware, the request context and
    CORS middleware, its exception middleware, the router. A `POST /mcp` gets the same request
    context (request id, metrics) and CORS, then the MCP endpoint directly: the router's matching and
    the two Starlette middlewares cost ~10 % of the gateway's CPU per call, and do nothing for it (the
    endpoint answers every error itself; an exception that still escapes is answered with a 500 by
    uvicorn, and counted by the request context, as Starlette's error middleware would).
    """

    def __init__(self, mcp_post: ASGIApp, **options: Any) -> None:
        super().__init__(**options)
        self._mcp_post = mcp_post

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/mcp":
            scope["app"] = self
            await self._mcp_post(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def _sso_client(gateway: Gateway, oauth: GatewayOAuthProvider) -> SsoClient | None:
    """Sign-in with the company's IdP on the consent page, when `auth.oauth.sso` is configured."""
    settings = gateway.config.auth.oauth.sso
    if settings is None:
        return None

    async def sign_in(user_id: str, email: str | None) -> bool:
        return (await gateway.running_store().upsert_user(user_id, email=email)).active

    return SsoClient(settings, oauth, oauth.keys, sign_in)


def _mcp_endpoint(
    gateway: Gateway, oauth: GatewayOAuthProvider | None, limiter: ConcurrentCalls | None
) -> HostOriginGuard:
    """`/mcp`, outermost first: Host/Origin (421/403), the caller (401, saying where to sign in), the
    caller's request rate (429, before the body is read), the body (413, JSON-RPC parse/envelope
    errors); plain tools/call answered by the fast path; then the SDK."""
    config = gateway.config
    sdk: ASGIApp = gateway.facts.record(AnswerAsJson(StreamableHTTPASGIApp(gateway.sessions)))
    if config.server.fast_tool_calls and os.environ.get("MCPGW_FAST_PATH", "on").lower() not in ("off", "0", "false"):
        gateway.fast = FastCalls(
            sdk,
            sessions=gateway.sessions,
            facts=gateway.facts,
            tools=gateway.tools,
            limiter=limiter,
            lists=gateway.tool_lists,
            clients=gateway.clients,
        )
        sdk = gateway.fast
    guarded = EnvelopeGuard(sdk, config.server.max_body_bytes)
    identified = IdentityMiddleware(
        limit_requests(guarded, config.limits),
        gateway.resolver,
        challenge=(lambda scope: challenge(oauth, scope)) if oauth is not None else None,
    )
    return HostOriginGuard(identified, transport_security(config.server))


def _llm_routes(gateway: Gateway) -> list[BaseRoute]:
    """`/anthropic` and `/openai`, each behind the identity middleware `/mcp` uses, refusing in its API's shape."""
    assert gateway.llm is not None
    resolver = gateway.resolver
    openai_guard = lambda app: IdentityMiddleware(app, resolver, refuse=openai_refusal, face="llm")  # noqa: E731
    return [
        *llm_routes(
            gateway.llm,
            anthropic_guard=lambda app: IdentityMiddleware(app, resolver, refuse=anthropic_refusal, face="llm"),
            openai_guard=openai_guard,
        ),
        *tool_execute_routes(lambda: gateway.llm.tools if gateway.llm is not None else None, openai_guard),
    ]
