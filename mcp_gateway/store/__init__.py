"""Persistent store: upstreams, users, virtual keys with tool grants, and the audit log.

SQLite (`.mcpgw/mcpgw.db`) by default, PostgreSQL when `DATABASE_URL` says so; the schema is
migrated to the latest version by `open_store`.
"""

from mcp_gateway.store.engine import redact_url, resolve_database_url
from mcp_gateway.store.errors import RecordNotFound, StoreError, StoreUnavailable
from mcp_gateway.store.keys import generate_virtual_key, hash_virtual_key
from mcp_gateway.store.records import (
    UNSET,
    AuditEventIn,
    AuditEventRecord,
    AuditOutcome,
    IdentityMode,
    LlmSettingRecord,
    LlmUsageIn,
    LlmUsageTotal,
    McpConfigs,
    Unset,
    UpstreamRecord,
    UpstreamSource,
    UserRecord,
    VirtualKeyRecord,
)
from mcp_gateway.store.repository import Store, open_store
from mcp_gateway.store.upstreams import MirrorResult

__all__ = [
    "UNSET",
    "AuditEventIn",
    "AuditEventRecord",
    "AuditOutcome",
    "IdentityMode",
    "LlmSettingRecord",
    "LlmUsageIn",
    "LlmUsageTotal",
    "McpConfigs",
    "MirrorResult",
    "RecordNotFound",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Unset",
    "UpstreamRecord",
    "UpstreamSource",
    "UserRecord",
    "VirtualKeyRecord",
    "generate_virtual_key",
    "hash_virtual_key",
    "open_store",
    "redact_url",
    "resolve_database_url",
]
