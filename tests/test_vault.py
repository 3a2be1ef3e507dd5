"""The credential vault, against SQLite (a file in tmp_path) and PostgreSQL (the `store_url` fixture).

Raw SQL through a separate engine plays the attacker or the crash: it copies ciphertexts between
rows, damages a wrapped key, and reads what really is in the database files.
"""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import text

from mcp_gateway.store import Store, open_store
from mcp_gateway.store.engine import create_engine
from mcp_gateway.vault import (
    Credential,
    CredentialInfo,
    CredentialState,
    CredentialUnreadable,
    MasterKey,
    MasterKeyError,
    Vault,
    VaultError,
    WrongMasterKey,
    default_key_file,
    delete_credential,
    finish_interrupted_rotation,
    list_credentials,
    open_vault,
    pending_key_file,
    rotate,
    rotate_master_key,
)
from mcp_gateway.vault.keyfile import write_key_file

pytestmark = pytest.mark.anyio

ALICE_SECRET = "alice-zebra-7f3c-token"
BOB_SECRET = "bob-quokka-91ad-token"


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = await open_store(store_url)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def master() -> MasterKey:
    return MasterKey.generate()


async def sql(url: str, statement: str, **params: Any) -> list[tuple[Any, ...]]:
    """One statement through its own engine and transaction: what another process would see or do."""
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(text(statement), params)
            return [tuple(row) for row in result.all()] if result.returns_rows else []
    finally:
        await engine.dispose()


# --- storing and reading ---------------------------------------------------------------------------


async def test_round_trip_upsert_and_restart(store: Store, store_url: str, master: MasterKey) -> None:
    vault = await Vault.open(store, master)
    expires = datetime(2031, 5, 1, 12, 30, tzinfo=UTC)
    secret = {"access_token": ALICE_SECRET, "expires_in": 3600, "scopes": ["repo", "read:org"], "extra": None}
    info = await vault.put("user:alice", "github", "oauth", secret, expires_at=expires)
    assert type(info) is CredentialInfo and not hasattr(info, "secret")
    assert (info.identity_key, info.upstream, info.kind, info.state) == ("user:alice", "github", "oauth", "active")
    assert info.state is CredentialState.ACTIVE and info.expires_at == expires and info.last_used_at is None

    got = await vault.get("user:alice", "github", "oauth")
    assert isinstance(got, Credential)
    assert got.secret == secret and got.id == info.id and got.expires_at == expires
    for shown in (repr(got), str(got), repr(info), repr([got])):
        assert ALICE_SECRET not in shown and "secret" not in shown

    replaced = await vault.put("user:alice", "github", "oauth", {"access_token": BOB_SECRET})
    assert replaced.id == info.id and replaced.created_at == info.created_at
    assert replaced.updated_at >= info.updated_at and replaced.expires_at is None
    current = await vault.get("user:alice", "github", "oauth")
    assert current is not None and current.secret == {"access_token": BOB_SECRET}
    assert vars_of(current) == vars_of(replaced)
    assert await vault.get("user:alice", "github", "headers") is None
    assert await vault.get("user:bob", "github", "oauth") is None
    assert await vault.get("user:alice", "gitlab", "oauth") is None
    assert await sql(store_url, "SELECT count(*) FROM credential") == [(1,)]

    await vault.record_use(info.id)
    used = (await vault.list())[0]
    assert used.last_used_at is not None and used.last_used_at.tzinfo is not None

    async with await open_store(store_url) as restarted:
        again = await Vault.open(restarted, master)
        reread = await again.get("user:alice", "github", "oauth")
        assert reread is not None and reread.secret == {"access_token": BOB_SECRET}


def vars_of(info: CredentialInfo) -> dict[str, Any]:
    return {name: getattr(info, name) for name in CredentialInfo.__dataclass_fields__}


