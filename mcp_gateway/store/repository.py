"""`Store`: the typed async interface to everything mcpgw persists.

Every method opens its own short session and returns frozen records (`records.py`), so callers
never hold a session or a live ORM object. Writes that change what a caller may see or call
(upstreams, users' tool configs, virtual keys and their grants) bump `store_revision` in the same
transaction: other processes notice changes by polling `revision()`, one primary-key read.

The bump is each such transaction's first statement on purpose: it takes the database's write
lock (SQLite) or the revision row's lock (PostgreSQL) up front, so read-then-write sequences like
`mirror_config` are serialised against every other writer without explicit locking, and a
transaction that turns out to change nothing is rolled back, bump included.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar, cast

import anyio
from alembic.util import CommandError
from sqlalchemy import Table, delete, func, insert, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from mcp_gateway.store.engine import create_engine, migrate, redact_url, resolve_database_url, sqlite_path
from mcp_gateway.store.errors import RecordNotFound, StoreError, StoreUnavailable
from mcp_gateway.store.keys import generate_virtual_key, hash_virtual_key, key_prefix
from mcp_gateway.store.models import AuditEvent, StoreRevision, Upstream, User, VirtualKey, VkToolGrant, new_id
from mcp_gateway.store.records import (
    AUDIT_DETAIL_MAX,
    UNSET,
    AuditEventIn,
    AuditEventRecord,
    AuditOutcome,
    IdentityMode,
    McpConfigs,
    Unset,
    UpstreamRecord,
    UpstreamSource,
    UserRecord,
    VirtualKeyRecord,
    utc_now,
)
from mcp_gateway.types import ToolName, UpstreamName

logger = logging.getLogger(__name__)

_P = ParamSpec("_P")
_T = TypeVar("_T")
_CLOSE_GRACE_SECONDS = 10.0
_FIRST_START_WAIT = 120.0
"""Seconds a start waits for another process that is migrating the same SQLite file."""

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # Windows: no flock; SQLite's own write lock still serialises the migration
    fcntl = None

_USER_TABLE = cast(Table, User.__table__)  # type: ignore[attr-defined]
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


async def open_store(url: str | None = None, *, clock: Callable[[], datetime] = utc_now) -> Store:
    """Connect, migrate the schema to head, and return a ready `Store`.

    `url` defaults to `$DATABASE_URL`, then to the SQLite file `.mcpgw/mcpgw.db` under the working
    directory; a missing SQLite folder is created, readable by its owner only.

    Raises:
        ConfigError: the URL is invalid or names an unsupported database.
        StoreUnavailable: the database cannot be reached or migrated.
    """
    resolved = resolve_database_url(url)
    path = sqlite_path(resolved)
    if path is not None:
        await anyio.Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    engine = create_engine(resolved)
    try:
        async with _first_start_lock(path), engine.begin() as connection:
            await connection.run_sync(migrate)
    except (SQLAlchemyError, OSError, CommandError) as exc:
        await engine.dispose()
        raise StoreUnavailable(f"cannot open the store at {redact_url(resolved)}: {_reason(exc)}") from exc
    except BaseException:
        await engine.dispose()
        raise
    logger.info("store ready at %s", redact_url(resolved))
    return Store(engine, clock=clock)


@asynccontextmanager
async def _first_start_lock(path: Path | None) -> AsyncIterator[None]:
    """Serialise gateways opening one SQLite file at the same time, until its schema is migrated.

    `migrate` already takes SQLite's write lock, but on a brand-new file the racing connections
    also switch it to WAL while another holds locks, and under load that race has wedged a start.
    A lock file beside the database (flock: works between processes and between connections of
    one process) lets exactly one of them connect and migrate first. Polled, so a start waiting
    for it can still be cancelled; bounded, so a stale holder cannot block a start for ever.
    """
    if path is None or fcntl is None:
        yield
        return
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        with anyio.fail_after(_FIRST_START_WAIT):
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await anyio.sleep(0.02)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _completes(
    method: Callable[Concatenate[Store, _P], Coroutine[Any, Any, _T]],
) -> Callable[Concatenate[Store, _P], Coroutine[Any, Any, _T]]:
    """Run a store operation to completion in its own task, even when the caller is cancelled.

    A request cancelled mid-query (a client hanging up) would otherwise cancel the driver inside
    its I/O. SQLAlchemy then invalidates the connection and, with aiosqlite and asyncpg, leaves a
    close task behind that never finishes (and can hang event-loop shutdown) or a "future exception
    was never retrieved". Every operation here is a short point query, so letting it finish costs a
    few milliseconds at most; the caller still sees its cancellation at once. (SQLAlchemy's async
    layer is asyncio-only, hence asyncio primitives rather than anyio here.)
    """

    @functools.wraps(method)
    async def run(self: Store, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        task = asyncio.ensure_future(method(self, *args, **kwargs))
        self._inflight.add(task)
        task.add_done_callback(self._settled)
        return await asyncio.shield(task)

    return run


class Store:
    """Upstreams, users, virtual keys with their tool grants, and the audit log.

    Raises `StoreError` (or a subclass) from every method when the database fails.
    """

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], datetime] = utc_now) -> None:
        self._engine = engine
        self._clock = clock
        self._dialect = engine.dialect.name
        self._sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
        self._inflight: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        """The database URL with its password redacted."""
        return redact_url(self._engine.url)

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self._dialect

    async def close(self) -> None:
        """Let operations still running finish (up to 10 s), then close every pooled connection.

        The store must not be used afterwards.
        """
        await asyncio.shield(self._close())

    async def _close(self) -> None:
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=_CLOSE_GRACE_SECONDS)
        await self._engine.dispose()

    def _settled(self, task: asyncio.Task[Any]) -> None:
        self._inflight.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved here in case the caller was cancelled and will never look

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @_completes
    async def revision(self) -> int:
        """A counter that grows with every change to upstreams, users' configs, virtual keys or grants."""
        async with self._reading() as session:
            value = (await session.exec(select(StoreRevision.revision).where(col(StoreRevision.id) == 1))).first()
        return value or 0

    # --- upstreams -------------------------------------------------------------------------------

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

    # --- users -----------------------------------------------------------------------------------

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

    # --- virtual keys ----------------------------------------------------------------------------

    @_completes
    async def create_virtual_key(
        self,
        name: str,
        *,
        description: str | None = None,
        user_id: str | None = None,
        mcp_configs: Mapping[UpstreamName, Sequence[ToolName]],
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

    # --- audit -----------------------------------------------------------------------------------

    @_completes
    async def record_audit(self, events: Sequence[AuditEventIn]) -> None:
        """Append events in one batch insert; `detail` is cut to 500 characters."""
        if not events:
            return
        rows = [
            {
                "ts": event.ts,
                "identity_mode": event.identity_mode,
                "subject": event.subject,
                "virtual_key_id": event.virtual_key_id,
                "upstream": event.upstream,
                "tool": event.tool,
                "method": event.method,
                "duration_ms": event.duration_ms,
                "outcome": event.outcome,
                "detail": None if event.detail is None else event.detail[:AUDIT_DETAIL_MAX],
            }
            for event in events
        ]
        async with self._writing(bump=False) as session:
            await session.exec(insert(AuditEvent), params=rows)

    @_completes
    async def list_audit(
        self,
        *,
        limit: int = 100,
        before_id: int | None = None,
        after_id: int | None = None,
        upstream: UpstreamName | None = None,
        virtual_key_id: str | None = None,
        outcome: AuditOutcome | None = None,
    ) -> list[AuditEventRecord]:
        """Up to `limit` events, newest first, with `after_id < id < before_id` and the given filters.

        Page backwards with `before_id=<last id of the previous page>`.
        """
        statement = select(AuditEvent).order_by(col(AuditEvent.id).desc()).limit(limit)
        if before_id is not None:
            statement = statement.where(col(AuditEvent.id) < before_id)
        if after_id is not None:
            statement = statement.where(col(AuditEvent.id) > after_id)
        if upstream is not None:
            statement = statement.where(col(AuditEvent.upstream) == upstream)
        if virtual_key_id is not None:
            statement = statement.where(col(AuditEvent.virtual_key_id) == virtual_key_id)
        if outcome is not None:
            statement = statement.where(col(AuditEvent.outcome) == outcome)
        async with self._reading() as session:
            return [_audit_record(row) for row in await session.exec(statement)]

    @_completes
    async def prune_audit(self, *, before: datetime) -> int:
        """Delete events older than `before`; returns how many. For retention policies."""
        async with self._writing(bump=False) as session:
            result = await session.exec(delete(AuditEvent).where(col(AuditEvent.ts) < before))
            return result.rowcount

    # --- sessions --------------------------------------------------------------------------------

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncSession]:
        try:
            async with self._sessions() as session:
                yield session
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"database error: {_reason(exc)}") from exc

    @asynccontextmanager
    async def _writing(self, *, bump: bool = True) -> AsyncIterator[AsyncSession]:
        """One transaction, committed when the block ends unless the block rolled it back (a no-op write)."""
        try:
            async with self._sessions() as session:
                if bump:
                    await _bump_revision(session)
                yield session
                if session.in_transaction():
                    await session.commit()
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"database error: {_reason(exc)}") from exc

    async def _delete(self, statement: Any) -> bool:
        """Run one DELETE; True if it removed a row. Deleting nothing rolls back, so the revision is not bumped."""
        async with self._writing() as session:
            result = await session.exec(statement)
            if result.rowcount == 0:
                await session.rollback()
            return bool(result.rowcount > 0)

    @staticmethod
    async def _require_user(session: AsyncSession, user_id: str) -> None:
        if await session.get(User, user_id) is None:
            raise RecordNotFound("user", user_id)


