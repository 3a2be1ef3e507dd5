"""REST endpoints for stored credentials: admins list and revoke; a caller removes their own.

Nothing here ever returns a secret: only who, which upstream, what kind, and its state.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel

from mcp_gateway.credentials.broker import SHARED_PRINCIPAL, CredentialBroker
from mcp_gateway.errors import AuthError
from mcp_gateway.identity import IdentityMode
from mcp_gateway.upstreams.per_user import PerUserUpstream

if TYPE_CHECKING:
    from mcp_gateway.app import Gateway


class CredentialOut(BaseModel):
    id: str
    identity: str
    upstream: str
    kind: str
    state: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None


class Removed(BaseModel):
    upstream: str
    removed: int


class AuthorizeOut(BaseModel):
    url: str
    expires_in: int


def _broker(gateway: Gateway) -> CredentialBroker:
    if gateway.broker is None:
        raise HTTPException(503, "the gateway is starting or stopping; try again")
    return gateway.broker


def _close_session(gateway: Gateway, owner: str, upstream: str) -> None:
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
        infos = await _broker(gateway).vault.list(upstream=upstream, identity_key=identity)
        return [_out(info) for info in infos]

    @router.delete("/credentials/{credential_id}", tags=["credentials"])
    async def revoke_credential(credential_id: str) -> CredentialOut:
        """Delete one credential; its owner's open upstream session is closed, and their next call asks again."""
        broker = _broker(gateway)
        info = await broker.vault.delete_by_id(credential_id)
        if info is None:
            raise HTTPException(404, f"no credential with id {credential_id!r}")
        broker.flows.discard(info.identity_key, info.upstream)
        _close_session(gateway, info.identity_key, info.upstream)
        return _out(info)

    @router.post("/mcp/client/{name}/authorize", tags=["upstreams"])
    async def authorize_upstream(name: str, request: Request) -> AuthorizeOut:
        """For `auth: oauth` upstreams: a consent link an admin opens once; the upstream connects after."""
        connection = gateway.manager.connections.get(name)
        if connection is None:
            raise HTTPException(404, f"no running upstream named {name!r}")
        link = await gateway.shared_consent_link(name, str(request.base_url).rstrip("/").removesuffix("/api"))
        broker = _broker(gateway)
        return AuthorizeOut(url=link, expires_in=int(broker.flows.ttl))


def caller_credential_routes(gateway: Gateway) -> APIRouter:
    """`/me/...`: authenticated as an MCP caller (virtual key, SSO token or session id), not as an admin."""
    router = APIRouter(tags=["me"])

    @router.delete("/me/credentials/{upstream}")
    async def remove_my_credentials(upstream: str, request: Request) -> Removed:
        """Forget the caller's own credentials for `upstream` and close their session to it."""
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            identity = await gateway.resolver.resolve(headers)
        except AuthError as exc:
            raise HTTPException(401, exc.message, headers={"WWW-Authenticate": 'Bearer realm="mcpgw"'}) from None
        if identity.mode is IdentityMode.ANONYMOUS or not identity.subject:
            raise HTTPException(
                401,
                "identify yourself as on /mcp (a virtual key, an SSO token or x-bf-mcp-session-id) "
                "to remove your credentials",
            )
        broker = _broker(gateway)
        removed = await broker.vault.delete(identity.key, upstream)
        broker.flows.discard(identity.key, upstream)
        _close_session(gateway, identity.key, upstream)
        return Removed(upstream=upstream, removed=removed)

    return router


def _out(info: Any) -> CredentialOut:
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
