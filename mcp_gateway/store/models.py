"""SQLModel tables. The schema is owned by the Alembic migrations in `migrations/versions`;
`tests/test_store.py` checks the two agree, so change both together.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, Integer, LargeBinary, UniqueConstraint
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, on every database.

    PostgreSQL keeps `timestamptz`; SQLite has no time zones and would hand back naive values, so
    they are stored as naive UTC and re-labelled UTC on the way out. Naive input is refused rather
    than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware (UTC) datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite only auto-increments an `INTEGER PRIMARY KEY`; elsewhere audit ids get 64 bits.
_BigIntId = BigInteger().with_variant(Integer(), "sqlite")


class Upstream(SQLModel, table=True):
    __tablename__ = "upstream"

    id: str = Field(default_factory=new_id, primary_key=True)
    name: str = Field(unique=True, index=True)
    config: dict[str, Any] = Field(default_factory=dict, sa_type=JSON, nullable=False)
    allow_on_all_virtual_keys: bool = False
    source: str
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class User(SQLModel, table=True):
    __tablename__ = "user"

    id: str = Field(primary_key=True)
    email: str | None = None
    display_name: str | None = None
    mcp_configs: dict[str, list[str]] = Field(default_factory=dict, sa_type=JSON, nullable=False)
    active: bool = True
    """False: the user's SSO tokens and every virtual key they own are refused."""
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    last_seen_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class VirtualKey(SQLModel, table=True):
    __tablename__ = "virtual_key"

    id: str = Field(default_factory=new_id, primary_key=True)
    name: str
    description: str | None = None
    key_hash: str = Field(unique=True, index=True)
    key_prefix: str
    user_id: str | None = Field(default=None, foreign_key="user.id", ondelete="SET NULL", index=True)
    active: bool = True
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    llm: dict[str, Any] | None = Field(default=None, sa_type=JSON, nullable=True)
    """The key's LLM policy (allowed models, budgets) as `config_llm.KeyLlmPolicy` dumps it; None: no limits."""


class VkToolGrant(SQLModel, table=True):
    __tablename__ = "vk_tool_grant"
    __table_args__ = (UniqueConstraint("virtual_key_id", "upstream", name="uq_vk_tool_grant_virtual_key_id_upstream"),)

    id: int | None = Field(default=None, primary_key=True)
    virtual_key_id: str = Field(foreign_key="virtual_key.id", ondelete="CASCADE", index=True)
    upstream: str
    tools: list[str] = Field(default_factory=list, sa_type=JSON, nullable=False)


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True, sa_type=_BigIntId)
    ts: datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)
    identity_mode: str
    subject: str | None = None
    virtual_key_id: str | None = Field(default=None, index=True)
    upstream: str | None = None
    tool: str | None = None
    method: str
    duration_ms: float
    outcome: str
    detail: str | None = Field(default=None, max_length=500)
    llm_request_id: str | None = Field(default=None, index=True)


class LlmUsage(SQLModel, table=True):
    """One model request through `/anthropic` or `/openai`: who, routed where, tokens, cost, timing.

    Never the prompt or the completion.
    """

    __tablename__ = "llm_usage"

    id: int | None = Field(default=None, primary_key=True, sa_type=_BigIntId)
    ts: datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)
    api: str
    identity_mode: str
    subject: str | None = None
    virtual_key_id: str | None = Field(default=None, index=True)
    requested_model: str
    provider: str | None = None
    model: str | None = None
    rule: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None
    status: int
    error: str | None = Field(default=None, max_length=500)
    stream: bool = False
    fallback: bool = False
    attempts: int = 0
    duration_ms: float = 0.0
    ttfb_ms: float | None = None
    request_id: str | None = Field(default=None, index=True)


class LlmSetting(SQLModel, table=True):
    """A provider, routing rule, alias or price of the LLM gateway made through the admin API or CLI.

    These overlay the `llm:` section of gateway.yaml (same name: this one wins); nothing of the
    file is copied here, so no secret written in the file reaches the database. Provider secrets
    in these rows are `${VAR}` references only (the admin API and CLI refuse literal keys).
    """

    __tablename__ = "llm_setting"
    __table_args__ = (UniqueConstraint("kind", "name", name="uq_llm_setting_kind_name"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str
    name: str
    config: dict[str, Any] = Field(default_factory=dict, sa_type=JSON, nullable=False)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class StoreRevision(SQLModel, table=True):
    """One row (`id` = 1) whose counter every policy-relevant write bumps in the same transaction."""

    __tablename__ = "store_revision"

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    revision: int = 0


class VaultKey(SQLModel, table=True):
    """A data key of the credential vault, stored only wrapped (AES-GCM) under the master key.

    `key_check` is derived one-way from the master key, so a wrong master key is told apart from a
    damaged wrapped key. Normally there is exactly one row; rotation replaces it in one transaction.
    """

    __tablename__ = "vault_key"

    id: str = Field(primary_key=True)
    wrapped_key: bytes = Field(sa_type=LargeBinary, nullable=False)
    nonce: bytes = Field(sa_type=LargeBinary, nullable=False)
    key_check: bytes = Field(sa_type=LargeBinary, nullable=False)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)


class StoredCredential(SQLModel, table=True):
    """One identity's credential for one upstream, encrypted under a vault data key (`key_id`).

    The ciphertext's associated data binds it to (identity_key, upstream, kind), so a ciphertext
    copied onto another row does not decrypt. RESTRICT: a data key cannot go while rows use it.
    """

    __tablename__ = "credential"
    __table_args__ = (
        UniqueConstraint("identity_key", "upstream", "kind", name="uq_credential_identity_key_upstream_kind"),
    )

    id: str = Field(default_factory=new_id, primary_key=True)
    identity_key: str
    upstream: str = Field(index=True)
    kind: str
    state: str
    ciphertext: bytes = Field(sa_type=LargeBinary, nullable=False)
    nonce: bytes = Field(sa_type=LargeBinary, nullable=False)
    key_id: str = Field(foreign_key="vault_key.id", ondelete="RESTRICT", index=True)
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)


class OAuthGrant(SQLModel, table=True):
    """What a person allowed an MCP client through the gateway's OAuth server: one refresh-token family.

    Revoking it (the person, an admin, or a reused refresh token) ends every token issued under it.
    """

    __tablename__ = "oauth_grant"

    id: str = Field(default_factory=new_id, primary_key=True)
    client_id: str
    client_name: str | None = None
    redirect_host: str | None = None
    subject_kind: str
    """vk | user | session"""
    virtual_key_id: str | None = Field(default=None, index=True)
    user_id: str | None = Field(default=None, index=True)
    session_id: str | None = None
    resource: str | None = None
    scope: str | None = None
    created_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    revoked_reason: str | None = None


class OAuthCode(SQLModel, table=True):
    """An authorization code (its SHA-256), single use, short-lived."""

    __tablename__ = "oauth_code"

    code_hash: str = Field(primary_key=True)
    request: dict[str, Any] = Field(sa_type=JSON, nullable=False)
    """What the token endpoint needs: client, redirect URI, PKCE challenge, resource, scope, subject."""
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    grant_id: str | None = None


class OAuthRefreshToken(SQLModel, table=True):
    """A refresh token (its SHA-256); used ones are kept until they expire, to detect reuse."""

    __tablename__ = "oauth_refresh_token"

    token_hash: str = Field(primary_key=True)
    grant_id: str = Field(index=True)
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
