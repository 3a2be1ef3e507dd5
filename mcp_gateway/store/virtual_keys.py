"""Virtual keys: the gateway's own API keys, each with per-upstream tool grants and an optional owner.

Holds `VirtualKeyStore`, `Store`'s virtual-key methods (a key and its grants always change in
one transaction), the grant queries and the row-to-record converter they share.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from mcp_gateway.store.base import StoreBase, _completes, _configs_from_json, _normalize_configs
from mcp_gateway.store.keys import generate_virtual_key, hash_virtual_key, key_prefix
from mcp_gateway.store.models import VirtualKey, VkToolGrant, new_id
from mcp_gateway.store.records import UNSET, Unset, VirtualKeyRecord
from mcp_gateway.types import ToolName, UpstreamName


class VirtualKeyStore(StoreBase):
    """`Store`'s virtual-key methods."""

    @_completes
    async def create_virtual_key(
        self,
        name: str,
        *,
        description: str | None = None,
        user_id: str | None = None,
        mcp_configs: Mapping[UpstreamName, Sequence[ToolName]],
        llm: Mapping[str, Any] | None = None,
    ) -> tuple[VirtualKeyRecord, str]:
        """Create an active key and return it with its plaintext, which is never stored and cannot be shown again.

        Raises:
            RecordNotFound: `user_id` names no user.
        """
        normalized = _normalize_configs(mcp_configs)
        key = generate_virtual_key()
        now = self._clock()
        async with self._writing() as session:
            if user_id is not None:
                await self._require_user(session, user_id)
            row = VirtualKey(
                name=name,
                description=description,
                key_hash=hash_virtual_key(key),
                key_prefix=key_prefix(key),
                user_id=user_id,
                llm=dict(llm) if llm is not None else None,
                active=True,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            await session.flush()
            await _insert_grants(session, row.id, normalized)
            return _vk_record(row, normalized.items()), key

    @_completes
    async def create_virtual_keys_bulk(
        self, count: int, *, mcp_configs: Mapping[UpstreamName, Sequence[ToolName]], name_prefix: str = "bulk"
    ) -> int:
        """Insert `count` keys (named `{name_prefix}-{n}`) with the same grants in one transaction; for benchmarks.

        The plaintext keys are discarded; returns how many were created.
        """
        if count <= 0:
            return 0
        normalized = _normalize_configs(mcp_configs)
        now = self._clock()
        keys: list[dict[str, Any]] = []
        grants: list[dict[str, Any]] = []
        for n in range(count):
            key = generate_virtual_key()
            vk_id = new_id()
            keys.append(
                {
                    "id": vk_id,
                    "name": f"{name_prefix}-{n}",
                    "description": None,
                    "key_hash": hash_virtual_key(key),
                    "key_prefix": key_prefix(key),
                    "user_id": None,
                    "active": True,
                    "created_at": now,
                    "updated_at": now,
                    "last_used_at": None,
                }
            )
            grants.extend({"virtual_key_id": vk_id, "upstream": up, "tools": tools} for up, tools in normalized.items())
        async with self._writing() as session:
            await session.exec(insert(VirtualKey), params=keys)
            if grants:
                await session.exec(insert(VkToolGrant), params=grants)
        return count

    @_completes
    async def list_virtual_keys(self, *, limit: int = 100, offset: int = 0) -> list[VirtualKeyRecord]:
        """A page of keys, newest first."""
        async with self._reading() as session:
            statement = (
                select(VirtualKey)
                .order_by(col(VirtualKey.created_at).desc(), col(VirtualKey.id).desc())
                .limit(limit)
                .offset(offset)
            )
            rows = list(await session.exec(statement))
            grants: dict[str, list[tuple[str, list[str]]]] = {row.id: [] for row in rows}
            if rows:
                query = select(VkToolGrant).where(col(VkToolGrant.virtual_key_id).in_(list(grants)))
                for grant in await session.exec(query):
                    grants[grant.virtual_key_id].append((grant.upstream, grant.tools))
            return [_vk_record(row, grants[row.id]) for row in rows]

    @_completes
    async def count_virtual_keys(self) -> int:
        async with self._reading() as session:
            return (await session.exec(select(func.count()).select_from(VirtualKey))).one()

    @_completes
    async def get_virtual_key(self, id: str) -> VirtualKeyRecord | None:
        async with self._reading() as session:
            return await _load_virtual_key(session, col(VirtualKey.id) == id)

    @_completes
    async def get_virtual_key_by_id_or_name(self, ref: str) -> VirtualKeyRecord | None:
        """The key with id `ref`, else the newest key named `ref` (names need not be unique)."""
        async with self._reading() as session:
            found = await _load_virtual_key(session, col(VirtualKey.id) == ref)
            if found is not None:
                return found
            newest = (
                select(VirtualKey.id)
                .where(col(VirtualKey.name) == ref)
                .order_by(col(VirtualKey.created_at).desc(), col(VirtualKey.id).desc())
                .limit(1)
            )
            key_id = (await session.exec(newest)).first()
            return None if key_id is None else await _load_virtual_key(session, col(VirtualKey.id) == key_id)

    @_completes
    async def find_virtual_key(self, key_hash: str) -> VirtualKeyRecord | None:
        """The key whose `hash_virtual_key` is `key_hash`, active or not (callers check `active`).

        One indexed query joining the grants: this is on the request path whenever the caller's cache misses.
        """
        async with self._reading() as session:
            return await _load_virtual_key(session, col(VirtualKey.key_hash) == key_hash)

    @_completes
    async def update_virtual_key(
        self,
        id: str,
        *,
        name: str | Unset = UNSET,
        description: str | Unset | None = UNSET,
        active: bool | Unset = UNSET,
        user_id: str | Unset | None = UNSET,
        mcp_configs: Mapping[UpstreamName, Sequence[ToolName]] | Unset = UNSET,
        llm: Mapping[str, Any] | Unset | None = UNSET,
    ) -> VirtualKeyRecord | None:
        """Change only the given fields; `mcp_configs` replaces all grants in the same transaction.

        Returns the updated key, or None if there is no key `id`.

        Raises:
            RecordNotFound: `user_id` names no user.
        """
        normalized = None if isinstance(mcp_configs, Unset) else _normalize_configs(mcp_configs)
        async with self._writing() as session:
            row = await session.get(VirtualKey, id)
            if row is None:
                await session.rollback()
                return None
            if not isinstance(name, Unset):
                row.name = name
            if not isinstance(description, Unset):
                row.description = description
            if not isinstance(active, Unset):
                row.active = active
            if not isinstance(llm, Unset):
                row.llm = dict(llm) if llm is not None else None
            if not isinstance(user_id, Unset):
                if user_id is not None:
                    await self._require_user(session, user_id)
                row.user_id = user_id
            row.updated_at = self._clock()
            if normalized is not None:
                await session.exec(delete(VkToolGrant).where(col(VkToolGrant.virtual_key_id) == id))
                await _insert_grants(session, id, normalized)
            await session.flush()
            return await _load_virtual_key(session, col(VirtualKey.id) == id)

    @_completes
    async def delete_virtual_key(self, id: str) -> bool:
        """Remove a key and its grants; False if there was none."""
        return await self._delete(delete(VirtualKey).where(col(VirtualKey.id) == id))

    @_completes
    async def touch_virtual_key(self, id: str, *, at: datetime | None = None) -> None:
        """Set `last_used_at` (default: now). Not a policy change, so the revision stays."""
        async with self._writing(bump=False) as session:
            await session.exec(
                update(VirtualKey).where(col(VirtualKey.id) == id).values(last_used_at=at or self._clock())
            )


async def _insert_grants(session: AsyncSession, vk_id: str, configs: Mapping[str, list[str]]) -> None:
    if configs:
        rows = [{"virtual_key_id": vk_id, "upstream": up, "tools": tools} for up, tools in configs.items()]
        await session.exec(insert(VkToolGrant), params=rows)


async def _load_virtual_key(session: AsyncSession, where: Any) -> VirtualKeyRecord | None:
    statement = (
        select(VirtualKey, col(VkToolGrant.upstream), col(VkToolGrant.tools))
        .outerjoin(VkToolGrant, col(VkToolGrant.virtual_key_id) == col(VirtualKey.id))
        .where(where)
    )
    rows = list(await session.exec(statement))
    if not rows:
        return None
    grants = [(upstream, tools) for _, upstream, tools in rows if upstream is not None]
    return _vk_record(rows[0][0], grants)


def _vk_record(row: VirtualKey, grants: Iterable[tuple[str, list[str]]]) -> VirtualKeyRecord:
    return VirtualKeyRecord(
        id=row.id,
        name=row.name,
        description=row.description,
        key_prefix=row.key_prefix,
        user_id=row.user_id,
        active=row.active,
        mcp_configs=_configs_from_json(dict(grants)),
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_used_at=row.last_used_at,
        llm=row.llm,
    )
