"""What the store hands out and takes in: frozen values, never live ORM objects.

Callers (admin API, CLI, identity, policy) get plain snapshots, so they cannot lazily trigger I/O,
hold a session open, or change a row by assigning to an attribute.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeAlias

from mcp_gateway.types import ToolName, UpstreamName

UpstreamSource: TypeAlias = Literal["config", "api"]
"""Where an upstream row came from: mirrored from gateway.yaml, or created through the admin API/CLI."""

IdentityMode: TypeAlias = Literal["user", "vk", "session", "anonymous"]
AuditOutcome: TypeAlias = Literal["ok", "tool_error", "error", "denied"]

McpConfigs: TypeAlias = dict[UpstreamName, tuple[ToolName, ...]]
"""Tool allowlist: upstream name → tool names, `*`, or glob patterns."""

AUDIT_DETAIL_MAX = 500


def utc_now() -> datetime:
    """The default clock: timezone-aware UTC."""
    return datetime.now(UTC)


class Unset(enum.Enum):
    """Marks an argument that was not given, where `None` is a meaningful value (e.g. "clear the description")."""

    UNSET = enum.auto()


UNSET: Final = Unset.UNSET


@dataclass(frozen=True, slots=True)
class UpstreamRecord:
    id: str
    name: UpstreamName
    config: dict[str, Any]
    """The upstream's config exactly as written, `${VAR}` references unexpanded."""
    allow_on_all_virtual_keys: bool
    source: UpstreamSource
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: str
    """The identity provider's subject."""
    email: str | None
    display_name: str | None
    mcp_configs: McpConfigs
    created_at: datetime
    last_seen_at: datetime | None
    """None for a user an admin configured before they ever signed in."""
    active: bool = True
    """False: the user's SSO tokens and every virtual key they own are refused."""


@dataclass(frozen=True, slots=True)
class VirtualKeyRecord:
    id: str
    name: str
    description: str | None
    key_prefix: str
    user_id: str | None
    active: bool
    mcp_configs: McpConfigs
    created_at: datetime
    updated_at: datetime
    last_used_at: datetime | None
    llm: Mapping[str, Any] | None = None
    """The key's LLM policy (allowed models, budgets); None: no limits."""


@dataclass(frozen=True, slots=True)
class AuditEventIn:
    """One gateway operation to record; `subject` is an id or a hash, never a secret."""

    identity_mode: IdentityMode
    method: str
    outcome: AuditOutcome
    duration_ms: float
    subject: str | None = None
    virtual_key_id: str | None = None
    upstream: UpstreamName | None = None
    tool: ToolName | None = None
    detail: str | None = None
    """Truncated to 500 characters when stored."""
    llm_request_id: str | None = None
    """The model request a tool call was made for (agent mode, `/v1/mcp/tool/execute`)."""
    ts: datetime = field(default_factory=utc_now)


@dataclass(frozen=True, slots=True)
class AuditEventRecord:
    id: int
    ts: datetime
    identity_mode: IdentityMode
    subject: str | None
    virtual_key_id: str | None
    upstream: UpstreamName | None
    tool: ToolName | None
    method: str
    duration_ms: float
    outcome: AuditOutcome
    detail: str | None
    llm_request_id: str | None = None


@dataclass(frozen=True, slots=True)
class LlmUsageIn:
    """One model request to record (the LLM gateway's `UsageEvent`, as the store keeps it)."""

    api: str
    requested_model: str
    status: int
    identity_mode: str = "anonymous"
    subject: str | None = None
    virtual_key_id: str | None = None
    provider: str | None = None
    model: str | None = None
    rule: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = None
    error: str | None = None
    stream: bool = False
    fallback: bool = False
    attempts: int = 0
    duration_ms: float = 0.0
    ttfb_ms: float | None = None
    request_id: str | None = None
    """The client's request (`X-Request-Id`): the rounds of one agent-mode request share it."""
    ts: datetime = field(default_factory=utc_now)


@dataclass(frozen=True, slots=True)
class LlmUsageTotal:
    """Sums over a group of model requests (`key`: a virtual key id, `provider/model` or a provider)."""

    key: str | None
    requests: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float
    failed: int
    fallbacks: int


@dataclass(frozen=True, slots=True)
class LlmSettingRecord:
    """One LLM provider, routing rule, alias or price made through the admin API or CLI."""

    kind: str
    name: str
    config: Mapping[str, Any]
    created_at: datetime
    updated_at: datetime
