"""The caller's own endpoints under /api/me: authenticated as an MCP caller, never as an admin.

The caller is identified exactly as on `/mcp` (a virtual key, an SSO token or the session
header), by the same `http.identify.identify`; what they can touch is only what belongs to
that identity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel

from mcp_gateway.errors import AuthError
from mcp_gateway.http.api.credentials import close_session
from mcp_gateway.http.api.oauth import GrantOut, grant_out, revoke_grant
from mcp_gateway.http.identify import identify
from mcp_gateway.identity import Identity, IdentityMode

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

    def owner(identity: Identity) -> tuple[str | None, str | None]:
        key = identity.virtual_key.id if identity.virtual_key is not None else None
        if key is None and identity.user_id is None:
            raise AuthError("identify yourself with your virtual key or SSO token to see your sign-ins")
        return key, identity.user_id

    @router.get("/me/grants")
    async def my_grants(request: Request) -> list[GrantOut]:
        """The MCP clients the caller signed in through the gateway's OAuth server (their key's or their user's)."""
        key, user = owner(await identify(gateway.resolver, request.scope))
        records = await gateway.running_store().list_oauth_grants(virtual_key_id=key, user_id=user)
        return [grant_out(r) for r in records]

    @router.delete("/me/grants/{grant_id}")
    async def revoke_my_grant(grant_id: str, request: Request) -> GrantOut:
        """Sign one of the caller's MCP clients out (404 for a grant that is not theirs)."""
        key, user = owner(await identify(gateway.resolver, request.scope))
        record = await gateway.running_store().get_oauth_grant(grant_id)
        if record is None or not ((key and record.virtual_key_id == key) or (user and record.user_id == user)):
            raise HTTPException(404, f"no OAuth grant {grant_id} of yours")
        return await revoke_grant(gateway, grant_id, "revoked by its owner")

    return router
