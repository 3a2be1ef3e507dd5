"""The persistent store, against both SQLite (a file in tmp_path) and a real PostgreSQL server.

PostgreSQL tests get a fresh database each (created from the `test` database and dropped with
FORCE afterwards). They fail, never skip, when the server is not reachable: CI runs one.
"""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from mcp_gateway.errors import ConfigError
from mcp_gateway.store import (
    AuditEventIn,
    RecordNotFound,
    Store,
    StoreError,
    StoreUnavailable,
    generate_virtual_key,
    hash_virtual_key,
    open_store,
    redact_url,
    resolve_database_url,
)
from mcp_gateway.store.engine import alembic_config, create_engine

pytestmark = pytest.mark.anyio

TABLES = ("upstream", "user", "virtual_key", "vk_tool_grant", "audit_event", "store_revision")


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url)
    try:
        yield opened
    finally:
        await opened.close()


async def fetch(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Raw rows through a separate engine, to see what is really in the database."""
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return [tuple(row) for row in (await connection.execute(text(sql))).all()]
    finally:
        await engine.dispose()


def event(**fields: Any) -> AuditEventIn:
    defaults: dict[str, Any] = {"identity_mode": "vk", "method": "tools/call", "outcome": "ok", "duration_ms": 1.0}
    return AuditEventIn(**{**defaults, **fields})


# --- schema ------------------------------------------------------------------------------------


async def test_migrations_apply_on_empty_database_and_are_idempotent(store_url: str) -> None:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    for _ in range(2):
        opened = await open_store(store_url)
        await opened.close()
        assert await fetch(store_url, "SELECT version_num FROM alembic_version") == [(head,)]
    assert await fetch(store_url, "SELECT id, revision FROM store_revision") == [(1, 0)]
    if store_url.startswith("sqlite"):
        assert await fetch(store_url, "PRAGMA journal_mode") == [("wal",)]
        assert await fetch(store_url, "PRAGMA foreign_keys") == [(1,)]


async def test_concurrent_first_starts_migrate_once(store_url: str) -> None:
    stores: list[Store] = []

    async def start() -> None:
        stores.append(await open_store(store_url))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(start)
    for opened in stores:
        assert await opened.revision() == 0
        await opened.close()


async def test_migrated_schema_matches_models(store: Store, store_url: str) -> None:
    def diff(connection: Connection) -> Any:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, SQLModel.metadata)

    engine = create_engine(store_url)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(diff) == []
    finally:
        await engine.dispose()


# --- virtual keys ------------------------------------------------------------------------------


async def test_virtual_key_plaintext_is_returned_once_and_stored_nowhere(store_url: str) -> None:
    store = await open_store(store_url)
    await store.upsert_user("alice")
    record, key = await store.create_virtual_key(
        "ci", description="for CI", user_id="alice", mcp_configs={"github": ["search_*", "get_issue"]}
    )
    assert key.startswith("sk-mcpgw-") and len(key) == len("sk-mcpgw-") + 43
    assert record.key_prefix == key[:12]
    assert record.active and record.user_id == "alice"
    assert record.mcp_configs == {"github": ("search_*", "get_issue")}
    assert await store.find_virtual_key(hash_virtual_key(key)) == record
    assert await store.get_virtual_key(record.id) == record
    assert await store.find_virtual_key(hash_virtual_key(generate_virtual_key())) is None
    assert not hasattr(record, "key") and key not in repr(record)
    await store.record_audit([event(subject=record.id, virtual_key_id=record.id)])

    secret_part = key.removeprefix("sk-mcpgw-")
    for table in TABLES:
        rows = repr(await fetch(store_url, f'SELECT * FROM "{table}"'))
        assert secret_part not in rows, table
    assert (hash_virtual_key(key),) in await fetch(store_url, "SELECT key_hash FROM virtual_key")
    await store.close()

    if store_url.startswith("sqlite"):
        database = Path(store_url.removeprefix("sqlite+aiosqlite:///"))
        files = list(database.parent.glob(database.name + "*"))
        assert database in files
        for path in files:
            assert secret_part.encode() not in path.read_bytes(), path


async def test_update_changes_only_given_fields_and_replaces_grants(store: Store) -> None:
    await store.upsert_user("bob")
    record, _ = await store.create_virtual_key("k", description="d", mcp_configs={"a": ["*"], "b": ["x", "x", "y"]})
    assert record.mcp_configs == {"a": ("*",), "b": ("x", "y")}

    renamed = await store.update_virtual_key(record.id, name="k2")
    assert renamed is not None
    assert (renamed.name, renamed.description, renamed.active, renamed.mcp_configs) == (
        "k2",
        "d",
        True,
        record.mcp_configs,
    )
    assert renamed.updated_at >= record.updated_at and renamed.created_at == record.created_at

    updated = await store.update_virtual_key(
        record.id, description=None, active=False, user_id="bob", mcp_configs={"c": ["tool"]}
    )
    assert updated is not None
    assert (updated.name, updated.description, updated.active, updated.user_id) == ("k2", None, False, "bob")
    assert updated.mcp_configs == {"c": ("tool",)}
    assert await store.get_virtual_key(record.id) == updated

    cleared = await store.update_virtual_key(record.id, user_id=None, mcp_configs={})
    assert cleared is not None and cleared.user_id is None and cleared.mcp_configs == {}
    assert await store.update_virtual_key("missing", name="x") is None


async def test_grant_replacement_is_atomic_for_concurrent_readers(store: Store) -> None:
    first = {"a": ("1",), "b": ("2",)}
    second = {"c": ("3",), "d": ("4",), "e": ("5",)}
    record, key = await store.create_virtual_key("k", mcp_configs=first)
    key_hash = hash_virtual_key(key)
    seen: list[dict[str, tuple[str, ...]]] = []
    done = anyio.Event()

    async def read() -> None:
        while not done.is_set():
            found = await store.find_virtual_key(key_hash)
            assert found is not None
            seen.append(found.mcp_configs)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            for n in range(20):
                configs = second if n % 2 == 0 else first
                await store.update_virtual_key(record.id, mcp_configs={k: list(v) for k, v in configs.items()})
            done.set()
    assert seen and all(configs in (first, second) for configs in seen)


async def test_unknown_user_is_refused(store: Store) -> None:
    with pytest.raises(RecordNotFound) as caught:
        await store.create_virtual_key("k", user_id="ghost", mcp_configs={})
    assert (caught.value.kind, caught.value.key) == ("user", "ghost")
    assert await store.count_virtual_keys() == 0
    record, _ = await store.create_virtual_key("k", mcp_configs={})
    with pytest.raises(RecordNotFound):
        await store.update_virtual_key(record.id, user_id="ghost", name="renamed")
    assert await store.get_virtual_key(record.id) == record


async def test_delete_virtual_key_cascades_to_grants(store: Store, store_url: str) -> None:
    keep, _ = await store.create_virtual_key("keep", mcp_configs={"a": ["*"]})
    gone, _ = await store.create_virtual_key("gone", mcp_configs={"a": ["*"], "b": ["t"]})
    assert await store.delete_virtual_key(gone.id)
    assert not await store.delete_virtual_key(gone.id)
    assert await store.get_virtual_key(gone.id) is None
    assert await fetch(store_url, "SELECT virtual_key_id, upstream FROM vk_tool_grant") == [(keep.id, "a")]


async def test_deleting_a_user_keeps_their_keys_unowned(store: Store) -> None:
    await store.upsert_user("carol")
    record, key = await store.create_virtual_key("k", user_id="carol", mcp_configs={"a": ["*"]})
    assert await store.delete_user("carol")
    assert not await store.delete_user("carol")
    found = await store.find_virtual_key(hash_virtual_key(key))
    assert found is not None and found.user_id is None and found.mcp_configs == record.mcp_configs


async def test_list_count_and_touch(store: Store) -> None:
    created = [(await store.create_virtual_key(f"k{n}", mcp_configs={"u": [str(n)]}))[0] for n in range(5)]
    assert await store.count_virtual_keys() == 5
    listed = await store.list_virtual_keys(limit=100, offset=0)
    assert {r.id for r in listed} == {r.id for r in created}
    assert all(r.mcp_configs == {"u": (r.name[1:],)} for r in listed)
    page = await store.list_virtual_keys(limit=2, offset=0) + await store.list_virtual_keys(limit=10, offset=2)
    assert [r.id for r in page] == [r.id for r in listed]

    used_at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    await store.touch_virtual_key(created[0].id, at=used_at)
    touched = await store.get_virtual_key(created[0].id)
    assert touched is not None and touched.last_used_at == used_at


async def test_bulk_creation_of_10000_keys(store: Store, store_url: str) -> None:
    with anyio.fail_after(60):
        assert await store.create_virtual_keys_bulk(10_000, mcp_configs={"a": ["*"]}, name_prefix="bench") == 10_000
    assert await store.count_virtual_keys() == 10_000
    [(key_hash, vk_id)] = await fetch(store_url, "SELECT key_hash, id FROM virtual_key WHERE name = 'bench-4321'")
    found = await store.find_virtual_key(key_hash)
    assert found is not None and found.id == vk_id and found.mcp_configs == {"a": ("*",)}
    assert await fetch(store_url, "SELECT count(*) FROM vk_tool_grant") == [(10_000,)]


async def test_cancelled_callers_leave_no_broken_connections_behind(store: Store) -> None:
    """A client hanging up mid-lookup cancels the lookup; the store must stay healthy and leak no tasks."""
    record, key = await store.create_virtual_key("k", mcp_configs={"a": ["*"]})
    key_hash = hash_virtual_key(key)
    cancelled = 0
    for n in range(100):
        with anyio.move_on_after(0.0003 * (n % 8)) as scope:
            await store.find_virtual_key(key_hash)
        cancelled += scope.cancelled_caught
    assert cancelled > 0
    with anyio.fail_after(10):
        assert await store.find_virtual_key(key_hash) == record
    await store.close()
    leftovers = [task for task in asyncio.all_tasks() if "terminate" in repr(task) or "Store." in repr(task)]
    assert leftovers == []


# --- upstreams ---------------------------------------------------------------------------------


async def test_upstream_put_get_delete(store: Store) -> None:
    config = {"transport": "http", "url": "https://x.example/mcp", "headers": {"Authorization": "Bearer ${TOKEN}"}}
    created = await store.put_upstream("github", config, allow_on_all_virtual_keys=True, source="api")
    assert created.config == config and created.allow_on_all_virtual_keys and created.source == "api"
    assert await store.get_upstream("github") == created

    replaced = await store.put_upstream("github", {"command": "gh-mcp"}, allow_on_all_virtual_keys=False, source="api")
    assert replaced.id == created.id and replaced.created_at == created.created_at
    assert replaced.config == {"command": "gh-mcp"} and not replaced.allow_on_all_virtual_keys
    assert replaced.updated_at >= created.updated_at

    await store.put_upstream("alpha", {"command": "a"}, allow_on_all_virtual_keys=False, source="config")
    assert [u.name for u in await store.list_upstreams()] == ["alpha", "github"]
    assert await store.delete_upstream("github")
    assert not await store.delete_upstream("github")
    assert await store.get_upstream("github") is None
    with pytest.raises(ValueError):
        await store.put_upstream("x", {}, allow_on_all_virtual_keys=False, source="file")  # type: ignore[arg-type]


async def test_mirror_config_only_manages_config_rows(store: Store) -> None:
    api = await store.put_upstream("api_one", {"command": "api"}, allow_on_all_virtual_keys=False, source="api")
    first = await store.mirror_config({"a": ({"command": "a"}, False), "b": ({"url": "${B_URL}"}, True)})
    assert (first.added, first.updated, first.removed) == (("a", "b"), (), ())
    b = await store.get_upstream("b")
    assert b is not None and b.source == "config" and b.config == {"url": "${B_URL}"} and b.allow_on_all_virtual_keys

    second = await store.mirror_config(
        {"b": ({"url": "${B_URL}"}, False), "c": ({"command": "c"}, False), "api_one": ({"command": "file"}, True)}
    )
    assert (second.added, second.updated, second.removed, second.skipped) == (("c",), ("b",), ("a",), ("api_one",))
    assert {u.name: u.source for u in await store.list_upstreams()} == {"api_one": "api", "b": "config", "c": "config"}
    assert await store.get_upstream("api_one") == api

    revision = await store.revision()
    unchanged = await store.mirror_config({"b": ({"url": "${B_URL}"}, False), "c": ({"command": "c"}, False)})
    assert not unchanged.changed and await store.revision() == revision

    await store.mirror_config({})
    assert [u.name for u in await store.list_upstreams()] == ["api_one"]


# --- users -------------------------------------------------------------------------------------


async def test_users(store: Store) -> None:
    created = await store.upsert_user("sub-1", email="a@example.com")
    assert created.email == "a@example.com" and created.display_name is None and created.mcp_configs == {}
    assert created.last_seen_at == created.created_at

    again = await store.upsert_user("sub-1", display_name="Alice")
    assert again.email == "a@example.com" and again.display_name == "Alice"
    assert again.created_at == created.created_at
    assert again.last_seen_at is not None and again.last_seen_at >= created.created_at

    configured = await store.set_user_mcp_configs("sub-1", {"github": ["*"], "fs": ["read_file"]})
    assert configured.mcp_configs == {"github": ("*",), "fs": ("read_file",)}
    assert await store.get_user("sub-1") == configured

    preprovisioned = await store.set_user_mcp_configs("sub-2", {"github": ["search"]})
    assert preprovisioned.last_seen_at is None
    assert [u.id for u in await store.list_users()] == ["sub-1", "sub-2"]
    assert await store.get_user("nobody") is None
    with pytest.raises(TypeError):
        await store.set_user_mcp_configs("sub-1", {"github": "*"})


async def test_disabling_a_user_bumps_the_revision_and_survives_their_next_sign_in(store: Store) -> None:
    created = await store.upsert_user("sub-1")
    assert created.active is True
    before = await store.revision()
    disabled = await store.set_user_active("sub-1", False)
    assert disabled is not None and disabled.active is False
    assert await store.revision() > before, "running gateways must notice"
    assert (await store.upsert_user("sub-1", email="a@example.com")).active is False, "a sign-in does not re-enable"
    assert (await store.set_user_active("sub-1", True)) is not None
    assert (await store.get_user("sub-1")) is not None and (await store.get_user("sub-1")).active  # type: ignore[union-attr]
    assert await store.set_user_active("nobody", False) is None


# --- audit -------------------------------------------------------------------------------------


async def test_audit_batch_filters_and_order(store: Store) -> None:
    start = datetime.now(UTC)
    await store.record_audit([])
    await store.record_audit(
        [
            event(upstream="a", tool="t1", virtual_key_id="vk1", ts=start),
            event(upstream="b", tool="t2", outcome="denied", identity_mode="user", subject="sub-1"),
            event(upstream="a", tool="t3", virtual_key_id="vk2", outcome="tool_error", detail="x" * 900),
            event(method="tools/list", identity_mode="anonymous"),
        ]
    )
    events = await store.list_audit()
    assert [e.tool for e in events] == [None, "t3", "t2", "t1"]
    assert [e.id for e in events] == sorted((e.id for e in events), reverse=True)
    assert events[-1].ts == start and events[-1].ts.tzinfo is not None
    assert events[1].detail == "x" * 500

    assert [e.tool for e in await store.list_audit(upstream="a")] == ["t3", "t1"]
    assert [e.tool for e in await store.list_audit(virtual_key_id="vk2")] == ["t3"]
    assert [e.tool for e in await store.list_audit(outcome="denied")] == ["t2"]
    assert [e.tool for e in await store.list_audit(limit=2)] == [None, "t3"]
    assert [e.tool for e in await store.list_audit(before_id=events[1].id)] == ["t2", "t1"]
    assert [e.tool for e in await store.list_audit(after_id=events[2].id)] == [None, "t3"]
    assert [e.tool for e in await store.list_audit(upstream="a", before_id=events[1].id)] == ["t1"]

    assert await store.prune_audit(before=start + timedelta(microseconds=1)) == 1
    assert len(await store.list_audit()) == 3
    with pytest.raises(StoreError):
        await store.record_audit([event(ts=datetime(2020, 1, 1))])  # naive: refused, not guessed


# --- revision ----------------------------------------------------------------------------------


async def test_revision_moves_on_every_change_and_only_then(store: Store) -> None:
    revisions = [await store.revision()]

    async def changed() -> None:
        revisions.append(await store.revision())
        assert revisions[-1] > revisions[-2]

    async def unchanged() -> None:
        assert await store.revision() == revisions[-1]

    await store.put_upstream("u", {"command": "x"}, allow_on_all_virtual_keys=False, source="api")
    await changed()
    await store.mirror_config({"m": ({"command": "m"}, False)})
    await changed()
    await store.delete_upstream("u")
    await changed()
    await store.upsert_user("s")
    await unchanged()
    await store.set_user_mcp_configs("s", {"m": ["*"]})
    await changed()
    record, key = await store.create_virtual_key("k", mcp_configs={"m": ["*"]})
    await changed()
    await store.update_virtual_key(record.id, mcp_configs={"m": ["t"]})
    await changed()
    await store.update_virtual_key(record.id, active=False)
    await changed()
    await store.create_virtual_keys_bulk(3, mcp_configs={}, name_prefix="b")
    await changed()

    await store.touch_virtual_key(record.id)
    await store.record_audit([event()])
    await store.list_audit()
    await store.list_upstreams()
    await store.get_upstream("m")
    await store.list_users()
    await store.get_user("s")
    await store.list_virtual_keys(limit=10, offset=0)
    await store.count_virtual_keys()
    await store.find_virtual_key(hash_virtual_key(key))
    await store.get_virtual_key(record.id)
    await store.mirror_config({"m": ({"command": "m"}, False)})
    await store.delete_upstream("missing")
    await store.delete_virtual_key("missing")
    await store.delete_user("missing")
    await store.update_virtual_key("missing", name="x")
    with pytest.raises(RecordNotFound):
        await store.create_virtual_key("k", user_id="ghost", mcp_configs={})
    await unchanged()

    await store.delete_virtual_key(record.id)
    await changed()
    await store.delete_user("s")
    await changed()


# --- durability --------------------------------------------------------------------------------


async def test_restart_loses_nothing(store_url: str) -> None:
    store = await open_store(store_url)
    upstream = await store.put_upstream("gh", {"url": "${URL}"}, allow_on_all_virtual_keys=True, source="api")
    await store.mirror_config({"fs": ({"command": "fs"}, False)})
    user = await store.set_user_mcp_configs("sub", {"gh": ["*"]})
    user = await store.upsert_user("sub", email="s@example.com")
    record, key = await store.create_virtual_key("k", user_id="sub", mcp_configs={"gh": ["a", "b*"]})
    await store.touch_virtual_key(record.id)
    touched = await store.get_virtual_key(record.id)
    await store.record_audit([event(virtual_key_id="x", detail="d")])
    before = (
        await store.revision(),
        await store.list_upstreams(),
        await store.list_users(),
        await store.list_virtual_keys(limit=10, offset=0),
        await store.list_audit(),
    )
    await store.close()

    store = await open_store(store_url)
    try:
        after = (
            await store.revision(),
            await store.list_upstreams(),
            await store.list_users(),
            await store.list_virtual_keys(limit=10, offset=0),
            await store.list_audit(),
        )
        assert after == before
        assert await store.get_upstream("gh") == upstream
        assert await store.get_user("sub") == user
        assert await store.find_virtual_key(hash_virtual_key(key)) == touched
        assert touched is not None and touched.last_used_at is not None and touched.last_used_at.tzinfo is not None
    finally:
        await store.close()


# --- URLs and opening --------------------------------------------------------------------------


def test_database_urls_map_to_async_drivers() -> None:
    env: dict[str, str] = {}
    assert resolve_database_url("postgresql://u:p@h:5/db", environ=env) == "postgresql+asyncpg://u:p@h:5/db"
    assert resolve_database_url("postgres://u@h/db", environ=env) == "postgresql+asyncpg://u@h/db"
    assert resolve_database_url("sqlite:///x/y.db", environ=env) == "sqlite+aiosqlite:///x/y.db"
    assert resolve_database_url("postgresql://h/db?sslmode=require", environ=env).endswith("/db?ssl=require")
    assert resolve_database_url(environ={"DATABASE_URL": "postgresql://h/d"}) == "postgresql+asyncpg://h/d"
    assert resolve_database_url(environ=env) == f"sqlite+aiosqlite:///{Path.cwd() / '.mcpgw' / 'mcpgw.db'}"
    for bad in ("mysql://h/db", "postgresql+psycopg2://h/db", "sqlite://", "sqlite:///:memory:", "not a url"):
        with pytest.raises(ConfigError):
            resolve_database_url(bad, environ=env)
    assert redact_url("postgresql+asyncpg://user:hunter2@h/db") == "postgresql+asyncpg://user:***@h/db"


async def test_default_database_is_a_private_folder_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    async with await open_store() as store:
        assert store.dialect == "sqlite"
        assert "hunter2" not in store.url
    folder = tmp_path / ".mcpgw"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert (folder / "mcpgw.db").is_file()


async def test_unreachable_database_is_reported_without_the_password() -> None:
    with pytest.raises(StoreUnavailable) as caught:
        await open_store("postgresql://postgres:hunter2@127.0.0.1:1/nowhere")
    assert "hunter2" not in caught.value.message and "***" in caught.value.message


async def test_a_key_is_found_by_id_or_by_its_newest_name(store: Store) -> None:
    older, _ = await store.create_virtual_key("ci", mcp_configs={"lab": ["echo"]})
    newer, _ = await store.create_virtual_key("ci", mcp_configs={"lab": ["add"]})
    other, _ = await store.create_virtual_key("other", mcp_configs={})
    by_id = await store.get_virtual_key_by_id_or_name(older.id)
    assert by_id is not None and by_id.id == older.id and by_id.mcp_configs == {"lab": ("echo",)}
    by_name = await store.get_virtual_key_by_id_or_name("ci")
    assert by_name is not None and by_name.id == newer.id and by_name.mcp_configs == {"lab": ("add",)}
    assert (await store.get_virtual_key_by_id_or_name("other")) == other
    assert await store.get_virtual_key_by_id_or_name("nobody") is None
