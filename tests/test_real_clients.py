"""Real third-party MCP clients against the gateway: the conformance suite, the MCP Inspector CLI, Claude Code.

Both are npm packages installed by `make npm-peers` into `.cache/npm`. A missing install is a failure, not a
skip: these tests are the evidence that clients other than the Python SDK work through the gateway.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.conftest import CONFORMANCE_SERVER, NPM_BIN, ROOT, lab, running_gateway, upstream_process
from tests.credential_flows import fill_form, form_link

NODE = NPM_BIN / "node"
CONFORMANCE = ROOT / ".cache" / "npm" / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
INSPECTOR = NPM_BIN / "mcp-inspector"
CLAUDE = NPM_BIN / "claude"
KEYED_SERVER = ROOT / "tests" / "upstreams" / "keyed_server.py"

ACTIVE_SCENARIOS = 30
MIN_CHECKS = 40
_SCENARIO_LINE = re.compile(r"^[✓✗]\s+(?P<name>[\w-]+): (?P<passed>\d+) passed, (?P<failed>\d+) failed$", re.M)
_TOTAL_LINE = re.compile(r"^Total: (?P<passed>\d+) passed, (?P<failed>\d+) failed$", re.M)

pytestmark = pytest.mark.anyio


def require(*paths: Path) -> None:
    missing = [str(p.relative_to(ROOT)) for p in paths if not p.exists()]
    if missing:
        pytest.fail(f"npm peers are not installed ({', '.join(missing)} missing): run `make npm-peers`")


async def run(
    command: list[str | Path], *, env: dict[str, str] | None = None, timeout: float = 60
) -> tuple[int, str, str]:
    """Run a client process without blocking the loop that serves the in-process gateway."""
    with anyio.fail_after(timeout):
        done = await anyio.run_process([str(c) for c in command], env=env, check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def conformance(url: str, out: Path) -> tuple[int, str]:
    """Run the active server suite against `url`: exit code and combined output."""
    code, stdout, stderr = await run([NODE, CONFORMANCE, "server", "--url", url, "-o", out])
    return code, stdout + stderr


def scenario_results(label: str, code: int, output: str) -> dict[str, tuple[int, int]]:
    """Check one run's SUMMARY; returns `{scenario: (passed, failed)}`."""
    summary = output.partition("=== SUMMARY ===")[2]
    assert summary, f"no SUMMARY from the conformance suite ({label}):\n{output}"
    total = _TOTAL_LINE.search(summary)
    assert total is not None, summary
    assert code == 0, f"conformance suite ({label}) exited {code}:\n{summary}"
    assert int(total["failed"]) == 0 and int(total["passed"]) >= MIN_CHECKS, f"{label}:\n{summary}"
    scenarios = {m["name"]: (int(m["passed"]), int(m["failed"])) for m in _SCENARIO_LINE.finditer(summary)}
    assert len(scenarios) == ACTIVE_SCENARIOS, f"{label}:\n{summary}"
    assert all(failed == 0 for _passed, failed in scenarios.values()), f"{label}:\n{summary}"
    assert sum(passed for passed, _failed in scenarios.values()) == int(total["passed"]), f"{label}:\n{summary}"
    return scenarios


async def test_conformance_suite_through_gateway_matches_direct(tmp_path: Path) -> None:
    require(NODE, CONFORMANCE)
    # Assertions wait until the gateway and upstream are shut down, so a failure reports cleanly.
    async with upstream_process(CONFORMANCE_SERVER, "http") as upstream_url:
        direct_run = await conformance(upstream_url, tmp_path / "direct")
        async with running_gateway({"everything": {"transport": "http", "url": upstream_url, "prefix": ""}}) as gw:
            gateway_run = await conformance(gw.url, tmp_path / "gateway")
    direct = scenario_results("direct", *direct_run)
    via_gateway = scenario_results("via gateway", *gateway_run)
    assert via_gateway == direct