# --- helpers ---------------------------------------------------------------------------------------


async def _bump_revision(session: AsyncSession) -> None:
    result = await session.exec(
        update(StoreRevision).where(col(StoreRevision.id) == 1).values(revision=col(StoreRevision.revision) + 1)
    )
    if result.rowcount == 0:  # the migration inserts the row; this only heals a database someone emptied
        session.add(StoreRevision(id=1, revision=1))
        await session.flush()


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


def _normalize_configs(configs: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Copy an allowlist into JSON-ready lists, dropping duplicate patterns and refusing a bare string."""
    normalized: dict[str, list[str]] = {}
    for upstream, tools in configs.items():
        if isinstance(tools, str) or not all(isinstance(tool, str) for tool in tools):
            raise TypeError(f"mcp_configs[{upstream!r}] must be a list of tool names or patterns, got {tools!r}")
        normalized[upstream] = list(dict.fromkeys(tools))
    return normalized


def _configs_from_json(value: Mapping[str, Iterable[str]] | None) -> McpConfigs:
    return {upstream: tuple(tools) for upstream, tools in (value or {}).items()}


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _reason(exc: BaseException) -> str:
    """A one-line cause for an error message: the driver's own message, without SQL or parameters."""
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    return f"{type(original).__name__}: {lines[0] if lines else ''}".rstrip(": ")


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
    )


def _audit_record(row: AuditEvent) -> AuditEventRecord:
    assert row.id is not None
    return AuditEventRecord(
        id=row.id,
        ts=row.ts,
        identity_mode=cast(IdentityMode, row.identity_mode),
        subject=row.subject,
        virtual_key_id=row.virtual_key_id,
        upstream=row.upstream,
        tool=row.tool,
        method=row.method,
        duration_ms=row.duration_ms,
        outcome=cast(AuditOutcome, row.outcome),
        detail=row.detail,
    )
