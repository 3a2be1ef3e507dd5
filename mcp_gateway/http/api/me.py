"""The caller's own endpoints under /api/me: authenticated as an MCP caller, never as an admin.

The caller is identified exactly as on `/mcp` (a virtual key, an SSO token or the session
header), by the same `http.identify.identify`; what they can touch is only what belongs to
that identity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from pydantic import BaseModel

from mcp_gateway.errors import AuthError
from mcp_gateway.http.api.credentials import close_session
from mcp_gateway.http.identify import identify
from mcp_gateway.identity import IdentityMode

if TYPE_CHECKING:
    from mcp_gateway.http.gateway import Gateway


class Removed(BaseModel):
    upstream: str
    removed: int


def caller_routes(gateway: Gateway) -> APIRouter:
    """`/me/...`: authenticated as an MCP caller (virtual key, SSO token or session id), not as an admin."""
    router = APIRouter(tags=["me"])

    @router.delete("/me/credentials/{upstream}")
    async def remove_my_credentials(upstream: str, request: Request) -> Removed:
        """Forget the caller's own credentials for `upstream` and close their session to it."""
        identity = await identify(gateway.resolver, request.scope)
        if identity.mode is IdentityMode.ANONYMOUS or not identity.subject:
            raise AuthError(
                "identify yourself as on /mcp (a virtual key, an SSO token or x-bf-mcp-session-id) "
                "to remove your credentials"
            )
        broker = gateway.running_broker()
        removed = await broker.vault.delete(identity.key, upstream)
        broker.flows.discard(identity.key, upstream)
        close_session(gateway, identity.key, upstream)
        return Removed(upstream=upstream, removed=removed)

    return router