def inspector_env(home: Path) -> dict[str, str]:
    return {**os.environ, "PATH": f"{NPM_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "HOME": str(home)}


async def inspector(url: str, home: Path, *args: str) -> tuple[int, str, str]:
    return await run([INSPECTOR, "--cli", url, "--transport", "http", *args], env=inspector_env(home))


def inspector_json(code: int, stdout: str, stderr: str) -> dict[str, Any]:
    assert code == 0, f"mcp-inspector exited {code}:\n{stdout}\n{stderr}"
    result: dict[str, Any] = json.loads(stdout)
    return result


async def test_inspector_cli_lists_and_calls_tools(tmp_path: Path) -> None:
    require(INSPECTOR)
    home = tmp_path / "home"
    home.mkdir()
    async with running_gateway({"lab": lab()}) as gw:
        list_run = await inspector(gw.url, home, "--method", "tools/list")
        call_run = await inspector(
            gw.url, home, "--method", "tools/call", "--tool-name", "lab-echo", "--tool-arg", "text=hello"
        )
    listed = inspector_json(*list_run)
    assert "lab-echo" in [tool["name"] for tool in listed["tools"]]
    called = inspector_json(*call_run)
    assert not called.get("isError", False), called
    assert [block["text"] for block in called["content"] if block["type"] == "text"] == ["hello"]


def claude_env(home: Path) -> dict[str, str]:
    quiet = {"DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1"}
    return {**inspector_env(home), **quiet}


async def test_claude_code_connects_with_a_virtual_key(tmp_path: Path) -> None:
    require(CLAUDE)
    home = tmp_path / "home"
    project = home / "project"
    project.mkdir(parents=True)
    env = claude_env(home)

    async def claude(*args: str) -> str:
        with anyio.fail_after(90):
            done = await anyio.run_process([str(CLAUDE), *args], env=env, cwd=project, check=False)
        return done.stdout.decode() + done.stderr.decode()

    async with running_gateway({"lab": lab()}, auth={"enforce_auth_on_inference": True}) as gw:
        store = gw.gateway.store
        assert store is not None
        _, key = await store.create_virtual_key("claude", mcp_configs={"lab": ["echo"]})
        await gw.gateway.sync()
        added = await claude(
            "mcp", "add", "--transport", "http", "mcpgw", gw.url, "--header", f"Authorization: Bearer {key}"
        )
        await claude("mcp", "add", "--transport", "http", "nokey", gw.url)
        connected = await claude("mcp", "list")
    # `claude mcp list` exits 0 either way; the verdict is in the text. Once the gateway is gone
    # the same check must say so, which shows the parse can fail.
    disconnected = await claude("mcp", "list")
    assert "mcpgw" in added, added
    assert f"mcpgw: {gw.url} (HTTP) - \u2714 Connected" in connected, connected
    # Without a key the gateway answers 401 with where to sign in (its OAuth server): Claude Code offers
    # to authenticate instead of failing (tests/test_oauth_claude_code.py signs in).
    assert f"nokey: {gw.url} (HTTP) - ! Needs authentication" in connected, "enforcement must refuse no key"
    assert f"mcpgw: {gw.url} (HTTP) - \u2718 Failed to connect" in disconnected, disconnected


async def test_inspector_cli_gets_a_credential_link_then_calls_with_its_own_token(tmp_path: Path) -> None:
    """Per-user headers with a client that is not the Python SDK: the link in the tool error, then success."""
    require(INSPECTOR)
    home = tmp_path / "home"
    home.mkdir()
    keyed = {"transport": "http", "auth": {"type": "per_user_headers", "header_keys": ["X-Api-Token"]}}
    identity = ("--header", "x-bf-mcp-session-id: inspector-user")
    call = ("--method", "tools/call", "--tool-name", "keyed-whoami", *identity)
    async with (
        upstream_process(KEYED_SERVER, env={"KEYED_OPEN_LISTING": "1"}) as url,
        running_gateway({"keyed": {**keyed, "url": url}}) as gw,
    ):
        code, stdout, _ = await inspector(gw.url, home, *call)
        assert code == 5, stdout  # the Inspector's exit code for a tool result with isError: true
        first, _ = json.JSONDecoder().raw_decode(stdout.strip())
        assert first.get("isError") is True
        link = form_link(first["content"][0]["text"])
        assert (await fill_form(link, {"X-Api-Token": "inspector-token"})).status_code == 200
        second = inspector_json(*await inspector(gw.url, home, *call))
    assert not second.get("isError", False), second
    assert second["structuredContent"] == {"token": "inspector-token"}