async def test_ciphertext_copied_to_another_row_does_not_decrypt(
    store: Store, store_url: str, master: MasterKey
) -> None:
    vault = await Vault.open(store, master)
    alice = await vault.put("user:alice", "github", "headers", {"X-Token": ALICE_SECRET})
    bob = await vault.put("user:bob", "github", "headers", {"X-Token": BOB_SECRET})
    await sql(
        store_url,
        "UPDATE credential SET"
        " ciphertext = (SELECT ciphertext FROM credential WHERE identity_key = 'user:alice'),"
        " nonce = (SELECT nonce FROM credential WHERE identity_key = 'user:alice')"
        " WHERE identity_key = 'user:bob'",
    )
    with pytest.raises(CredentialUnreadable) as caught:
        await vault.get("user:bob", "github", "headers")
    message = caught.value.message
    assert "user:bob" in message and "github" in message and bob.id in message and "does not decrypt" in message
    assert ALICE_SECRET not in message and BOB_SECRET not in message
    assert caught.value.__cause__ is None

    # Moving the row itself to another owner, upstream or kind breaks it the same way.
    original = {"identity_key": "user:alice", "upstream": "github", "kind": "headers"}
    for column, value in (("identity_key", "user:mallory"), ("upstream", "gitlab"), ("kind", "oauth")):
        update = f"UPDATE credential SET {column} = :value WHERE id = :id"
        await sql(store_url, update, value=value, id=alice.id)
        moved = {**original, column: value}
        with pytest.raises(CredentialUnreadable):
            await vault.get(moved["identity_key"], moved["upstream"], moved["kind"])
        await sql(store_url, update, value=original[column], id=alice.id)
    intact = await vault.get("user:alice", "github", "headers")
    assert intact is not None and intact.secret == {"X-Token": ALICE_SECRET}


async def test_wrong_or_damaged_keys_are_clear_errors(store: Store, store_url: str, master: MasterKey) -> None:
    vault = await Vault.open(store, master)
    await vault.put("shared", "notion", "oauth", {"access_token": ALICE_SECRET})
    other = MasterKey.generate()
    with pytest.raises(WrongMasterKey) as caught:
        await Vault.open(store, other)
    assert "does not unlock this vault's data key" in caught.value.message and "rotated" in caught.value.message
    assert other.encode() not in caught.value.message and master.encode() not in caught.value.message

    (wrapped,) = await sql(store_url, "SELECT wrapped_key FROM vault_key")
    damaged = bytes([wrapped[0][0] ^ 1]) + wrapped[0][1:]
    await sql(store_url, "UPDATE vault_key SET wrapped_key = :damaged", damaged=damaged)
    with pytest.raises(VaultError, match="damaged") as broken:
        await Vault.open(store, master)
    assert not isinstance(broken.value, WrongMasterKey)


async def test_needs_reauth_keeps_the_secret_until_put_again(store: Store, master: MasterKey) -> None:
    vault = await Vault.open(store, master)
    stored = await vault.put("vk:k1", "jira", "headers", {"X-Api-Key": ALICE_SECRET})
    await vault.mark_needs_reauth("vk:k1", "jira", "headers")
    refused = await vault.get("vk:k1", "jira", "headers")
    assert refused is not None and refused.state is CredentialState.NEEDS_REAUTH
    assert refused.secret == {"X-Api-Key": ALICE_SECRET} and refused.updated_at == stored.updated_at
    assert [info.state for info in await vault.list()] == [CredentialState.NEEDS_REAUTH]

    await vault.mark_needs_reauth("vk:nobody", "jira", "headers")  # nothing to mark: no error, nothing created
    assert len(await vault.list()) == 1

    again = await vault.put("vk:k1", "jira", "headers", {"X-Api-Key": BOB_SECRET})
    assert again.state is CredentialState.ACTIVE and again.id == stored.id


async def test_list_filters_and_never_holds_secrets(store: Store, master: MasterKey) -> None:
    vault = await Vault.open(store, master)
    await vault.put("user:b", "github", "oauth", {"t": ALICE_SECRET})
    await vault.put("user:a", "github", "headers", {"t": BOB_SECRET})
    await vault.put("user:a", "github", "oauth", {"t": "x"})
    await vault.put("user:a", "slack", "oauth", {"t": "y"})
    await vault.put("gateway", "slack", "oauth_client", {"client_id": "c"})

    listed = await vault.list()
    assert [(i.upstream, i.identity_key, i.kind) for i in listed] == [
        ("github", "user:a", "headers"),
        ("github", "user:a", "oauth"),
        ("github", "user:b", "oauth"),
        ("slack", "gateway", "oauth_client"),
        ("slack", "user:a", "oauth"),
    ]
    assert all(type(info) is CredentialInfo for info in listed)
    assert ALICE_SECRET not in repr(listed) and BOB_SECRET not in repr(listed)
    assert [i.kind for i in await vault.list(upstream="slack")] == ["oauth_client", "oauth"]
    assert [i.upstream for i in await vault.list(identity_key="user:a")] == ["github", "github", "slack"]
    assert [i.kind for i in await vault.list(upstream="github", identity_key="user:a")] == ["headers", "oauth"]
    assert await vault.list(upstream="nowhere") == []
    assert await list_credentials(store) == listed  # the operator's view needs no master key


