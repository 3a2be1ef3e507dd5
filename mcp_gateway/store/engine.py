"""Database URLs, the async engine, and running the Alembic migrations at startup.

SQLite (a file under `.mcpgw/`) is the default; `DATABASE_URL` switches to PostgreSQL. Only the
async drivers are used (aiosqlite, asyncpg), so no query ever blocks the event loop.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from mcp_gateway.errors import ConfigError

DEFAULT_DIRECTORY = ".mcpgw"
DEFAULT_FILENAME = "mcpgw.db"
MIGRATIONS = Path(__file__).with_name("migrations")

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}
# Any 64-bit constant works; it only has to be the same in every mcpgw process sharing a database.
_MIGRATION_LOCK_KEY = 0x6D637067775F6462  # "mcpgw_db"
_SQLITE_BUSY_TIMEOUT_MS = 10_000


def resolve_database_url(url: str | None = None, *, environ: Mapping[str, str] | None = None) -> str:
    """The async-driver URL to use: `url`, else `$DATABASE_URL`, else `.mcpgw/mcpgw.db` under the cwd.

    `postgresql://`, `postgres://` and `sqlite:///` URLs are mapped to asyncpg and aiosqlite, and a
    libpq-style `sslmode=` becomes asyncpg's `ssl=`.

    Raises:
        ConfigError: the URL cannot be parsed, names another database or driver, or is in-memory SQLite.
    """
    environ = os.environ if environ is None else environ
    raw = url or environ.get("DATABASE_URL") or f"sqlite:///{Path.cwd() / DEFAULT_DIRECTORY / DEFAULT_FILENAME}"
    try:
        parsed = make_url(raw)
    except ArgumentError:
        raise ConfigError("DATABASE_URL is not a valid database URL") from None
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ConfigError(
            f"unsupported database URL scheme {parsed.drivername!r}: use sqlite:///PATH or postgresql://USER@HOST/DB"
        )
    parsed = parsed.set(drivername=driver)
    if driver.startswith("sqlite") and parsed.database in (None, "", ":memory:"):
        raise ConfigError("in-memory SQLite is not supported (each connection would see its own empty database)")
    if driver.startswith("postgresql") and "sslmode" in parsed.query and "ssl" not in parsed.query:
        parsed = parsed.update_query_dict({"ssl": parsed.query["sslmode"]}).difference_update_query(["sslmode"])
    return parsed.render_as_string(hide_password=False)


def redact_url(url: str | URL) -> str:
    """The URL with its password replaced by `***`: the only form that may be logged or shown."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid database URL>"


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL, or None for other databases."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database)


def create_engine(url: str) -> AsyncEngine:
    """An async engine for a URL from `resolve_database_url`, with SQLite set up for concurrent use."""
    parsed = make_url(url)
    options: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql":
        # Bounded waits: connecting, and any one statement (asyncpg cancels it server-side on expiry).
        options["connect_args"] = {"timeout": 10, "command_timeout": 60}
    engine = create_async_engine(parsed, **options)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _configure_sqlite_connection)
    return engine


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    # Foreign keys are off by default in SQLite, and without them ON DELETE CASCADE / SET NULL do
    # nothing. WAL lets readers (every request's key lookup) proceed while a writer commits, and
    # with WAL, synchronous=NORMAL is still crash-safe for the database file.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic `Config` for the packaged migrations (there is no alembic.ini)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def migrate(connection: Connection) -> None:
    """Upgrade the schema to head; a no-op on an up-to-date database. Run via `AsyncConnection.run_sync`.

    Serialised across processes, so two gateways starting together on an empty database don't
    both try to create it: a transaction-scoped advisory lock on PostgreSQL, the database write
    lock (`BEGIN IMMEDIATE`) on SQLite. Alembic reads its script files from disk here, a few small
    reads once at startup.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
    elif connection.dialect.name == "sqlite":
        # The sqlite3 module only opens a transaction before DML, so DDL would run unlocked.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    command.upgrade(alembic_config(connection), "head")
