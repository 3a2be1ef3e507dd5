"""Claude Code (`@anthropic-ai/claude-code`, installed by `make test`) sending its model traffic through mcpgw.

`claude -p` runs headless with a throwaway HOME, `ANTHROPIC_BASE_URL=<gateway>/anthropic` and a
virtual key, exactly as an engineer's `~/.claude/settings.json` would set it; the providers are
mock servers that check their own keys and record every request.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from examples.servers.llm_provider import MockProvider, Turn
from tests.conftest import RunningGateway, lab, running_gateway
from tests.serving import free_port, serve_asgi
from tests.test_real_clients import CLAUDE, claude_env, require

pytestmark = pytest.mark.anyio

ANTHROPIC_KEY = "sk-ant-provider-key-claude-code"
OPENAI_KEY = "sk-openai-provider-key-claude-code"


@contextlib.asynccontextmanager
async def gateway_with_mocks(
    upstreams: dict[str, Any] | None = None, grants: dict[str, list[str]] | None = None
) -> AsyncIterator[tuple[RunningGateway, MockProvider, MockProvider, str]]:
    anthropic_mock = MockProvider(ANTHROPIC_KEY)
    openai_mock = MockProvider(OPENAI_KEY)
    async with (
        serve_asgi(anthropic_mock.app, free_port()) as anthropic_url,
        serve_asgi(openai_mock.app, free_port()) as openai_url,
    ):
        llm = {
            "providers": {
                "anthropic": {"base_url": anthropic_url, "api_key": ANTHROPIC_KEY},
                "openai": {"base_url": f"{openai_url}/v1", "api_key": OPENAI_KEY},
            },
            "routing_rules": [
                {
                    "name": "sonnet-model",
                    "when": {"model": "sonnet-model", "headers": {"user-agent": {"starts_with": "claude-cli"}}},
                    "target": "anthropic/claude-sonnet-4-6",
                    "fallbacks": ["openai/gpt-5.5"],
                },
                {
                    "name": "haiku-model",
                    "when": {"model": "haiku-model"},
                    "target": "anthropic/claude-haiku-4-5",
                },
            ],
        }
        auth = {"enforce_auth_on_inference": True}
        async with running_gateway(upstreams or {}, auth=auth, llm=llm) as gateway:
            assert gateway.gateway.store is not None
            _, vk = await gateway.gateway.store.create_virtual_key("claude-code", mcp_configs=grants or {})
            await gateway.gateway.sync()
            yield gateway, anthropic_mock, openai_mock, vk


async def run_claude(home: Path, env: dict[str, str], *args: str) -> tuple[int, str, float]:
    project = home / "project"
    project.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with anyio.fail_after(150):
        done = await anyio.run_process(
            [str(CLAUDE), "-p", *args, "--output-format", "json"], env=env, cwd=project, check=False
        )
    return done.returncode, done.stdout.decode() + done.stderr.decode(), time.monotonic() - started


def model_env(home: Path, base_url: str, **extra: str) -> dict[str, str]:
    return {
        **claude_env(home),
        "ANTHROPIC_BASE_URL": f"{base_url}/anthropic",
        "ANTHROPIC_DEFAULT_SONNET_MODEL": "sonnet-model",
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": "haiku-model",
        **extra,
    }


def result_of(output: str) -> dict[str, Any]:
    start = output.index("{")
    value, _ = json.JSONDecoder().raw_decode(output[start:])
    assert isinstance(value, dict)
    return value


def message_requests(mock: MockProvider, path: str) -> list[Any]:
    return [r for r in mock.requests if r.path == path]


async def test_claude_code_turn_is_routed_by_rule_with_one_streamed_request(tmp_path: Path) -> None:
    require(CLAUDE)
    async with gateway_with_mocks() as (gateway, anthropic_mock, openai_mock, vk):
        env = model_env(tmp_path / "home", gateway.base_url, ANTHROPIC_AUTH_TOKEN=vk)
        code, output, _ = await run_claude(tmp_path / "home", env, "say hello", "--model", "sonnet")
    assert code == 0, output
    assert result_of(output)["result"] == "Hello from the mock.", output
    [turn] = message_requests(anthropic_mock, "/v1/messages")
    assert turn.body["model"] == "claude-sonnet-4-6" and turn.body["stream"] is True
    assert turn.headers["x-api-key"] == ANTHROPIC_KEY
    assert vk not in json.dumps(turn.headers) and vk not in json.dumps(turn.body)
    assert "claude-code-20250219" in turn.headers.get("anthropic-beta", "")
    assert not openai_mock.requests


async def test_claude_code_pinned_to_openai_runs_a_streamed_tool_call_and_finishes(tmp_path: Path) -> None:
    require(CLAUDE)
    home = tmp_path / "home"
    target = home / "project" / "hello.txt"
    async with gateway_with_mocks() as (gateway, anthropic_mock, openai_mock, vk):
        openai_mock.tool_then_text = ("Write", {"file_path": str(target), "content": "written via gpt-5.5\n"})
        openai_mock.default = Turn(text="The file is written.")
        env = model_env(home, gateway.base_url, ANTHROPIC_AUTH_TOKEN=vk)
        code, output, _ = await run_claude(
            home, env, "write the file", "--model", "openai/gpt-5.5", "--allowedTools", "Write"
        )
        usage = list(gateway.gateway.llm.usage.recent) if gateway.gateway.llm else []
    assert code == 0, output
    assert result_of(output)["result"] == "The file is written.", output
    assert target.read_text() == "written via gpt-5.5\n"
    calls = message_requests(openai_mock, "/v1/chat/completions")
    assert len(calls) == 2, [c.body.get("messages", [])[-1:] for c in calls]
    assert all(c.body["model"] == "gpt-5.5" and c.headers["authorization"] == f"Bearer {OPENAI_KEY}" for c in calls)
    tool_messages = [m for m in calls[1].body["messages"] if m["role"] == "tool"]
    assert len(tool_messages) == 1 and tool_messages[0]["tool_call_id"]
    assert not message_requests(anthropic_mock, "/v1/messages")
    assert [e.provider for e in usage] == ["openai", "openai"] and all(e.stream for e in usage)


async def test_claude_code_with_the_key_in_custom_headers_and_a_dummy_token(tmp_path: Path) -> None:
    require(CLAUDE)
    async with gateway_with_mocks() as (gateway, anthropic_mock, _, vk):
        env = model_env(
            tmp_path / "home",
            gateway.base_url,
            ANTHROPIC_AUTH_TOKEN="dummy",
            ANTHROPIC_CUSTOM_HEADERS=f"x-bf-vk: {vk}",
        )
        code, output, _ = await run_claude(tmp_path / "home", env, "say hello", "--model", "claude-opus-4-8")
    assert code == 0, output
    assert result_of(output)["result"] == "Hello from the mock."
    [turn] = message_requests(anthropic_mock, "/v1/messages")
    assert turn.body["model"] == "claude-opus-4-8" and "x-bf-vk" not in turn.headers


async def test_claude_code_with_a_disabled_key_fails_at_once_with_the_reason(tmp_path: Path) -> None:
    require(CLAUDE)
    async with gateway_with_mocks() as (gateway, anthropic_mock, _, vk):
        store = gateway.gateway.store
        assert store is not None
        [record] = await store.list_virtual_keys()
        await store.update_virtual_key(record.id, active=False)
        await gateway.gateway.sync()
        env = model_env(tmp_path / "home", gateway.base_url, ANTHROPIC_AUTH_TOKEN=vk)
        code, output, took = await run_claude(tmp_path / "home", env, "say hello", "--model", "sonnet")
    assert code == 1 and "virtual key is inactive" in output, output
    assert took < 30, f"Claude Code retried the 401 for {took:.0f} s (x-should-retry: false missing?)"
    assert not anthropic_mock.requests


async def test_claude_code_is_served_by_the_fallback_when_the_provider_is_overloaded(tmp_path: Path) -> None:
    require(CLAUDE)
    async with gateway_with_mocks() as (gateway, anthropic_mock, openai_mock, vk):
        anthropic_mock.script(Turn(status=529))
        env = model_env(tmp_path / "home", gateway.base_url, ANTHROPIC_AUTH_TOKEN=vk)
        code, output, _ = await run_claude(tmp_path / "home", env, "say hello", "--model", "sonnet")
        usage = list(gateway.gateway.llm.usage.recent) if gateway.gateway.llm else []
    assert code == 0, output
    assert result_of(output)["result"] == "Hello from the mock."
    assert len(message_requests(anthropic_mock, "/v1/messages")) == 1
    assert len(message_requests(openai_mock, "/v1/chat/completions")) == 1
    [event] = usage
    assert event.fallback and event.provider == "openai" and event.rule == "sonnet-model"


def tools_sent(request: Any) -> list[str]:
    return [tool["name"] for tool in request.body.get("tools") or []]


async def test_claude_code_with_the_gateways_mcp_added_gets_each_mcp_tool_once_and_calls_it_through_mcp(
    tmp_path: Path,
) -> None:
    """Both paths at once, as the README sets them up: the gateway does not inject what Claude Code sends."""
    require(CLAUDE)
    home = tmp_path / "home"
    async with gateway_with_mocks({"lab": lab()}, {"lab": ["echo", "whoami"]}) as (gateway, anthropic_mock, _, vk):
        anthropic_mock.tool_then_text = ("mcp__gw__lab-echo", {"text": "hello from the lab"})
        anthropic_mock.default = Turn(quote_tool_results=True)
        config = {
            "mcpServers": {"gw": {"type": "http", "url": gateway.url, "headers": {"Authorization": f"Bearer {vk}"}}}
        }
        (home / "project").mkdir(parents=True)
        (home / "mcp.json").write_text(json.dumps(config))
        env = model_env(home, gateway.base_url, ANTHROPIC_AUTH_TOKEN=vk)
        code, output, _ = await run_claude(
            home,
            env,
            "echo hello",
            "--model",
            "sonnet",
            "--mcp-config",
            str(home / "mcp.json"),
            "--allowedTools",
            "mcp__gw__lab-echo",
        )
        assert gateway.gateway.store is not None
        await gateway.gateway.audit.flush()
        audit = await gateway.gateway.store.list_audit(limit=20)
        fast = gateway.gateway.fast
    assert code == 0, output
    assert "hello from the lab" in result_of(output)["result"], output
    # Claude Code declares roots; its tool call still took the fast path (unless switched off).
    assert fast is None or fast.served == 1
    turns = message_requests(anthropic_mock, "/v1/messages")
    assert len(turns) == 2
    for turn in turns:
        names = tools_sent(turn)
        assert names.count("mcp__gw__lab-echo") == 1 and names.count("mcp__gw__lab-whoami") == 1, names
        assert "lab-echo" not in names and "lab-whoami" not in names  # not injected a second time
    [call] = [e for e in audit if e.tool == "echo"]
    assert call.llm_request_id is None  # Claude Code ran it through /mcp, not the gateway


async def test_claude_code_without_mcp_gets_the_tools_injected_and_run_by_the_gateway(tmp_path: Path) -> None:
    require(CLAUDE)
    home = tmp_path / "home"
    upstreams = {"lab": {**lab(), "tools_to_auto_execute": ["echo"]}}
    async with gateway_with_mocks(upstreams, {"lab": ["echo"]}) as (gateway, anthropic_mock, _, vk):
        anthropic_mock.script(Turn(tool=("lab-echo", {"text": "ran by the gateway"})), Turn(quote_tool_results=True))
        env = model_env(home, gateway.base_url, ANTHROPIC_AUTH_TOKEN=vk)
        code, output, _ = await run_claude(home, env, "echo something", "--model", "sonnet")
        assert gateway.gateway.store is not None
        await gateway.gateway.audit.flush()
        audit = await gateway.gateway.store.list_audit(limit=20)
    assert code == 0, output
    assert result_of(output)["result"] == "tool results: ran by the gateway", output
    first, second = message_requests(anthropic_mock, "/v1/messages")
    assert tools_sent(first).count("lab-echo") == 1 and tools_sent(first)[-1] == "lab-echo"
    assert second.body["messages"][-1]["content"][0]["type"] == "tool_result"
    [call] = [e for e in audit if e.tool == "echo"]
    assert call.llm_request_id and call.outcome == "ok"
