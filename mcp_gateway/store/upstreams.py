"""Upstreams: the MCP servers the gateway fronts, as rows an admin or `gateway.yaml` manages.

Holds `UpstreamStore`, `Store`'s upstream methods (including `mirror_config`, which keeps the
config-file rows in step with the file), and the row-to-record converter they share.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import delete
from sqlmodel import col, select

from mcp_gateway.store.base import StoreBase, _completes
from mcp_gateway.store.models import Upstream
from mcp_gateway.store.records import UpstreamRecord, UpstreamSource
from mcp_gateway.types import UpstreamName

_UPSTREAM_SOURCES = ("config", "api")


@dataclass(frozen=True, slots=True)
class MirrorResult:
    """What `mirror_config` changed, by upstream name."""

    added: tuple[UpstreamName, ...] = ()
    updated: tuple[UpstreamName, ...] = ()
    removed: tuple[UpstreamName, ...] = ()
    skipped: tuple[UpstreamName, ...] = ()
    """In the config file, but the store has an admin-API upstream of that name, which is left alone."""

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


class UpstreamStore(StoreBase):
    """`Store`'s upstream methods."""

    @_completes
    async def list_upstreams(self) -> list[UpstreamRecord]:
        """All upstreams, by name."""
        async with self._reading() as session:
            rows = await session.exec(select(Upstream).order_by(col(Upstream.name)))
            return [_upstream_record(row) for row in rows]

    @_completes
    async def get_upstream(self, name: UpstreamName) -> UpstreamRecord | None:
        async with self._reading() as session:
            row = (await session.exec(select(Upstream).where(col(Upstream.name) == name))).first()
            return None if row is None else _upstream_record(row)

    @_completes
    async def put_upstream(
        self,
        name: UpstreamName,
        config: Mapping[str, Any],
        *,
        allow_on_all_virtual_keys: bool = False,
        source: UpstreamSource = "api",
    ) -> UpstreamRecord:
        """Create the upstream, or replace its config and flags if one of that name exists.

        `config` is stored as given (JSON), `${VAR}` references unexpanded.
        """
        if source not in _UPSTREAM_SOURCES:
            raise ValueError(f"source must be one of {_UPSTREAM_SOURCES}, got {source!r}")
        now = self._clock()
        async with self._writing() as session:
            row = (await session.exec(select(Upstream).where(col(Upstream.name) == name))).first()
            if row is None:
                row = Upstream(name=name, config=dict(config), source=source, created_at=now, updated_at=now)
                session.add(row)
            else:
                row.config = dict(config)
                row.source = source
                row.updated_at = now
            row.allow_on_all_virtual_keys = allow_on_all_virtual_keys
            await session.flush()
            return _upstream_record(row)

    @_completes
    async def delete_upstream(self, name: UpstreamName) -> bool:
        """Remove an upstream; False if there was none. Grants naming it stay, and apply again if it returns."""
        return await self._delete(delete(Upstream).where(col(Upstream.name) == name))

    @_completes
    async def mirror_config(self, entries: Mapping[UpstreamName, tuple[Mapping[str, Any], bool]]) -> MirrorResult:
        """Make the store's config-file upstreams match `entries` (name → (config, allow_on_all_virtual_keys)).

        Adds and updates rows with source "config", removes source-"config" rows that are no longer
        in the file, and never touches upstreams created through the admin API ("api"), even when
        the file has one of the same name (reported in `skipped`). Nothing is written, and the
        revision stays, when the store already matches.
        """
        now = self._clock()
        added: list[str] = []
        updated: list[str] = []
        removed: list[str] = []
        skipped: list[str] = []
        async with self._writing() as session:
            existing = {row.name: row for row in await session.exec(select(Upstream))}
            for name, (config, allow) in entries.items():
                row = existing.get(name)
                if row is None:
                    session.add(
                        Upstream(
                            name=name,
                            config=dict(config),
                            allow_on_all_virtual_keys=allow,
                            source="config",
                            created_at=now,
                            updated_at=now,
                        )
                    )
                    added.append(name)
                elif row.source != "config":
                    skipped.append(name)
                elif _json(row.config) != _json(config) or row.allow_on_all_virtual_keys != allow:
                    row.config = dict(config)
                    row.allow_on_all_virtual_keys = allow
                    row.updated_at = now
                    updated.append(name)
            for name, row in existing.items():
                if row.source == "config" and name not in entries:
                    await session.delete(row)
                    removed.append(name)
            result = MirrorResult(tuple(added), tuple(updated), tuple(removed), tuple(skipped))
            if not result.changed:
                await session.rollback()
        return result


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _upstream_record(row: Upstream) -> UpstreamRecord:
    return UpstreamRecord(
        id=row.id,
        name=row.name,
        config=dict(row.config),
        allow_on_all_virtual_keys=row.allow_on_all_virtual_keys,
        source=cast(UpstreamSource, row.source),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