async def test_delete_by_owner_and_by_id(store: Store, master: MasterKey) -> None:
    vault = await Vault.open(store, master)
    await vault.put("user:a", "github", "headers", {"t": "1"})
    await vault.put("user:a", "github", "oauth", {"t": "2"})
    await vault.put("user:a", "slack", "oauth", {"t": "3"})
    kept = await vault.put("user:b", "github", "oauth", {"t": "4"})

    assert await vault.delete("user:a", "github", "oauth") == 1
    assert await vault.delete("user:a", "github") == 1
    assert await vault.delete("user:a", "github") == 0
    assert [i.upstream for i in await vault.list(identity_key="user:a")] == ["slack"]

    removed = await vault.delete_by_id(kept.id)
    assert removed is not None and removed.id == kept.id and removed.identity_key == "user:b"
    assert await vault.delete_by_id(kept.id) is None
    assert await vault.get("user:b", "github", "oauth") is None
    (last,) = await vault.list()
    assert (await delete_credential(store, last.id)) == last and await vault.list() == []


async def test_bad_input_is_refused_without_echoing_the_secret(store: Store, master: MasterKey) -> None:
    vault = await Vault.open(store, master)
    with pytest.raises(ValueError, match="unknown credential kind"):
        await vault.put("user:a", "github", "password", {"t": ALICE_SECRET})
    with pytest.raises(ValueError, match="empty"):
        await vault.put("", "github", "oauth", {"t": ALICE_SECRET})
    with pytest.raises(ValueError, match="timezone-aware"):
        await vault.put("user:a", "github", "oauth", {"t": "x"}, expires_at=datetime(2030, 1, 1))
    with pytest.raises(VaultError) as caught:
        await vault.put("user:a", "github", "oauth", {"t": ALICE_SECRET.encode()})
    assert ALICE_SECRET not in caught.value.message and "JSON" in caught.value.message
    with pytest.raises(VaultError):
        await vault.put("user:a", "github", "oauth", [ALICE_SECRET])  # type: ignore[arg-type]
    assert await vault.list() == []


async def test_concurrent_tasks_and_concurrent_first_opens(store_url: str, master: MasterKey) -> None:
    stores = [await open_store(store_url) for _ in range(3)]
    try:
        vaults: list[Vault] = []

        async def open_one(opened: Store) -> None:
            vaults.append(await Vault.open(opened, master))

        async with anyio.create_task_group() as tg:  # three first starts on an empty vault at once
            for opened in stores:
                tg.start_soon(open_one, opened)
        assert await sql(store_url, "SELECT count(*) FROM vault_key") == [(1,)]

        mismatches: list[int] = []

        async def round_trip(n: int) -> None:
            vault = vaults[n % len(vaults)]
            await vault.put(f"session:{n}", "github", "headers", {"X-Token": f"token-{n}"})
            reader = vaults[(n + 1) % len(vaults)]  # written by one process, read by another
            got = await reader.get(f"session:{n}", "github", "headers")
            if got is None or got.secret != {"X-Token": f"token-{n}"}:
                mismatches.append(n)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for n in range(40):
                    tg.start_soon(round_trip, n)
        assert mismatches == []
        assert len(await vaults[0].list()) == 40
    finally:
        for opened in stores:
            await opened.close()


# --- rotation ----------------------------------------------------------------------------------------


