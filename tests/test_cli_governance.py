"""`mcpgw vk` and `mcpgw audit`: the installed console script in real subprocesses, on a SQLite store in tmp_path.

The last test runs the whole loop a platform engineer would: `mcpgw serve`, a key made with the CLI, an MCP
client using it, the key disabled with the CLI while the gateway runs, and the call read back from the audit log.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import anyio
import anyio.to_thread
import httpx2
import pytest
import yaml

from mcp_gateway.store import AuditEventIn, open_store
from tests.conftest import free_port, lab, mcp_client, text_of, tool_names

MCPGW = Path(sys.executable).parent / "mcpgw"
TIMEOUT = 60  # seconds per command; generous for a loaded CI machine
KEY = re.compile(r"sk-mcpgw-[A-Za-z0-9_-]+")
ADMIN_TOKEN = "governance-admin-token"


def database_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/db.sqlite"


def environment(tmp_path: Path) -> dict[str, str]:
    # No COLUMNS: what a pipe gets. No inherited store or config settings: only this test's store.
    inherited = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "DATABASE_URL", "MCPGW_CONFIG")}
    return {**inherited, "DATABASE_URL": database_url(tmp_path)}


def mcpgw(tmp_path: Path, *args: str, columns: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MCPGW), *args],
        cwd=tmp_path,
        env=environment(tmp_path) | ({"COLUMNS": str(columns)} if columns else {}),
        stdin=subprocess.DEVNULL,  # never a terminal, so nothing can prompt
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def create_key(tmp_path: Path, *args: str) -> dict[str, Any]:
    created: dict[str, Any] = json.loads(ok(mcpgw(tmp_path, "vk", "create", "--json", *args)).stdout)
    return created


def show(tmp_path: Path, key_id: str) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(ok(mcpgw(tmp_path, "vk", "show", key_id, "--json")).stdout)
    return shown


# --- virtual keys --------------------------------------------------------------------------------


def test_create_prints_the_key_once_and_never_again(tmp_path: Path) -> None:
    created = ok(mcpgw(tmp_path, "vk", "create", "--name", "ci-bot", "--allow", "lab:echo"))

    keys = KEY.findall(created.stdout)
    assert len(keys) == 1, created.stdout
    key = keys[0]
    assert any(line.strip() == key for line in created.stdout.splitlines()), "the key has a line of its own"
    assert "cannot be shown again" in created.stdout
    match = re.search(r"\(id ([0-9a-f]+)\)", created.stdout)
    assert match is not None, created.stdout
    key_id = match.group(1)

    for args in (("vk", "list"), ("vk", "list", "--json"), ("vk", "show", key_id), ("vk", "show", key_id, "--json")):
        result = ok(mcpgw(tmp_path, *args))
        assert key_id in result.stdout
        assert key not in result.stdout
        assert not KEY.search(result.stdout.replace("sk-mcpgw-" + key[9:12], "")), "only the key prefix is shown"


def test_create_json_with_allowlist_and_new_user(tmp_path: Path) -> None:
    created = create_key(
        tmp_path,
        "--name",
        "notes-reader",
        "--description",
        "reads notes",
        "--user",
        "alice@example.com",
        "--allow",
        "lab:echo,whoami",
        "--allow",
        "github:*",
        "--allow",
        "docs:get_*",
        "--allow",
        "lab:echo,log",
    )

    assert created["key"].startswith("sk-mcpgw-")
    assert created["key_prefix"] == created["key"][:12]
    assert list(created)[:3] == ["id", "key", "name"]
    assert created["name"] == "notes-reader"
    assert created["description"] == "reads notes"
    assert created["user_id"] == "alice@example.com"
    assert created["active"] is True
    assert created["mcp_configs"] == {"lab": ["echo", "whoami", "log"], "github": ["*"], "docs": ["get_*"]}
    shown = show(tmp_path, created["id"])
    assert shown == {k: v for k, v in created.items() if k != "key"}

    async def user_exists() -> None:
        async with await open_store(database_url(tmp_path)) as store:
            user = await store.get_user("alice@example.com")
            assert user is not None
            assert user.last_seen_at is None  # created by an admin, never signed in

    anyio.run(user_exists)


def test_list_is_newest_first_with_limit_and_never_has_keys(tmp_path: Path) -> None:
    created = [create_key(tmp_path, "--name", f"key-{n}") for n in range(3)]

    listed = json.loads(ok(mcpgw(tmp_path, "vk", "list", "--json")).stdout)
    limited = json.loads(ok(mcpgw(tmp_path, "vk", "list", "--json", "--limit", "2")).stdout)
    table = ok(mcpgw(tmp_path, "vk", "list", "--limit", "2")).stdout

    assert [k["id"] for k in listed] == [c["id"] for c in reversed(created)]
    assert [k["id"] for k in limited] == [c["id"] for c in reversed(created)][:2]
    assert all("key" not in k for k in listed)
    for key in (c["key"] for c in created):
        assert key not in json.dumps(listed)
        assert key not in table
    assert "2 of 3 virtual keys" in table


def test_tables_written_to_a_pipe_keep_each_row_on_one_line(tmp_path: Path) -> None:
    name = "a-rather-long-key-name-for-the-platform-team"
    key_id = create_key(tmp_path, "--name", name, "--allow", "notes:get_note,list_notes", "--allow", "media:*")["id"]

    table = ok(mcpgw(tmp_path, "vk", "list")).stdout  # no COLUMNS, not a terminal: what `| grep` sees

    [row] = [line for line in table.splitlines() if key_id in line]
    assert name in row and "notes:get_note,list_notes media:*" in row, table


def test_list_on_an_empty_store(tmp_path: Path) -> None:
    assert json.loads(ok(mcpgw(tmp_path, "vk", "list", "--json")).stdout) == []


def test_show_disable_enable_delete(tmp_path: Path) -> None:
    key_id = create_key(tmp_path, "--name", "temp", "--allow", "lab:*")["id"]

    human = ok(mcpgw(tmp_path, "vk", "show", key_id)).stdout
    assert "temp" in human
    assert "lab: *" in human

    disabled = ok(mcpgw(tmp_path, "vk", "disable", key_id))
    assert "disabled" in disabled.stdout
    assert show(tmp_path, key_id)["active"] is False

    ok(mcpgw(tmp_path, "vk", "enable", key_id))
    assert show(tmp_path, key_id)["active"] is True

    unconfirmed = mcpgw(tmp_path, "vk", "delete", key_id)  # stdin is not a terminal: no prompt, no delete
    assert unconfirmed.returncode == 2
    assert "--yes" in unconfirmed.stderr
    assert show(tmp_path, key_id)["id"] == key_id

    deleted = ok(mcpgw(tmp_path, "vk", "delete", key_id, "--yes"))
    assert "deleted" in deleted.stdout
    assert mcpgw(tmp_path, "vk", "show", key_id).returncode == 1


@pytest.mark.parametrize("command", [("show",), ("disable",), ("enable",), ("delete", "--yes")], ids=lambda c: c[0])
def test_unknown_id_is_one_error_line_and_exit_1(tmp_path: Path, command: tuple[str, ...]) -> None:
    result = mcpgw(tmp_path, "vk", command[0], "0123nope", *command[1:])

    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: no virtual key with id 0123nope")


@pytest.mark.parametrize(
    ("allow", "reason"),
    [
        ("lab", "expected UPSTREAM:TOOL"),
        (":echo", "expected UPSTREAM:TOOL"),
        ("lab:", "name tools or patterns after ':'"),
        ("lab:echo,,log", "name tools or patterns after ':'"),
        ("my-server:echo", "may only contain letters, digits and underscores"),
    ],
)
def test_bad_allow_exits_2_with_the_reason(tmp_path: Path, allow: str, reason: str) -> None:
    result = mcpgw(tmp_path, "vk", "create", "--name", "x", "--allow", "lab:echo", "--allow", allow)

    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: --allow {allow!r}: ")
    assert reason in lines[0]
    assert not (tmp_path / "db.sqlite").exists(), "nothing is written for a rejected command"


def test_database_url_from_config_file(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(f"database_url: sqlite:///{tmp_path}/from-config.db\nupstreams: {{}}\n", encoding="utf-8")
    env = {k: v for k, v in environment(tmp_path).items() if k != "DATABASE_URL"}

    result = subprocess.run(
        [str(MCPGW), "vk", "create", "--name", "x", "-c", str(config)],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )

    ok(result)
    assert (tmp_path / "from-config.db").exists()
    assert not (tmp_path / ".mcpgw").exists()


def test_missing_config_file_given_explicitly_exits_2(tmp_path: Path) -> None:
    result = mcpgw(tmp_path, "vk", "list", "-c", str(tmp_path / "nope.yaml"))

    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr


# --- audit ---------------------------------------------------------------------------------------


def test_audit_tail_json_on_an_empty_store(tmp_path: Path) -> None:
    assert json.loads(ok(mcpgw(tmp_path, "audit", "tail", "--json")).stdout) == []


def record_events(tmp_path: Path, *events: AuditEventIn) -> None:
    async def record() -> None:
        async with await open_store(database_url(tmp_path)) as store:
            await store.record_audit(events)

    anyio.run(record)


def event(n: int, **fields: Any) -> AuditEventIn:
    values: dict[str, Any] = {
        "identity_mode": "vk",
        "subject": "vk-a",
        "virtual_key_id": "vk-a",
        "upstream": "lab",
        "tool": f"tool_{n:03d}",
        "method": "tools/call",
        "outcome": "ok",
        "duration_ms": 1.5,
        "ts": datetime(2026, 1, 1, 12, 0, n, tzinfo=UTC),
    }
    return AuditEventIn(**(values | fields))


def test_audit_tail_newest_events_oldest_first_with_filters(tmp_path: Path) -> None:
    record_events(
        tmp_path,
        event(0),
        event(1, upstream="github", outcome="denied", detail="not granted"),
        event(2, virtual_key_id="vk-b", subject="vk-b", outcome="tool_error"),
        event(3),
    )

    def tail(*args: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = json.loads(ok(mcpgw(tmp_path, "audit", "tail", "--json", *args)).stdout)
        return events

    assert [e["tool"] for e in tail()] == ["tool_000", "tool_001", "tool_002", "tool_003"]
    assert [e["tool"] for e in tail("--limit", "2")] == ["tool_002", "tool_003"]
    assert [e["tool"] for e in tail("--upstream", "github")] == ["tool_001"]
    assert [e["tool"] for e in tail("--vk", "vk-b")] == ["tool_002"]
    assert [e["tool"] for e in tail("--outcome", "ok", "--limit", "1")] == ["tool_003"]
    denied = tail("--outcome", "denied")[0]
    assert denied["detail"] == "not granted"
    assert denied["ts"] == "2026-01-01T12:00:01+00:00"

    table = ok(mcpgw(tmp_path, "audit", "tail", columns=200)).stdout
    assert "lab/tool_003" in table
    assert "tool_error" in table
    assert mcpgw(tmp_path, "audit", "tail", "--outcome", "fine").returncode == 2


def test_outcome_choices_match_the_store() -> None:
    from mcp_gateway.cli.audit import AuditOutcomeChoice
    from mcp_gateway.store import AuditOutcome

    assert get_args(AuditOutcomeChoice) == get_args(AuditOutcome)


@contextmanager
def follow(tmp_path: Path, *args: str) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """`mcpgw audit tail --follow` writing into a file; stopped (killed if need be) when the block ends."""
    output = tmp_path / "follow.out"
    with output.open("wb") as sink:
        proc = subprocess.Popen(
            [str(MCPGW), "audit", "tail", "--follow", *args],
            cwd=tmp_path,
            env=environment(tmp_path),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.PIPE,
        )
    with proc:
        try:
            yield proc, output
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def wait_for_lines(path: Path, count: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) >= count:
            return lines
        assert proc.poll() is None, f"follow exited early with {proc.returncode}"
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} lines within {timeout}s: {path.read_text(encoding='utf-8')!r}")


def test_audit_follow_prints_new_events_and_exits_0_on_ctrl_c(tmp_path: Path) -> None:
    record_events(tmp_path, event(0))

    with follow(tmp_path, "--json", "--limit", "1", "--upstream", "lab") as (proc, output):
        first = wait_for_lines(output, 1, proc)  # printed: the process is past its start and now polling
        record_events(tmp_path, event(1, upstream="github"), event(2), event(3))
        lines = wait_for_lines(output, 3, proc)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None
        stderr = proc.stderr.read().decode()

    assert [json.loads(line)["tool"] for line in first] == ["tool_000"]
    assert [json.loads(line)["tool"] for line in lines] == ["tool_000", "tool_002", "tool_003"]
    assert "Traceback" not in stderr
    assert stderr == ""


# --- end to end ----------------------------------------------------------------------------------


@contextmanager
def serve(tmp_path: Path, config: Path, *options: str) -> Iterator[subprocess.Popen[bytes]]:
    log = tmp_path / "gateway.log"
    env = environment(tmp_path) | {"MCPGW_ADMIN_TOKEN": ADMIN_TOKEN}
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [str(MCPGW), "serve", "--config", str(config), "--log-level", "warning", *options],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    with proc:
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def wait_ready(base_url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    async with httpx2.AsyncClient(timeout=2) as http:
        with anyio.fail_after(45):
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"gateway exited with {proc.returncode}:\n{await anyio.Path(log).read_text()}")
                try:
                    if (await http.get(f"{base_url}/readyz")).status_code == 200:
                        return
                except httpx2.TransportError:
                    pass
                await anyio.sleep(0.1)


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "probe", "version": "0"}},
}


async def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return await anyio.to_thread.run_sync(lambda: mcpgw(tmp_path, *args))


@pytest.mark.anyio
async def test_end_to_end_key_from_cli_governs_a_running_gateway(tmp_path: Path) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    config = tmp_path / "gateway.yaml"
    # Enforcement is on by default and `lab` is not global: only what a key grants is visible.
    config.write_text(yaml.safe_dump({"server": {"port": port}, "upstreams": {"lab": lab()}}), encoding="utf-8")

    with serve(tmp_path, config) as gateway:
        await wait_ready(base_url, gateway, tmp_path / "gateway.log")
        created = json.loads(
            ok(await cli(tmp_path, "vk", "create", "--name", "e2e", "--allow", "lab:echo", "--json")).stdout
        )
        key, key_id = created["key"], created["id"]
        headers = {"Authorization": f"Bearer {key}"}

        async with mcp_client(f"{base_url}/mcp", headers=headers) as session:
            assert tool_names(await session.list_tools()) == ["lab-echo"]
            result = await session.call_tool("lab-echo", {"text": "governed"})
            assert not result.is_error
            assert text_of(result) == "governed"

        ok(await cli(tmp_path, "vk", "disable", key_id))
        statuses: list[int] = []
        async with httpx2.AsyncClient(timeout=10) as http:
            with anyio.fail_after(5):  # the gateway polls the store revision every ~2 s
                while not statuses or statuses[-1] != 401:
                    response = await http.post(
                        f"{base_url}/mcp",
                        json=INITIALIZE,
                        headers=headers | {"Accept": "application/json, text/event-stream"},
                    )
                    statuses.append(response.status_code)
                    if response.status_code != 401:
                        await anyio.sleep(0.1)
        assert set(statuses) <= {200, 401}, statuses
        assert "inactive" in response.json()["error"]["message"]

        with anyio.fail_after(10):  # audit events are written in batches every 0.5 s
            while True:
                tail = ok(await cli(tmp_path, "audit", "tail", "--json"))
                calls = [e for e in json.loads(tail.stdout) if e["tool"] == "echo"]
                if calls:
                    break
                await anyio.sleep(0.2)

    assert key not in tail.stdout
    [call] = calls
    assert call["outcome"] == "ok"
    assert call["upstream"] == "lab"
    assert call["virtual_key_id"] == key_id
    assert call["identity_mode"] == "vk"
    assert call["method"] == "tools/call"
