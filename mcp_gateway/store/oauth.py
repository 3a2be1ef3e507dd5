"""The gateway's own OAuth server: grants (refresh-token families), authorization codes, refresh tokens.

Codes and refresh tokens are stored as SHA-256 digests only. "Use once" is one conditional
UPDATE (`used_at IS NULL`), so two replicas racing for the same code or refresh token cannot both
win; the loser learns it was a reuse. Revoking a grant bumps the store revision, so every
replica drops the grant's access tokens within one poll. Expired codes and refresh tokens are
pruned whenever a code is made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, update
from sqlmodel import col, select

from mcp_gateway.store.base import StoreBase, _completes
from mcp_gateway.store.models import OAuthCode, OAuthGrant, OAuthRefreshToken


@dataclass(frozen=True, slots=True)
class OAuthGrantRecord:
    id: str
    client_id: str
    client_name: str | None
    redirect_host: str | None
    subject_kind: str
    virtual_key_id: str | None
    user_id: str | None
    session_id: str | None
    resource: str | None
    scope: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    revoked_reason: str | None


@dataclass(frozen=True, slots=True)
class UsedSecret:
    """A code or refresh token presented at the token endpoint: what it carries, and whether it was used before."""

    reused: bool
    grant_id: str | None
    request: Mapping[str, Any]


class OAuthStore(StoreBase):
    """`Store`'s OAuth-server methods."""

    @_completes
    async def create_oauth_code(self, code_hash: str, request: Mapping[str, Any], expires_at: datetime) -> None:
        now = self._clock()
        async with self._writing(bump=False) as session:
            await session.exec(delete(OAuthCode).where(col(OAuthCode.expires_at) < now - timedelta(hours=1)))
            await session.exec(delete(OAuthRefreshToken).where(col(OAuthRefreshToken.expires_at) < now))
            session.add(OAuthCode(code_hash=code_hash, request=dict(request), expires_at=expires_at))

    @_completes
    async def use_oauth_code(self, code_hash: str) -> UsedSecret | None:
        """Mark a code used; None when unknown or expired."""
        now = self._clock()
        async with self._writing(bump=False) as session:
            row = await session.get(OAuthCode, code_hash)
            if row is None or row.expires_at < now:
                return None
            marked = await session.exec(
                update(OAuthCode)
                .where(col(OAuthCode.code_hash) == code_hash, col(OAuthCode.used_at).is_(None))
                .values(used_at=now)
            )
            return UsedSecret(marked.rowcount != 1, row.grant_id, dict(row.request))

    @_completes
    async def create_oauth_grant(
        self, code_hash: str, fields: Mapping[str, Any], refresh_hash: str, refresh_expires_at: datetime
    ) -> OAuthGrantRecord:
        """A grant for an exchanged code, with its first refresh token."""
        now = self._clock()
        async with self._writing(bump=False) as session:
            grant = OAuthGrant(**fields, created_at=now, last_used_at=now)
            session.add(grant)
            session.add(OAuthRefreshToken(token_hash=refresh_hash, grant_id=grant.id, expires_at=refresh_expires_at))
            await session.exec(update(OAuthCode).where(col(OAuthCode.code_hash) == code_hash).values(grant_id=grant.id))
            await session.flush()
            return _grant_record(grant)

    @_completes
    async def use_refresh_token(self, token_hash: str) -> tuple[UsedSecret, OAuthGrantRecord] | None:
        """Mark a refresh token used; None when unknown, expired, or its grant is gone."""
        now = self._clock()
        async with self._writing(bump=False) as session:
            row = await session.get(OAuthRefreshToken, token_hash)
            grant = await session.get(OAuthGrant, row.grant_id) if row is not None else None
            if row is None or grant is None or row.expires_at < now:
                return None
            marked = await session.exec(
                update(OAuthRefreshToken)
                .where(col(OAuthRefreshToken.token_hash) == token_hash, col(OAuthRefreshToken.used_at).is_(None))
                .values(used_at=now)
            )
            return UsedSecret(marked.rowcount != 1, grant.id, {}), _grant_record(grant)

    @_completes
    async def rotate_refresh_token(self, grant_id: str, token_hash: str, expires_at: datetime) -> None:
        now = self._clock()
        async with self._writing(bump=False) as session:
            session.add(OAuthRefreshToken(token_hash=token_hash, grant_id=grant_id, expires_at=expires_at))
            await session.exec(update(OAuthGrant).where(col(OAuthGrant.id) == grant_id).values(last_used_at=now))

    @_completes
    async def revoke_oauth_grant(self, grant_id: str, reason: str) -> OAuthGrantRecord | None:
        """Revoke a grant (and so all its tokens); None when there is no such grant. Idempotent."""
        now = self._clock()
        async with self._writing() as session:
            grant = await session.get(OAuthGrant, grant_id)
            if grant is None:
                return None
            if grant.revoked_at is None:
                grant.revoked_at, grant.revoked_reason = now, reason
                session.add(grant)
                await session.exec(delete(OAuthRefreshToken).where(col(OAuthRefreshToken.grant_id) == grant_id))
            await session.flush()
            return _grant_record(grant)

    @_completes
    async def get_oauth_grant(self, grant_id: str) -> OAuthGrantRecord | None:
        async with self._reading() as session:
            grant = await session.get(OAuthGrant, grant_id)
            return _grant_record(grant) if grant is not None else None

    @_completes
    async def list_oauth_grants(
        self,
        *,
        virtual_key_id: str | None = None,
        user_id: str | None = None,
        include_revoked: bool = False,
        limit: int = 500,
    ) -> list[OAuthGrantRecord]:
        """Grants, newest first; a person's own are theirs by key or by user id."""
        statement = select(OAuthGrant).order_by(col(OAuthGrant.created_at).desc()).limit(limit)
        if virtual_key_id is not None and user_id is not None:
            statement = statement.where(
                (col(OAuthGrant.virtual_key_id) == virtual_key_id) | (col(OAuthGrant.user_id) == user_id)
            )
        elif virtual_key_id is not None:
            statement = statement.where(col(OAuthGrant.virtual_key_id) == virtual_key_id)
        elif user_id is not None:
            statement = statement.where(col(OAuthGrant.user_id) == user_id)
        if not include_revoked:
            statement = statement.where(col(OAuthGrant.revoked_at).is_(None))
        async with self._reading() as session:
            return [_grant_record(row) for row in await session.exec(statement)]

    @_completes
    async def oauth_grants_revoked_since(self, since: datetime) -> set[str]:
        """Ids of grants revoked after `since` (their access tokens may still be unexpired)."""
        async with self._reading() as session:
            rows = await session.exec(select(OAuthGrant.id).where(col(OAuthGrant.revoked_at) >= since))
            return set(rows)


def _grant_record(row: OAuthGrant) -> OAuthGrantRecord:
    return OAuthGrantRecord(
        id=row.id,
        client_id=row.client_id,
        client_name=row.client_name,
        redirect_host=row.redirect_host,
        subject_kind=row.subject_kind,
        virtual_key_id=row.virtual_key_id,
        user_id=row.user_id,
        session_id=row.session_id,
        resource=row.resource,
        scope=row.scope,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
        revoked_reason=row.revoked_reason,
    )