async def test_rotation_re_encrypts_all_fifty_in_one_go(store: Store, store_url: str, master: MasterKey) -> None:
    stale = await Vault.open(store, master)
    kinds = ("headers", "oauth", "oauth_client")
    secrets = {(f"user:{n}", f"up{n % 4}", kinds[n % 3]): {"value": f"secret-{n}-{'x' * n}"} for n in range(50)}
    for (identity, upstream, kind), secret in secrets.items():
        await stale.put(identity, upstream, kind, secret)
    before = dict(await sql(store_url, "SELECT id, ciphertext FROM credential"))
    (old_key_id,) = await sql(store_url, "SELECT id FROM vault_key")

    new = MasterKey.generate()
    with pytest.raises(WrongMasterKey):  # the old key must be the one in use
        await rotate(store, MasterKey.generate(), new)
    assert dict(await sql(store_url, "SELECT id, ciphertext FROM credential")) == before

    assert await rotate(store, master, new) == 50

    rotated = await Vault.open(store, new)
    for (identity, upstream, kind), secret in secrets.items():
        got = await rotated.get(identity, upstream, kind)
        assert got is not None and got.secret == secret and got.state is CredentialState.ACTIVE
    after = dict(await sql(store_url, "SELECT id, ciphertext FROM credential"))
    assert after.keys() == before.keys() and all(after[i] != before[i] for i in before)
    keys = await sql(store_url, "SELECT id FROM vault_key")
    assert len(keys) == 1 and keys != [old_key_id]

    with pytest.raises(WrongMasterKey):
        await Vault.open(store, master)
    # A vault opened before the rotation (another gateway process) notices instead of misreading or
    # writing under a data key that no longer exists.
    with pytest.raises(WrongMasterKey):
        await stale.get("user:0", "up0", "headers")
    with pytest.raises(WrongMasterKey):
        await stale.put("user:new", "up0", "headers", {"value": "v"})
    assert len(await rotated.list()) == 50


async def test_rotation_with_an_unreadable_credential_changes_nothing(
    store: Store, store_url: str, master: MasterKey
) -> None:
    vault = await Vault.open(store, master)
    await vault.put("user:alice", "github", "headers", {"X-Token": ALICE_SECRET})
    bob = await vault.put("user:bob", "github", "headers", {"X-Token": BOB_SECRET})
    await sql(
        store_url,
        "UPDATE credential SET ciphertext = (SELECT ciphertext FROM credential WHERE identity_key = 'user:alice')"
        " WHERE identity_key = 'user:bob'",
    )
    keys_before = await sql(store_url, "SELECT id, wrapped_key FROM vault_key")
    with pytest.raises(CredentialUnreadable, match="nothing changed") as caught:
        await rotate(store, master, MasterKey.generate())
    assert bob.id in caught.value.message and ALICE_SECRET not in caught.value.message
    assert await sql(store_url, "SELECT id, wrapped_key FROM vault_key") == keys_before
    alice = await (await Vault.open(store, master)).get("user:alice", "github", "headers")
    assert alice is not None and alice.secret == {"X-Token": ALICE_SECRET}


async def test_rotating_an_unused_vault_creates_its_data_key(store: Store) -> None:
    new = MasterKey.generate()
    assert await rotate(store, MasterKey.generate(), new) == 0
    vault = await Vault.open(store, new)
    await vault.put("user:a", "github", "oauth", {"t": "1"})
    assert (got := await vault.get("user:a", "github", "oauth")) is not None and got.secret == {"t": "1"}


# --- at rest -----------------------------------------------------------------------------------------


async def test_no_plaintext_in_the_sqlite_files(tmp_path: Path) -> None:
    database = tmp_path / "vault.db"
    canary_value, canary_name = "canary-value-5e1d9b0c", "X-Canary-Header-77aa"
    async with await open_store(f"sqlite+aiosqlite:///{database}") as store:
        vault = await open_vault(store, environ={})
        await vault.put("user:canary-owner", "github", "headers", {canary_name: canary_value})
        await vault.put("user:canary-owner", "github", "oauth", {"access_token": canary_value}, expires_at=None)
        await vault.mark_needs_reauth("user:canary-owner", "github", "oauth")
        assert (await vault.get("user:canary-owner", "github", "headers")) is not None
    contents = database_files(database)
    assert b"user:canary-owner" in contents  # the scan does see the rows...
    assert canary_value.encode() not in contents and canary_name.encode() not in contents  # ...but no secret


def database_files(database: Path) -> bytes:
    """The bytes of the database and its -wal/-shm files, whatever is there."""
    files = sorted(database.parent.glob(database.name + "*"))
    assert database in files
    return b"".join(path.read_bytes() for path in files)


# --- the master key ----------------------------------------------------------------------------------


