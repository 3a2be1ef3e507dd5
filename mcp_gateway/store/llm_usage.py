"""The LLM gateway's usage log: one row per model request, and the sums `mcpgw usage` and budgets read.

Rows are appended in batches by the gateway's usage writer (off the request path); nothing here
bumps the store revision. Sums group by virtual key, model or provider over a time window.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from sqlalchemy import case, func, insert
from sqlmodel import col, select

from mcp_gateway.store.base import StoreBase, _completes
from mcp_gateway.store.models import LlmUsage
from mcp_gateway.store.records import LlmUsageIn, LlmUsageTotal

UsageGrouping = Literal["vk", "model", "provider"]
_ERROR_MAX = 500


class LlmUsageStore(StoreBase):
    """`Store`'s LLM usage methods."""

    @_completes
    async def record_llm_usage(self, events: Sequence[LlmUsageIn]) -> None:
        """Append events in one batch insert; `error` is cut to 500 characters."""
        if not events:
            return
        rows = [
            {
                "ts": e.ts,
                "api": e.api,
                "identity_mode": e.identity_mode,
                "subject": e.subject,
                "virtual_key_id": e.virtual_key_id,
                "requested_model": e.requested_model,
                "provider": e.provider,
                "model": e.model,
                "rule": e.rule,
                "input_tokens": e.input_tokens,
                "output_tokens": e.output_tokens,
                "cache_read_tokens": e.cache_read_tokens,
                "cache_write_tokens": e.cache_write_tokens,
                "cost_usd": e.cost_usd,
                "status": e.status,
                "error": None if e.error is None else e.error[:_ERROR_MAX],
                "stream": e.stream,
                "fallback": e.fallback,
                "attempts": e.attempts,
                "duration_ms": e.duration_ms,
                "request_id": e.request_id,
                "ttfb_ms": e.ttfb_ms,
            }
            for e in events
        ]
        async with self._writing(bump=False) as session:
            await session.exec(insert(LlmUsage), params=rows)

    @_completes
    async def llm_usage_totals(
        self, *, by: UsageGrouping = "vk", since: datetime | None = None, virtual_key_id: str | None = None
    ) -> list[LlmUsageTotal]:
        """Requests, tokens, cost and failures per virtual key, model (`provider/model`) or provider."""
        key = {
            "vk": col(LlmUsage.virtual_key_id),
            "model": func.coalesce(col(LlmUsage.provider), "") + "/" + func.coalesce(col(LlmUsage.model), ""),
            "provider": col(LlmUsage.provider),
        }[by]
        statement = select(  # type: ignore[call-overload]  # sqlmodel types select() for up to 4 columns
            key,
            func.count(),
            func.coalesce(func.sum(LlmUsage.input_tokens), 0),
            func.coalesce(func.sum(LlmUsage.output_tokens), 0),
            func.coalesce(func.sum(LlmUsage.cache_read_tokens), 0),
            func.coalesce(func.sum(LlmUsage.cache_write_tokens), 0),
            func.coalesce(func.sum(LlmUsage.cost_usd), 0.0),
            func.coalesce(func.sum(case((col(LlmUsage.status) >= 400, 1), else_=0)), 0),
            func.coalesce(func.sum(case((col(LlmUsage.fallback), 1), else_=0)), 0),
        ).group_by(key)
        if since is not None:
            statement = statement.where(col(LlmUsage.ts) >= since)
        if virtual_key_id is not None:
            statement = statement.where(col(LlmUsage.virtual_key_id) == virtual_key_id)
        async with self._reading() as session:
            rows = (await session.exec(statement)).all()
        totals = [
            LlmUsageTotal(
                key=row[0],
                requests=int(row[1]),
                input_tokens=int(row[2]),
                output_tokens=int(row[3]),
                cache_read_tokens=int(row[4]),
                cache_write_tokens=int(row[5]),
                cost_usd=float(row[6]),
                failed=int(row[7]),
                fallbacks=int(row[8]),
            )
            for row in rows
        ]
        return sorted(totals, key=lambda t: (-t.cost_usd, -t.requests, t.key or ""))

    @_completes
    async def llm_spent_usd(self, virtual_key_id: str, since: datetime) -> float:
        """What one key's requests cost since `since` (budgets)."""
        statement = select(func.coalesce(func.sum(LlmUsage.cost_usd), 0.0)).where(
            col(LlmUsage.virtual_key_id) == virtual_key_id, col(LlmUsage.ts) >= since
        )
        async with self._reading() as session:
            spent = (await session.exec(statement)).one()
        return float(spent or 0.0)
