"""`Store`: the typed async interface to everything mcpgw persists.

Every method opens its own short session and returns frozen records (`records.py`), so callers
never hold a session or a live ORM object. Writes that change what a caller may see or call
(upstreams, users' tool configs, virtual keys and their grants) bump `store_revision` in the same
transaction: other processes notice changes by polling `revision()`, one primary-key read.

The bump is each such transaction's first statement on purpose: it takes the database's write
lock (SQLite) or the revision row's lock (PostgreSQL) up front, so read-then-write sequences like
`mirror_config` are serialised against every other writer without explicit locking, and a
transaction that turns out to change nothing is rolled back, bump included.

`Store` is assembled from one mixin per aggregate, each in its own module beside this one:
`base.py` (`StoreBase`: sessions, the revision bump, `revision()`, `close()`, the `_completes`
cancellation guard), `upstreams.py` (upstreams, `mirror_config`, `MirrorResult`), `users.py`,
`virtual_keys.py` (keys and their tool grants), `audit.py`, `llm_usage.py` (the LLM gateway's
usage log) and `llm_settings.py` (its providers, rules and aliases made at run time). The
credential vault's rows are plain functions over a `Store` in `credentials.py`. This module opens
the store: it connects, migrates the schema under a first-start lock, and returns the assembled
`Store`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from types import ModuleType

import anyio
from alembic.util import CommandError
from sqlalchemy.exc import SQLAlchemyError

from mcp_gateway.store.audit import AuditStore
from mcp_gateway.store.base import StoreBase, _reason
from mcp_gateway.store.engine import create_engine, migrate, redact_url, resolve_database_url, sqlite_path
from mcp_gateway.store.errors import StoreUnavailable
from mcp_gateway.store.llm_settings import LlmSettingStore
from mcp_gateway.store.llm_usage import LlmUsageStore
from mcp_gateway.store.oauth import OAuthStore
from mcp_gateway.store.records import utc_now
from mcp_gateway.store.upstreams import MirrorResult, UpstreamStore
from mcp_gateway.store.users import UserStore
from mcp_gateway.store.virtual_keys import VirtualKeyStore

__all__ = ["MirrorResult", "Store", "open_store"]

logger = logging.getLogger(__name__)

_FIRST_START_WAIT = 120.0
"""Seconds a start waits for another process that is migrating the same SQLite file."""

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # Windows: no flock; SQLite's own write lock still serialises the migration
    fcntl = None


class Store(
    UpstreamStore, UserStore, VirtualKeyStore, AuditStore, LlmUsageStore, LlmSettingStore, OAuthStore, StoreBase
):
    """Upstreams, users, virtual keys with their tool grants, and the audit log.

    Raises `StoreError` (or a subclass) from every method when the database fails.
    """


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
