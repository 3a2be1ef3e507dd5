"""The audit log in the admin API: tool calls, newest first, filtered and paged by id."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from mcp_gateway.store import AuditEventRecord, AuditOutcome, IdentityMode

if TYPE_CHECKING:
    from mcp_gateway.http.gateway import Gateway


class AuditEventOut(BaseModel):
    id: int
    ts: datetime
    identity_mode: IdentityMode
    subject: str | None = Field(description="User id, virtual key id, or a hash of the session id.")
    virtual_key_id: str | None
    upstream: str | None
    tool: str | None
    method: str
    duration_ms: float
    outcome: AuditOutcome
    detail: str | None
    llm_request_id: str | None = Field(
        default=None, description="The model request a call was run for (agent mode, /v1/mcp/tool/execute)."
    )


class AuditPage(BaseModel):
    items: list[AuditEventOut] = Field(description="Newest first; page back with `before_id=<last id>`.")


def audit_routes(gateway: Gateway, router: APIRouter) -> None:
    """Adds the audit endpoint to `router` (which carries the admin-token check)."""
    store = gateway.running_store

    @router.get("/audit", tags=["audit"])
    async def list_audit(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before_id: int | None = None,
        after_id: int | None = None,
        upstream: str | None = None,
        virtual_key_id: str | None = None,
        outcome: AuditOutcome | None = None,
        llm_request_id: str | None = None,
    ) -> AuditPage:
        """Tool calls, newest first, with `after_id < id < before_id` and the given filters."""
        if gateway.audit is not None:
            await gateway.audit.flush()
        records = await store().list_audit(
            limit=limit,
            before_id=before_id,
            after_id=after_id,
            upstream=upstream,
            virtual_key_id=virtual_key_id,
            outcome=outcome,
            llm_request_id=llm_request_id,
        )
        return AuditPage(items=[audit_out(r) for r in records])


def audit_out(record: AuditEventRecord) -> AuditEventOut:
    return AuditEventOut(
        id=record.id,
        ts=record.ts,
        identity_mode=record.identity_mode,
        subject=record.subject,
        virtual_key_id=record.virtual_key_id,
        upstream=record.upstream,
        tool=record.tool,
        method=record.method,
        duration_ms=record.duration_ms,
        outcome=record.outcome,
        detail=record.detail,
        llm_request_id=record.llm_request_id,
    )
