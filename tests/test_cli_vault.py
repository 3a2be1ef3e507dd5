"""`mcpgw creds` and `mcpgw vault rotate`: the installed console script in real subprocesses, on a SQLite
store in tmp_path whose key file (`master.key`) sits next to the database, as the gateway puts it.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp_gateway.store import open_store
from mcp_gateway.vault import CredentialInfo, MasterKey, Vault, WrongMasterKey, open_vault, pending_key_file, rotate

MCPGW = Path(sys.executable).parent / "mcpgw"
TIMEOUT = 60
KEY_LINE = re.compile(r"^[A-Za-z0-9_-]{43}=$", re.MULTILINE)
SECRETS = ("alice-headers-zebra-51c0", "alice-oauth-quokka-77e2", "bob-oauth-okapi-9d3b")
_CLEARED = ("COLUMNS", "DATABASE_URL", "MCPGW_CONFIG", "MCPGW_MASTER_KEY", "MCPGW_MASTER_KEY_FILE")


def database_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'state' / 'mcpgw.db'}"


def key_file(tmp_path: Path) -> Path:
    return tmp_path / "state" / "master.key"


def mcpgw(tmp_path: Path, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    return subprocess.run(
        [str(MCPGW), *args],
        cwd=tmp_path,
        env={**inherited, "DATABASE_URL": database_url(tmp_path), "COLUMNS": "200", **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert not any(secret in result.stdout + result.stderr for secret in SECRETS)
    return result


def fails(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The one error line of a failed command (no traceback, no secret)."""
    output = result.stdout + result.stderr
    assert result.returncode == code, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in output and not any(secret in output for secret in SECRETS)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def seed(tmp_path: Path, environ: Mapping[str, str] | None = None) -> list[CredentialInfo]:
    """Three credentials (bob's refused), through the same start-up path the gateway takes."""

    async def run() -> list[CredentialInfo]:
        async with await open_store(database_url(tmp_path)) as store:
            vault = await open_vault(store, environ=environ or {})
            stored = [
                await vault.put("user:alice", "github", "headers", {"X-Token": SECRETS[0]}),
                await vault.put(
                    "user:alice",
                    "github",
                    "oauth",
                    {"access_token": SECRETS[1]},
                    expires_at=datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC),
                ),
                await vault.put("user:bob", "slack", "oauth", {"access_token": SECRETS[2]}),
            ]
            await vault.mark_needs_reauth("user:bob", "slack", "oauth")
            return stored

    return anyio.run(run)


def read_secrets(tmp_path: Path, key: MasterKey) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Every credential's secret, decrypted with `key` (raises WrongMasterKey if it does not fit)."""

    async def run() -> dict[tuple[str, str, str], dict[str, Any]]:
        async with await open_store(database_url(tmp_path)) as store:
            vault = await Vault.open(store, key)
            found = {}
            for info in await vault.list():
                credential = await vault.get(info.identity_key, info.upstream, info.kind)
                assert credential is not None
                found[(info.identity_key, info.upstream, info.kind)] = credential.secret
            return found

    return anyio.run(run)


EXPECTED = {
    ("user:alice", "github", "headers"): {"X-Token": SECRETS[0]},
    ("user:alice", "github", "oauth"): {"access_token": SECRETS[1]},
    ("user:bob", "slack", "oauth"): {"access_token": SECRETS[2]},
}


def file_key(path: Path) -> MasterKey:
    return MasterKey.decode(path.read_text(), source=str(path))


# --- creds ---------------------------------------------------------------------------------------


