"""The LLM gateway's settings made at run time (admin API, CLI): providers, rules, aliases, prices.

Each row is one named entry of one kind; it overlays the `llm:` section of gateway.yaml (see
`models.LlmSetting`). Every change bumps the store revision, so every gateway on the database
applies it within one poll, without a restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from sqlalchemy import delete
from sqlmodel import col, select

from mcp_gateway.store.base import StoreBase, _completes
from mcp_gateway.store.models import LlmSetting
from mcp_gateway.store.records import LlmSettingRecord

LlmSettingKind = Literal["provider", "rule", "alias", "price"]


class LlmSettingStore(StoreBase):
    """`Store`'s LLM settings methods."""

    @_completes
    async def list_llm_settings(self) -> list[LlmSettingRecord]:
        """Every entry, in the order they were first made (rules are tried in that order on ties)."""
        async with self._reading() as session:
            rows = await session.exec(select(LlmSetting).order_by(col(LlmSetting.id)))
            return [LlmSettingRecord(r.kind, r.name, dict(r.config), r.created_at, r.updated_at) for r in rows]

    @_completes
    async def put_llm_setting(self, kind: LlmSettingKind, name: str, config: Mapping[str, Any]) -> LlmSettingRecord:
        """Create or replace one entry (a replaced rule keeps its place in the order)."""
        now = self._clock()
        async with self._writing() as session:
            row = (
                await session.exec(select(LlmSetting).where(col(LlmSetting.kind) == kind, col(LlmSetting.name) == name))
            ).first()
            if row is None:
                row = LlmSetting(kind=kind, name=name, config=dict(config), created_at=now, updated_at=now)
            else:
                row.config = dict(config)
                row.updated_at = now
            session.add(row)
            await session.flush()
            return LlmSettingRecord(row.kind, row.name, dict(row.config), row.created_at, row.updated_at)

    @_completes
    async def delete_llm_setting(self, kind: LlmSettingKind, name: str) -> bool:
        """Remove one entry; False if there was none."""
        return await self._delete(delete(LlmSetting).where(col(LlmSetting.kind) == kind, col(LlmSetting.name) == name))
