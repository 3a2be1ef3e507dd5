"""Start the test authorization server and protected upstream, and click through consent like a browser.

Async context managers (usable from any anyio test):

    from tests.oauth.fixtures import oauth_stack, complete_consent

    async with oauth_stack() as stack:            # stack.auth_server, stack.upstream
        ...                                       # stack.upstream.url is the protected MCP endpoint

and the same as pytest fixtures (`oauth_auth_server`, `oauth_upstream`), which a test module enables with
`pytest_plugins = ["tests.oauth.fixtures"]` or by importing them.

`complete_consent(consent_url, user, http)` plays the user's browser: it opens the consent URL, submits the
authorization server's consent form as `user`, and follows the redirects to wherever the client registered
its redirect URI (the gateway's /oauth/callback, or a `callback_receiver()`), returning the final response.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

import anyio
import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from tests.oauth.authorization_server import MiniAuthorizationServer
from tests.oauth.protected_upstream import ProtectedUpstream
from tests.serving import free_port, serve_asgi


@contextlib.asynccontextmanager
async def authorization_server(**options: Any) -> AsyncIterator[MiniAuthorizationServer]:
    """A running `MiniAuthorizationServer(**options)` (see its constructor for the knobs)."""
    async with MiniAuthorizationServer(**options).running() as server:
        yield server


@contextlib.asynccontextmanager
async def protected_upstream(auth_server: MiniAuthorizationServer, **options: Any) -> AsyncIterator[ProtectedUpstream]:
    """A running `ProtectedUpstream` whose tokens come from (and are introspected at) `auth_server`."""
    options.setdefault("introspection_endpoint", auth_server.introspection_endpoint)
    options.setdefault("client_id", auth_server.introspection_client_id)
    options.setdefault("client_secret", auth_server.introspection_client_secret)
    async with ProtectedUpstream(auth_server.issuer, **options).running() as upstream:
        yield upstream


@dataclass
class OAuthStack:
    auth_server: MiniAuthorizationServer
    upstream: ProtectedUpstream


@contextlib.asynccontextmanager
async def oauth_stack(
    auth_options: Mapping[str, Any] | None = None, upstream_options: Mapping[str, Any] | None = None
) -> AsyncIterator[OAuthStack]:
    """Authorization server and protected upstream together."""
    async with (
        authorization_server(**dict(auth_options or {})) as auth_server,
        protected_upstream(auth_server, **dict(upstream_options or {})) as upstream,
    ):
        yield OAuthStack(auth_server, upstream)


@pytest.fixture
async def oauth_auth_server() -> AsyncIterator[MiniAuthorizationServer]:
    async with authorization_server() as server:
        yield server


@pytest.fixture
async def oauth_upstream(oauth_auth_server: MiniAuthorizationServer) -> AsyncIterator[ProtectedUpstream]:
    async with protected_upstream(oauth_auth_server) as upstream:
        yield upstream


# --- the user's browser ---------------------------------------------------------------------------


@dataclass
class _Form:
    action: str = ""
    method: str = "get"
    fields: dict[str, str] = field(default_factory=dict)


class _ConsentFormParser(HTMLParser):
    """Finds the first POST form and its named inputs (hidden fields carry the OAuth request)."""

    def __init__(self) -> None:
        super().__init__()
        self.form: _Form | None = None
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form" and self.form is None and attributes.get("method", "get").lower() == "post":
            self.form = _Form(action=attributes.get("action", ""), method="post")
            self._inside = True
        elif tag == "input" and self._inside and self.form is not None and attributes.get("name"):
            self.form.fields[attributes["name"]] = attributes.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._inside = False


async def complete_consent(
    consent_url: str, user: str, http: httpx2.AsyncClient, *, decision: str = "approve"
) -> httpx2.Response:
    """Open the consent page, submit it as `user` (`decision="deny"` to refuse), follow the redirects.

    When the page is not a consent form (the server redirected at once, or answered with an error), that
    response is returned as it is, so the caller can assert on it.
    """
    page = await http.get(consent_url, follow_redirects=True)
    if page.status_code != 200 or "text/html" not in page.headers.get("content-type", ""):
        return page
    parser = _ConsentFormParser()
    parser.feed(page.text)
    if parser.form is None:
        return page
    data = {**parser.form.fields, "user": user, "decision": decision}
    return await http.post(urljoin(str(page.url), parser.form.action), data=data, follow_redirects=True)


# --- a redirect URI for tests that act as the OAuth client themselves -----------------------------


@dataclass
class CallbackReceiver:
    """A tiny web app standing in for a client's redirect URI; records each callback's query parameters."""

    url: str
    received: list[dict[str, str]] = field(default_factory=list)

    async def wait(self, count: int = 1, timeout: float = 10.0) -> dict[str, str]:
        """The `count`-th callback (1-based), waiting for it if needed."""
        with anyio.fail_after(timeout):
            while len(self.received) < count:
                await anyio.sleep(0.01)
        return self.received[count - 1]


@contextlib.asynccontextmanager
async def callback_receiver(path: str = "/callback") -> AsyncIterator[CallbackReceiver]:
    port = free_port()
    receiver = CallbackReceiver(url=f"http://127.0.0.1:{port}{path}")

    async def callback(request: Request) -> Response:
        receiver.received.append(dict(request.query_params))
        return HTMLResponse("<p>Authorization received. You can close this tab.</p>")

    async with serve_asgi(Starlette(routes=[Route(path, callback)]), port, lifespan="off"):
        yield receiver
