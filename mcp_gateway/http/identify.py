"""Who is calling: the one place a face turns request headers into an `Identity`.

`IdentityMiddleware` sits in front of every face that serves callers (`/mcp`, `/api/me/...`,
and the LLM routes to come); it resolves the caller once, refuses bad credentials with 401,
and leaves the `Identity` in the ASGI scope where the face (and the rate limits) read it with
`identity_in_scope`. Which headers count (`Authorization`, `x-bf-vk`, `X-Api-Key`, the session
header) is `identity.IdentityResolver`'s business, not this module's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from mcp import MCPError
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.context import ServerRequestContext
from mcp_types import INTERNAL_ERROR
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_gateway.errors import AuthError
from mcp_gateway.identity import IDENTITY_SCOPE_KEY, Identity, IdentityResolver, headers_in_scope, identity_in_scope
from mcp_gateway.store import StoreError

logger = logging.getLogger(__name__)

_STORE_DOWN = "mcpgw cannot check credentials right now (its database is unavailable); try again shortly"

Refusal = Callable[[int, str, dict[str, str]], Response]
"""Shapes a refusal (status, message, headers) in the face's own error format."""


def jsonrpc_refusal(status: int, message: str, headers: dict[str, str]) -> Response:
    """How `/mcp` refuses a caller: a JSON-RPC error with no id (the request was never read)."""
    code = -32001 if status == 401 else -32603
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=headers)


def rest_refusal(status: int, message: str, headers: dict[str, str]) -> Response:
    """How the REST endpoints refuse a caller: FastAPI's `{"detail": ...}`."""
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


class IdentityMiddleware:
    """Resolves the caller before the face sees the request; refuses bad credentials with 401.

    The resolved identity also becomes the ASGI `user`, which makes the SDK bind each MCP
    session to the identity that created it (the same session id with other credentials: 404).
    """

    def __init__(
        self,
        app: ASGIApp,
        resolver: IdentityResolver,
        refuse: Refusal = jsonrpc_refusal,
        *,
        face: str = "mcp",
        challenge: Callable[[Scope], str] | None = None,
    ) -> None:
        """`challenge`: the `WWW-Authenticate` value of a 401 (for `/mcp`: where to sign in, RFC 9728)."""
        self.app = app
        self.resolver = resolver
        self.refuse = refuse
        self.face = face
        self.challenge = challenge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await identify(self.resolver, scope, face=self.face)
        except AuthError as exc:
            challenge = self.challenge(scope) if self.challenge is not None else 'Bearer realm="mcpgw"'
            refusal = self.refuse(401, exc.message, {"WWW-Authenticate": challenge})
            await refusal(scope, receive, send)
            return
        except StoreError as exc:
            # A key not in the cache cannot be checked while the database is down: a retryable 503,
            # not a 500 with a traceback (and never a guess either way).
            logger.warning("cannot check a credential: %s", exc.message)
            await self.refuse(503, _STORE_DOWN, {"Retry-After": "5"})(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def identify(resolver: IdentityResolver, scope: Scope, *, face: str = "api") -> Identity:
    """Resolve the caller of an HTTP request and remember it in `scope`; raises `AuthError`, `StoreError`.

    `IdentityMiddleware` calls this for whole faces; a REST endpoint whose neighbours have
    another principal (the caller's own `/api/me/...` among the admin endpoints) calls it itself.
    """
    identity = identity_in_scope(scope)
    if identity is not None:
        return identity
    identity = await resolver.resolve(headers_in_scope(scope), face=face)
    scope.setdefault("state", {})[IDENTITY_SCOPE_KEY] = identity
    scope["user"] = _principal(identity)
    return identity


def identity_of(ctx: ServerRequestContext[Any, Any]) -> Identity:
    """The caller of an MCP request (every `/mcp` request passed `IdentityMiddleware`)."""
    identity = identity_in_scope(ctx.request.scope) if ctx.request is not None else None
    if identity is None:
        # Every /mcp request passes the identity middleware; reaching here is a wiring bug.
        raise MCPError(INTERNAL_ERROR, "request has no resolved identity")
    return identity


_PRINCIPALS: dict[str, AuthenticatedUser] = {}
_MAX_PRINCIPALS = 10_000


def _principal(identity: Identity) -> AuthenticatedUser:
    """The SDK's principal for `identity` (what it binds a session to): one per caller, made once —
    two pydantic models per request otherwise. Nothing secret in it (the key is a hash or an id)."""
    key = identity.key
    principal = _PRINCIPALS.get(key)
    if principal is None:
        if len(_PRINCIPALS) >= _MAX_PRINCIPALS:
            _PRINCIPALS.clear()
        principal = _PRINCIPALS[key] = AuthenticatedUser(
            AccessToken(token="", client_id="mcpgw", scopes=[], subject=key)
        )
    return principal