def test_key_file_is_created_private_once_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "master.key"
    previous = os.umask(0)  # a permissive umask must not widen the file's mode
    try:
        created = MasterKey.from_environment({}, path)
    finally:
        os.umask(previous)
    assert created.created and created.path == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [entry.name for entry in path.parent.iterdir()] == ["master.key"]  # no temporary file left
    assert path.read_text().strip() == created.encode() and len(base64.urlsafe_b64decode(created.encode())) == 32
    assert created.encode() not in repr(created) and created.encode() not in str(created)

    reused = MasterKey.from_environment({}, path)
    assert reused == created and not reused.created
    assert MasterKey.from_environment({}, path) != MasterKey.generate()


def test_environment_key_wins_in_base64_or_base64url(tmp_path: Path) -> None:
    raw = b"\xfb\xff\xbf" * 10 + b"\xfe\xff"
    standard = base64.b64encode(raw).decode()
    url_safe = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert set("+/") & set(standard) and set("-_") & set(url_safe)
    missing = tmp_path / "never" / "master.key"
    keys = [MasterKey.from_environment({"MCPGW_MASTER_KEY": value}, missing) for value in (standard, url_safe + "\n")]
    assert keys[0] == keys[1] == MasterKey(raw)
    assert keys[0].source == "MCPGW_MASTER_KEY"
    assert not missing.parent.exists()  # the variable wins: no key file is created


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "zebra horse battery staple!",
        base64.b64encode(b"sixteen-byte-key").decode(),
        base64.b64encode(b"thirty-three-bytes-of-key-materia").decode(),
        "Zm9v====",
    ],
)
def test_bad_environment_key_names_the_variable_never_the_value(tmp_path: Path, value: str) -> None:
    with pytest.raises(MasterKeyError) as caught:
        MasterKey.from_environment({"MCPGW_MASTER_KEY": value}, tmp_path / "master.key")
    message = caught.value.message
    assert "MCPGW_MASTER_KEY" in message and "32" in message
    if value.strip():
        assert value not in message
    assert not (tmp_path / "master.key").exists()


def test_malformed_key_file_names_the_file_never_the_content(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_text("zebra-not-a-key\n")
    path.chmod(0o600)
    with pytest.raises(MasterKeyError) as caught:
        MasterKey.from_environment({}, path)
    assert str(path) in caught.value.message and "zebra" not in caught.value.message


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_key_file_open_to_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "master.key"
    key = MasterKey.generate()
    path.write_text(key.encode() + "\n")
    path.chmod(mode)
    with pytest.raises(MasterKeyError) as caught:
        MasterKey.from_environment({}, path)
    message = caught.value.message
    assert f"{mode:04o}" in message and f"chmod 600 {path}" in message and key.encode() not in message
    path.chmod(0o400)  # owner-only (even read-only) is fine
    assert MasterKey.from_environment({}, path) == key


def test_missing_key_without_create_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyError, match="MCPGW_MASTER_KEY is not set"):
        MasterKey.from_environment({}, tmp_path / "master.key", create=False)
    assert not (tmp_path / "master.key").exists()


def test_default_key_file_locations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert default_key_file("sqlite:////srv/mcpgw/gw.db", {}) == Path("/srv/mcpgw/master.key")
    assert default_key_file("postgresql://u@db/mcpgw", {}) == tmp_path / ".mcpgw" / "master.key"
    assert default_key_file(None, {}) == tmp_path / ".mcpgw" / "master.key"  # beside the default .mcpgw/mcpgw.db
    assert default_key_file(None, {"DATABASE_URL": "sqlite:////data/x.db"}) == Path("/data/master.key")
    assert default_key_file("postgresql://u@db/x", {"MCPGW_MASTER_KEY_FILE": "/run/secrets/k"}) == Path(
        "/run/secrets/k"
    )


async def test_open_vault_at_start_up_and_after_an_interrupted_rotation(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'db' / 'mcpgw.db'}"
    key_file = tmp_path / "db" / "master.key"
    async with await open_store(url) as store:
        vault = await open_vault(store, environ={})
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        await vault.put("user:a", "github", "oauth", {"t": ALICE_SECRET})
        old = MasterKey.from_environment({}, key_file)
        assert (await open_vault(store, environ={})) is not None  # reused, not re-created

        # A rotation that committed but died before moving KEYFILE.new into place.
        new = MasterKey.generate()
        pending_key_file(key_file).write_text(new.encode())
        await rotate(store, old, new)
        with pytest.raises(WrongMasterKey) as caught:
            await open_vault(store, environ={})
        assert "master.key.new" in caught.value.message and "vault rotate" in caught.value.message

        # A lost key file: a new one would be created, is useless, and is not left behind to mislead.
        key_file.unlink()
        pending_key_file(key_file).unlink()
        with pytest.raises(WrongMasterKey, match="just created"):
            await open_vault(store, environ={})
        assert not key_file.exists()

        rotated = await open_vault(store, environ={"MCPGW_MASTER_KEY": new.encode()})
        got = await rotated.get("user:a", "github", "oauth")
        assert got is not None and got.secret == {"t": ALICE_SECRET}
        assert got.updated_at <= datetime.now(UTC) + timedelta(seconds=1)