def test_creds_list_table_and_json_without_secrets_or_master_key(tmp_path: Path) -> None:
    stored = seed(tmp_path)
    # Listing never decrypts: even a broken MCPGW_MASTER_KEY does not stop it.
    listed = json.loads(ok(mcpgw(tmp_path, "creds", "list", "--json", env={"MCPGW_MASTER_KEY": "x"})).stdout)
    assert [(c["identity_key"], c["upstream"], c["kind"], c["state"]) for c in listed] == [
        ("user:alice", "github", "headers", "active"),
        ("user:alice", "github", "oauth", "active"),
        ("user:bob", "slack", "oauth", "needs_reauth"),
    ]
    assert set(listed[0]) == {
        "id",
        "identity_key",
        "upstream",
        "kind",
        "state",
        "created_at",
        "updated_at",
        "expires_at",
        "last_used_at",
    }
    assert listed[1]["expires_at"] == "2031-01-02T03:04:05+00:00" and listed[0]["expires_at"] is None
    assert {c["id"] for c in listed} == {info.id for info in stored}

    table = ok(mcpgw(tmp_path, "creds", "list")).stdout
    for info in stored:
        assert info.id in table
    assert "user:alice" in table and "needs_reauth" in table and "2031-01-02 03:04:05" in table
    assert "3 credential(s)" in table

    only_slack = json.loads(ok(mcpgw(tmp_path, "creds", "list", "--upstream", "slack", "--json")).stdout)
    assert [c["identity_key"] for c in only_slack] == ["user:bob"]
    alices = json.loads(ok(mcpgw(tmp_path, "creds", "list", "--identity", "user:alice", "--json")).stdout)
    assert [c["kind"] for c in alices] == ["headers", "oauth"]
    assert "no stored credentials match" in ok(mcpgw(tmp_path, "creds", "list", "--upstream", "nope")).stdout


def test_creds_revoke_by_id_and_by_identity_and_upstream(tmp_path: Path) -> None:
    headers, _, bob = seed(tmp_path)
    revoked = ok(mcpgw(tmp_path, "creds", "revoke", headers.id)).stdout
    assert headers.id in revoked and "user:alice" in revoked and "github" in revoked
    assert "no credential with id" in fails(mcpgw(tmp_path, "creds", "revoke", headers.id), 1)

    assert (
        "revoked 1 credential(s)"
        in ok(mcpgw(tmp_path, "creds", "revoke", "--identity", "user:alice", "--upstream", "github")).stdout
    )
    assert "no credentials of user:alice for github" in fails(
        mcpgw(tmp_path, "creds", "revoke", "--identity", "user:alice", "--upstream", "github"), 1
    )
    fails(mcpgw(tmp_path, "creds", "revoke", "--identity", "user:bob"), 2)
    fails(mcpgw(tmp_path, "creds", "revoke", bob.id, "--identity", "user:bob", "--upstream", "slack"), 2)
    fails(mcpgw(tmp_path, "creds", "revoke"), 2)

    remaining = json.loads(ok(mcpgw(tmp_path, "creds", "list", "--json")).stdout)
    assert [c["id"] for c in remaining] == [bob.id]


# --- vault rotate --------------------------------------------------------------------------------


def test_rotate_with_a_key_file_replaces_it_atomically(tmp_path: Path) -> None:
    seed(tmp_path)
    path = key_file(tmp_path)
    old = file_key(path)
    result = ok(mcpgw(tmp_path, "vault", "rotate"))
    assert "3 credential(s)" in result.stdout and str(path) in result.stdout
    new = file_key(path)
    assert new != old
    assert new.encode() not in result.stdout and not KEY_LINE.search(result.stdout)  # a key file: nothing printed
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir() if "master" in p.name) == ["master.key"]
    assert read_secrets(tmp_path, new) == EXPECTED
    with pytest.raises(WrongMasterKey):
        read_secrets(tmp_path, old)


def test_rotate_with_the_environment_key_prints_the_new_one_once(tmp_path: Path) -> None:
    old = MasterKey.generate()
    environment = {"MCPGW_MASTER_KEY": old.encode()}
    seed(tmp_path, environment)
    result = ok(mcpgw(tmp_path, "vault", "rotate", env=environment))
    (printed,) = KEY_LINE.findall(result.stdout)
    new = MasterKey.decode(printed, source="stdout")
    assert new != old and old.encode() not in result.stdout
    assert "MCPGW_MASTER_KEY" in result.stdout and "3 credential(s)" in result.stdout
    assert not key_file(tmp_path).exists()  # the key lives in the variable only: no file appears
    assert read_secrets(tmp_path, new) == EXPECTED
    with pytest.raises(WrongMasterKey):
        read_secrets(tmp_path, old)
    assert "does not unlock" in fails(mcpgw(tmp_path, "vault", "rotate", env=environment), 1)


