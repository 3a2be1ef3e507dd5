"""Stored credentials in the admin API: list and revoke (a caller removes their own through `/me`).

Nothing here ever returns a secret: only who, which upstream, what kind, and its state.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel

from mcp_gateway.credentials.broker import SHARED_PRINCIPAL
from mcp_gateway.upstreams.per_user import PerUserUpstream

if TYPE_CHECKING:
    from mcp_gateway.http.gateway import Gateway


class CredentialOut(BaseModel):
    id: str
    identity: str
    upstream: str
    kind: str
    state: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None


class AuthorizeOut(BaseModel):
    url: str
    expires_in: int


def close_session(gateway: Gateway, owner: str, upstream: str) -> None:
    """Close `owner`'s session to `upstream`, so their next call uses (or asks for) the credential as it is now."""
    connection = gateway.manager.connections.get(upstream)
    if isinstance(connection, PerUserUpstream):
        connection.close_session(owner)
    elif owner == SHARED_PRINCIPAL and connection is not None:
        connection.reconnect()


def admin_credential_routes(gateway: Gateway, router: APIRouter) -> None:
    """Adds the admin endpoints to `router` (which carries the admin-token check)."""

    @router.get("/credentials", tags=["credentials"])
    async def list_credentials(
        upstream: Annotated[str | None, Query(description="Only this upstream.")] = None,
        identity: Annotated[str | None, Query(description='Only this identity, e.g. "vk:<id>".')] = None,
    ) -> list[CredentialOut]:
        """Stored per-user (and shared OAuth) credentials, without their secrets."""
        infos = await gateway.running_broker().vault.list(upstream=upstream, identity_key=identity)
        return [credential_out(info) for info in infos]

    @router.delete("/credentials/{credential_id}", tags=["credentials"])
    async def revoke_credential(credential_id: str) -> CredentialOut:
        """Delete one credential; its owner's open upstream session is closed, and their next call asks again."""
        broker = gateway.running_broker()
        info = await broker.vault.delete_by_id(credential_id)
        if info is None:
            raise HTTPException(404, f"no credential with id {credential_id!r}")
        broker.flows.discard(info.identity_key, info.upstream)
        close_session(gateway, info.identity_key, info.upstream)
        return credential_out(info)

    @router.post("/mcp/client/{name}/authorize", tags=["upstreams"])
    async def authorize_upstream(name: str, request: Request) -> AuthorizeOut:
        """For `auth: oauth` upstreams: a consent link an admin opens once; the upstream connects after."""
        connection = gateway.manager.connections.get(name)
        if connection is None:
            raise HTTPException(404, f"no running upstream named {name!r}")
        link = await gateway.shared_consent_link(name, str(request.base_url).rstrip("/").removesuffix("/api"))
        broker = gateway.running_broker()
        return AuthorizeOut(url=link, expires_in=int(broker.flows.ttl))


def credential_out(info: Any) -> CredentialOut:
    return CredentialOut(
        id=info.id,
        identity=info.identity_key,
        upstream=info.upstream,
        kind=info.kind,
        state=str(info.state),
        created_at=info.created_at,
        updated_at=info.updated_at,
        expires_at=info.expires_at,
    )
