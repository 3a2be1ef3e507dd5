"""`StoreBase`: the engine and session plumbing every part of `Store` is built on.

Kept apart from the aggregates (`upstreams.py`, `users.py`, `virtual_keys.py`, `audit.py`, and
the vault's `credentials.py`) so each of them holds only its own queries: here are the short
read and write sessions, the revision bump every policy write starts with, the `_completes`
guard against cancellation mid-query, and the store's lifecycle (close, async context manager).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from mcp_gateway.store.engine import redact_url
from mcp_gateway.store.errors import RecordNotFound, StoreError
from mcp_gateway.store.models import StoreRevision, User
from mcp_gateway.store.records import McpConfigs, utc_now

_P = ParamSpec("_P")
_T = TypeVar("_T")
_S = TypeVar("_S", bound="StoreBase")
_CLOSE_GRACE_SECONDS = 10.0


def _completes(
    method: Callable[Concatenate[_S, _P], Coroutine[Any, Any, _T]],
) -> Callable[Concatenate[_S, _P], Coroutine[Any, Any, _T]]:
    """Run a store operation to completion in its own task, even when the caller is cancelled.

    A request cancelled mid-query (a client hanging up) would otherwise cancel the driver inside
    its I/O. SQLAlchemy then invalidates the connection and, with aiosqlite and asyncpg, leaves a
    close task behind that never finishes (and can hang event-loop shutdown) or a "future exception
    was never retrieved". Every operation here is a short point query, so letting it finish costs a
    few milliseconds at most; the caller still sees its cancellation at once. (SQLAlchemy's async
    layer is asyncio-only, hence asyncio primitives rather than anyio here.)
    """

    @functools.wraps(method)
    async def run(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        task = asyncio.ensure_future(method(self, *args, **kwargs))
        self._inflight.add(task)
        task.add_done_callback(self._settled)
        return await asyncio.shield(task)

    return run


class StoreBase:
    """Sessions, the revision counter and the lifecycle shared by every part of `Store`.

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


# --- helpers shared by the aggregates -------------------------------------------------------------


async def _bump_revision(session: AsyncSession) -> None:
    result = await session.exec(
        update(StoreRevision).where(col(StoreRevision.id) == 1).values(revision=col(StoreRevision.revision) + 1)
    )
    if result.rowcount == 0:  # the migration inserts the row; this only heals a database someone emptied
        session.add(StoreRevision(id=1, revision=1))
        await session.flush()


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


def _reason(exc: BaseException) -> str:
    """A one-line cause for an error message: the driver's own message, without SQL or parameters."""
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    return f"{type(original).__name__}: {lines[0] if lines else ''}".rstrip(": ")