def test_rotate_to_a_new_key_file(tmp_path: Path) -> None:
    seed(tmp_path)
    old_text = key_file(tmp_path).read_text()
    target = tmp_path / "elsewhere" / "next.key"
    result = ok(mcpgw(tmp_path, "vault", "rotate", "--new-key-file", str(target)))
    assert str(target) in result.stdout and "MCPGW_MASTER_KEY_FILE" in result.stdout
    assert key_file(tmp_path).read_text() == old_text and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not pending_key_file(target).exists()
    assert read_secrets(tmp_path, file_key(target)) == EXPECTED
    taken = tmp_path / "taken.key"
    taken.write_text("something else\n")
    line = fails(
        mcpgw(tmp_path, "vault", "rotate", "--new-key-file", str(taken), env={"MCPGW_MASTER_KEY_FILE": str(target)}), 2
    )
    assert "already exists" in line and taken.read_text() == "something else\n"


def test_rotate_finishes_an_interrupted_rotation(tmp_path: Path) -> None:
    seed(tmp_path)
    path = key_file(tmp_path)
    old, new = file_key(path), MasterKey.generate()

    async def crash_after_commit() -> None:  # the staged key is written and the database rotated; no rename
        pending_key_file(path).write_text(new.encode() + "\n")
        pending_key_file(path).chmod(0o600)
        async with await open_store(database_url(tmp_path)) as store:
            await rotate(store, old, new)

    anyio.run(crash_after_commit)
    result = ok(mcpgw(tmp_path, "vault", "rotate"))
    assert "finished an interrupted rotation" in result.stdout
    assert file_key(path) == new and not pending_key_file(path).exists()
    assert read_secrets(tmp_path, new) == EXPECTED


def test_rotate_refuses_bad_keys_with_one_line(tmp_path: Path) -> None:
    assert "MCPGW_MASTER_KEY is not set" in fails(mcpgw(tmp_path, "vault", "rotate"), 1)
    seed(tmp_path)
    path = key_file(tmp_path)
    original = path.read_text()

    bad_value = "zebra-not-a-key-value"
    line = fails(mcpgw(tmp_path, "vault", "rotate", env={"MCPGW_MASTER_KEY": bad_value}), 1)
    assert "MCPGW_MASTER_KEY" in line and "32" in line and bad_value not in line

    path.chmod(0o640)
    assert f"chmod 600 {path}" in fails(mcpgw(tmp_path, "vault", "rotate"), 1)

    path.write_text(MasterKey.generate().encode() + "\n")
    path.chmod(0o600)
    assert "does not unlock" in fails(mcpgw(tmp_path, "vault", "rotate"), 1)

    path.write_text(original)
    assert read_secrets(tmp_path, file_key(path)) == EXPECTED  # none of the failures changed anything


def test_reset_after_a_lost_master_key_lets_the_gateway_start_over(tmp_path: Path) -> None:
    seed(tmp_path)
    path = key_file(tmp_path)
    path.unlink()  # the key is lost: the vault cannot be opened with any other key
    path.write_text(MasterKey.generate().encode())
    path.chmod(0o600)
    with pytest.raises(WrongMasterKey):
        read_secrets(tmp_path, file_key(path))
    refused = mcpgw(tmp_path, "vault", "reset")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    result = ok(mcpgw(tmp_path, "vault", "reset", "--yes"))
    assert "deleted 3 credential(s)" in result.stdout
    assert read_secrets(tmp_path, file_key(path)) == {}  # a fresh data key under the current master key
