"""Admin actions on keys with open MCP sessions never take `/mcp` down for anyone else.

Reproduces the outage found on main: a key disabled or deleted (with the CLI) while its MCP session
was open — or merely a key without grants that listed tools once — crashed the store watcher's
re-announce, which cancelled the SDK session manager: every later `/mcp` request answered 500 while
`/healthz` and `/readyz` kept saying 200. Each case runs a real `mcpgw serve` process, the real CLI
and official SDK clients holding their sessions.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import yaml
from mcp import MCPError

from tests.conftest import free_port, lab, mcp_client, text_of, tool_names
from tests.test_cli_governance import INITIALIZE, cli, ok, serve, wait_ready

pytestmark = pytest.mark.anyio

ACCEPT = {"Accept": "application/json, text/event-stream"}


async def create_key(tmp_path: Path, name: str, *allow: str, user: str | None = None) -> dict[str, Any]:
    args = [arg for grant in allow for arg in ("--allow", grant)] + (["--user", user] if user else [])
    created: dict[str, Any] = json.loads(
        ok(await cli(tmp_path, "vk", "create", "--name", name, *args, "--json")).stdout
    )
    return created


def bearer(key: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {key['key']}"}


async def initialize_status(base_url: str, key: dict[str, Any]) -> int:
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.post(f"{base_url}/mcp", json=INITIALIZE, headers=bearer(key) | ACCEPT)
        return response.status_code


def error_lines(log: Path) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines() if '"level": "error"' in line]


@contextlib.asynccontextmanager
async def gateway_process(tmp_path: Path) -> AsyncIterator[str]:
    """`mcpgw serve` (enforcement on, a `lab` upstream) until the block ends; then its log must hold no error."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({"server": {"port": port}, "upstreams": {"lab": lab()}}), encoding="utf-8")
    log = tmp_path / "gateway.log"
    with serve(tmp_path, config, "--log-format", "json") as gateway:
        await wait_ready(base_url, gateway, log)
        yield base_url
    assert not error_lines(log), error_lines(log)


@pytest.mark.parametrize("action", ["disable", "delete", "no-grants"])
async def test_an_admin_action_on_a_key_with_an_open_session_harms_no_one_else(tmp_path: Path, action: str) -> None:
    async with gateway_process(tmp_path) as base_url:
        alice = await create_key(tmp_path, "alice", *([] if action == "no-grants" else ["lab:echo"]))
        bob = await create_key(tmp_path, "bob", "lab:*")
        carol = await create_key(tmp_path, "carol", "lab:echo")

        async with (
            mcp_client(f"{base_url}/mcp", headers=bearer(alice)) as alice_session,
            mcp_client(f"{base_url}/mcp", headers=bearer(bob)) as bob_session,
        ):
            alice_tools = tool_names(await alice_session.list_tools())
            assert alice_tools == ([] if action == "no-grants" else ["lab-echo"])
            assert "lab-echo" in tool_names(await bob_session.list_tools())

            if action == "disable":
                ok(await cli(tmp_path, "vk", "disable", alice["id"]))
            elif action == "delete":
                ok(await cli(tmp_path, "vk", "delete", alice["id"], "--yes"))
            else:
                # No admin action at all: a later store change makes the watcher re-announce.
                await create_key(tmp_path, "dave", "lab:echo")

            if action != "no-grants":
                # The gateway notices within one poll (~2 s) and ends alice's session.
                with anyio.fail_after(10):
                    while await initialize_status(base_url, alice) != 401:
                        await anyio.sleep(0.2)
                with pytest.raises((MCPError, httpx2.HTTPError)):
                    await alice_session.list_tools()
            else:
                await anyio.sleep(5)  # two store polls: the re-announce that crashed main has run
                assert tool_names(await alice_session.list_tools()) == []

            # Everyone else keeps being served: bob's open session, and a new caller.
            result = await bob_session.call_tool("lab-echo", {"text": "still here"})
            assert text_of(result) == "still here"
            assert await initialize_status(base_url, carol) == 200
            async with mcp_client(f"{base_url}/mcp", headers=bearer(carol)) as carol_session:
                assert tool_names(await carol_session.list_tools()) == ["lab-echo"]

        async with httpx2.AsyncClient(timeout=10) as http:
            ready = await http.get(f"{base_url}/readyz")
            assert ready.status_code == 200, ready.text
            body = ready.json()
            assert body["sessions"]["running"] is True
            assert body["store"]["reachable"] is True
            assert {t["name"] for t in body["tasks"]} >= {"store-watcher", "audit-writer", "announcer"}
            assert all(t["state"] == "running" and t["failures"] == 0 for t in body["tasks"]), body["tasks"]
            assert (await http.get(f"{base_url}/healthz")).status_code == 200


async def test_a_user_disabled_with_the_cli_loses_the_sessions_of_their_keys_until_enabled(tmp_path: Path) -> None:
    async with gateway_process(tmp_path) as base_url:
        owned = await create_key(tmp_path, "alice-laptop", "lab:echo", user="alice@example.com")
        bob = await create_key(tmp_path, "bob", "lab:echo")
        listed = json.loads(ok(await cli(tmp_path, "user", "list", "--json")).stdout)
        assert [(u["id"], u["active"]) for u in listed] == [("alice@example.com", True)]

        async with (
            mcp_client(f"{base_url}/mcp", headers=bearer(owned)) as alice_session,
            mcp_client(f"{base_url}/mcp", headers=bearer(bob)) as bob_session,
        ):
            assert tool_names(await alice_session.list_tools()) == ["lab-echo"]
            disabled = ok(await cli(tmp_path, "user", "disable", "alice@example.com"))
            assert "disabled user alice@example.com" in disabled.stdout
            with anyio.fail_after(10):
                while await initialize_status(base_url, owned) != 401:
                    await anyio.sleep(0.2)
            with pytest.raises((MCPError, httpx2.HTTPError)):
                await alice_session.list_tools()
            assert text_of(await bob_session.call_tool("lab-echo", {"text": "fine"})) == "fine"

        ok(await cli(tmp_path, "user", "enable", "alice@example.com"))
        with anyio.fail_after(10):
            while await initialize_status(base_url, owned) != 200:
                await anyio.sleep(0.2)
        unknown = await cli(tmp_path, "user", "disable", "nobody")
        assert unknown.returncode == 1 and "no user with id nobody" in unknown.stderr
