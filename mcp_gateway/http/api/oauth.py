"""OAuth grants in the admin API: what each person allowed which MCP client, and revoking it.

A grant is one sign-in of an MCP client through the gateway's OAuth server (a refresh-token
family); revoking it ends its access tokens at once on this gateway and within one store poll on
the others. The caller's own grants are under `/api/me/grants` (`me.py`).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from mcp_gateway.store.oauth import OAuthGrantRecord

if TYPE_CHECKING:
    from mcp_gateway.http.gateway import Gateway


class GrantOut(BaseModel):
    id: str
    client_name: str | None
    redirect_host: str | None
    subject_kind: str
    virtual_key_id: str | None
    user_id: str | None
    resource: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    revoked_reason: str | None


def grant_out(record: OAuthGrantRecord) -> GrantOut:
    return GrantOut(
        id=record.id,
        client_name=record.client_name,
        redirect_host=record.redirect_host,
        subject_kind=record.subject_kind,
        virtual_key_id=record.virtual_key_id,
        user_id=record.user_id,
        resource=record.resource,
        created_at=record.created_at,
        last_used_at=record.last_used_at,
        revoked_at=record.revoked_at,
        revoked_reason=record.revoked_reason,
    )


async def revoke_grant(gateway: Gateway, grant_id: str, reason: str) -> GrantOut:
    """Revoke a grant and refuse its access tokens in this process at once; 404 when there is none."""
    record = await gateway.running_store().revoke_oauth_grant(grant_id, reason)
    if record is None:
        raise HTTPException(404, f"no OAuth grant {grant_id}")
    gateway.grant_revoked(grant_id)
    return grant_out(record)


def oauth_grant_routes(gateway: Gateway, router: APIRouter) -> None:
    """`/oauth/grants` on the admin router."""

    @router.get("/oauth/grants", tags=["oauth"])
    async def list_grants(
        virtual_key_id: str | None = None, user_id: str | None = None, include_revoked: bool = False
    ) -> list[GrantOut]:
        """Sign-ins of MCP clients, newest first."""
        records = await gateway.running_store().list_oauth_grants(
            virtual_key_id=virtual_key_id, user_id=user_id, include_revoked=include_revoked
        )
        return [grant_out(r) for r in records]

    @router.delete("/oauth/grants/{grant_id}", tags=["oauth"])
    async def delete_grant(grant_id: str) -> GrantOut:
        """Revoke a grant: its client must sign in again."""
        return await revoke_grant(gateway, grant_id, "revoked by an administrator")