async def test_rotate_master_key_puts_the_new_key_in_place_or_finishes_an_interrupted_rotation(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'mcpgw.db'}"
    key_file = tmp_path / "master.key"
    async with await open_store(url) as store:
        await (await open_vault(store, environ={})).put("user:a", "github", "oauth", {"t": ALICE_SECRET})

        async def opens(key: MasterKey) -> bool:
            got = await (await Vault.open(store, key)).get("user:a", "github", "oauth")
            return got is not None and got.secret == {"t": ALICE_SECRET}

        # Into the key file it was read from: staged, re-encrypted, moved into place.
        done = await rotate_master_key(store, key_file, key_file, environ={})
        assert (done.count, done.resumed, done.target) == (1, False, key_file)
        assert "replaced the one in" in done.summary
        assert not pending_key_file(key_file).exists() and stat.S_IMODE(key_file.stat().st_mode) == 0o600
        current = MasterKey.from_environment({}, key_file, create=False)
        assert await opens(current)

        # Committed, then stopped before the rename: the next run only moves KEYFILE.new into place.
        staged = MasterKey.generate()
        write_key_file(pending_key_file(key_file), staged.encode())
        await rotate(store, current, staged)
        done = await rotate_master_key(store, key_file, key_file, environ={})
        assert (done.count, done.resumed) == (0, True) and "interrupted" in done.summary
        assert MasterKey.from_environment({}, key_file, create=False).encode() == staged.encode()
        assert not await finish_interrupted_rotation(store, key_file)  # nothing left to finish

        # To no file: the key is handed over before the database depends on it, and stored nowhere.
        environ = {"MCPGW_MASTER_KEY": staged.encode()}
        with pytest.raises(ValueError, match="reveal"):
            await rotate_master_key(store, key_file, None, environ=environ)
        revealed: list[str] = []
        done = await rotate_master_key(store, key_file, None, reveal=revealed.append, environ=environ)
        assert done.count == 1 and done.target is None and done.key_in_environment
        assert len(revealed) == 1 and revealed[0] not in done.summary
        assert await opens(MasterKey.decode(revealed[0], source="test"))
        assert MasterKey.from_environment({}, key_file, create=False).encode() == staged.encode()  # untouched

        with pytest.raises(WrongMasterKey):  # the file's key is stale now, and there is no KEYFILE.new
            await rotate_master_key(store, key_file, key_file, environ={})


async def test_writes_racing_a_rotation_are_re_encrypted_or_refused(store_url: str, master: MasterKey) -> None:
    writer_store, rotator_store = await open_store(store_url), await open_store(store_url)
    try:
        writer = await Vault.open(writer_store, master)  # another gateway process, still on the old key
        await writer.put("user:first", "github", "oauth", {"t": "first"})
        written: list[int] = []
        refused: list[int] = []

        async def keep_writing(lane: int) -> None:
            for n in range(lane * 100, lane * 100 + 30):
                try:
                    await writer.put(f"user:{n}", "github", "oauth", {"t": f"v{n}"})
                except WrongMasterKey:
                    refused.append(n)
                    return
                written.append(n)

        new = MasterKey.generate()
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for lane in range(3):
                    tg.start_soon(keep_writing, lane)
                await anyio.sleep(0.05)
                await rotate(rotator_store, master, new)

        rotated = await Vault.open(rotator_store, new)
        listed = await rotated.list()
        assert len(listed) == 1 + len(written)  # nothing lost, nothing written under a retired data key
        for n in written:
            got = await rotated.get(f"user:{n}", "github", "oauth")
            assert got is not None and got.secret == {"t": f"v{n}"}
        assert written and (refused or len(written) == 90)
    finally:
        await writer_store.close()
        await rotator_store.close()
