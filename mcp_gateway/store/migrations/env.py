"""Alembic environment for the store's migrations.

The gateway runs these itself (`open_store` → `migrate`), passing an open connection in
`config.attributes["connection"]`. For writing a new migration, a developer points DATABASE_URL at
a database migrated to head and autogenerates the difference from the models::

    python -c "from alembic import command; from mcp_gateway.store.engine import alembic_config; \
command.revision(alembic_config(), message='add foo', autogenerate=True)"

then edits the generated file (SQLite needs batch mode for ALTERs, which is switched on here).
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from mcp_gateway.store import models  # noqa: F401  (registers the tables on SQLModel.metadata)
from mcp_gateway.store.engine import create_engine, resolve_database_url

target_metadata = SQLModel.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine() -> None:
    engine = create_engine(resolve_database_url())
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


connection = context.config.attributes.get("connection")
if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported; run them against a database")
elif connection is not None:
    _run(connection)
else:
    asyncio.run(_run_with_own_engine())
