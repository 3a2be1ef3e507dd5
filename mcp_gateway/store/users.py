"""Users: SSO identities (recorded at sign-in, or configured ahead by an admin), each with a tool allowlist.

Holds `UserStore`, `Store`'s user methods, and the row-to-record converter they use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Table, delete, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select

from mcp_gateway.store.base import StoreBase, _completes, _configs_from_json, _normalize_configs
from mcp_gateway.store.models import User
from mcp_gateway.store.records import UserRecord
from mcp_gateway.types import ToolName, UpstreamName

_USER_TABLE = cast(Table, User.__table__)  # type: ignore[attr-defined]


class UserStore(StoreBase):
    """`Store`'s user methods."""

    @_completes
    async def upsert_user(self, id: str, *, email: str | None = None, display_name: str | None = None) -> UserRecord:
        """Record a sign-in: create the user, or set `last_seen_at` (and email/name when given).

        One statement, and no revision bump: a user's tool configs are what policy reads, and
        they are unchanged.
        """
        now = self._clock()
        values: dict[str, Any] = {
            "id": id,
            "email": email,
            "display_name": display_name,
            "mcp_configs": {},
            "active": True,
            "created_at": now,
            "last_seen_at": now,
        }
        statement: postgresql.Insert | sqlite.Insert
        statement = (postgresql.insert if self._dialect == "postgresql" else sqlite.insert)(_USER_TABLE)
        statement = statement.values(values)
        statement = statement.on_conflict_do_update(
            index_elements=[_USER_TABLE.c.id],
            set_={
                "last_seen_at": statement.excluded.last_seen_at,
                "email": func.coalesce(statement.excluded.email, _USER_TABLE.c.email),
                "display_name": func.coalesce(statement.excluded.display_name, _USER_TABLE.c.display_name),
            },
        )
        async with self._writing(bump=False) as session:
            row = (await session.exec(statement.returning(*_USER_TABLE.c))).one()
        return UserRecord(
            id=row.id,
            email=row.email,
            display_name=row.display_name,
            mcp_configs=_configs_from_json(row.mcp_configs),
            created_at=row.created_at,
            last_seen_at=row.last_seen_at,
            active=row.active,
        )

    @_completes
    async def get_user(self, id: str) -> UserRecord | None:
        async with self._reading() as session:
            row = await session.get(User, id)
            return None if row is None else _user_record(row)

    @_completes
    async def list_users(self) -> list[UserRecord]:
        """All users, oldest first."""
        async with self._reading() as session:
            rows = await session.exec(select(User).order_by(col(User.created_at), col(User.id)))
            return [_user_record(row) for row in rows]

    @_completes
    async def set_user_mcp_configs(self, id: str, configs: Mapping[UpstreamName, Sequence[ToolName]]) -> UserRecord:
        """Replace a user's tool allowlist; creates the user (never seen yet) if unknown."""
        normalized = _normalize_configs(configs)
        async with self._writing() as session:
            row = await session.get(User, id)
            if row is None:
                row = User(id=id, mcp_configs=normalized, created_at=self._clock())
                session.add(row)
            else:
                row.mcp_configs = normalized
            await session.flush()
            return _user_record(row)

    @_completes
    async def set_user_active(self, id: str, active: bool) -> UserRecord | None:
        """Disable or enable a user (their SSO tokens and their keys); None if there is no such user."""
        async with self._writing() as session:
            row = await session.get(User, id)
            if row is None:
                return None
            row.active = active
            await session.flush()
            return _user_record(row)

    @_completes
    async def delete_user(self, id: str) -> bool:
        """Remove a user; their virtual keys stay, with `user_id` cleared. False if there was none."""
        return await self._delete(delete(User).where(col(User.id) == id))


def _user_record(row: User) -> UserRecord:
    return UserRecord(
        id=row.id,
        email=row.email,
        display_name=row.display_name,
        mcp_configs=_configs_from_json(row.mcp_configs),
        created_at=row.created_at,
        last_seen_at=row.last_seen_at,
        active=row.active,
    )
