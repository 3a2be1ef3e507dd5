"""MCP tools inside model requests: injection, dedupe, agent mode — real gateway, real upstreams, SDK clients.

The providers are `MockProvider`s (real HTTP, real key checks) scripted turn by turn; the MCP
upstreams are the lab server (stdio) and the keyed server (streamable HTTP, per-user headers).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import anthropic
import anyio
import httpx2
import openai
import pytest

from examples.servers.llm_provider import MockProvider, Recorded, Turn
from mcp_gateway.http.gateway import Gateway
from tests.conftest import lab, running_gateway, upstream_process
from tests.serving import free_port, serve_asgi

pytestmark = pytest.mark.anyio

ANTHROPIC_KEY = "sk-ant-provider-key-tools"
OPENAI_KEY = "sk-openai-provider-key-tools"
KEYED = Path(__file__).parent / "upstreams" / "keyed_server.py"
MCPGW = Path(sys.executable).parent / "mcpgw"
ASK = {"max_tokens": 50, "messages": [{"role": "user", "content": "use the tools"}]}


@dataclass
class ToolLab:
    gateway: Gateway
    base: str
    anthropic_mock: MockProvider
    openai_mock: MockProvider
    vk: str
    clients: list[anthropic.AsyncAnthropic | openai.AsyncOpenAI] = field(default_factory=list)
    key_ids: dict[str, str] = field(default_factory=dict)

    def anthropic(self, key: str | None = None) -> anthropic.AsyncAnthropic:
        client = anthropic.AsyncAnthropic(api_key=key or self.vk, base_url=f"{self.base}/anthropic", max_retries=0)
        self.clients.append(client)
        return client

    def openai(self, key: str | None = None) -> openai.AsyncOpenAI:
        client = openai.AsyncOpenAI(api_key=key or self.vk, base_url=f"{self.base}/openai/v1", max_retries=0)
        self.clients.append(client)
        return client

    async def key(self, grants: Mapping[str, list[str]], llm: Mapping[str, Any] | None = None) -> str:
        store = self.gateway.store
        assert store is not None
        record, key = await store.create_virtual_key(f"key-{len(self.key_ids)}", mcp_configs=dict(grants), llm=llm)
        self.key_ids[key] = record.id
        await self.gateway.sync()
        return key


@contextlib.asynccontextmanager
async def tool_lab(upstreams: Mapping[str, Any], grants: Mapping[str, list[str]], **llm: Any) -> AsyncIterator[ToolLab]:
    anthropic_mock, openai_mock = MockProvider(ANTHROPIC_KEY), MockProvider(OPENAI_KEY)
    async with (
        serve_asgi(anthropic_mock.app, free_port()) as anthropic_url,
        serve_asgi(openai_mock.app, free_port()) as openai_url,
    ):
        settings = {
            "providers": {
                "anthropic": {"base_url": anthropic_url, "api_key": ANTHROPIC_KEY},
                "openai": {"base_url": f"{openai_url}/v1", "api_key": OPENAI_KEY},
            },
            **llm,
        }
        auth = {"enforce_auth_on_inference": True}
        async with running_gateway(upstreams, auth=auth, llm=settings) as running:
            store = running.gateway.store
            assert store is not None
            _, vk = await store.create_virtual_key("tools", mcp_configs=dict(grants))
            await running.gateway.sync()
            tl = ToolLab(running.gateway, running.base_url, anthropic_mock, openai_mock, vk)
            try:
                yield tl
            finally:
                for client in tl.clients:
                    await client.close()


def tool_names(request: Recorded) -> list[str]:
    tools = request.body.get("tools") or []
    return [t["name"] if "name" in t else t["function"]["name"] for t in tools]


def messages_of(mock: MockProvider) -> list[Recorded]:
    return [r for r in mock.requests if r.path in ("/v1/messages", "/v1/chat/completions")]


async def audit_of(gateway: Gateway) -> list[Any]:
    await gateway.audit.flush()
    store = gateway.store
    assert store is not None
    return list(reversed(await store.list_audit(limit=100)))


async def usage_of(gateway: Gateway) -> list[Any]:
    assert gateway.llm is not None
    return list(gateway.llm.usage.recent)


# -- injection -----------------------------------------------------------------------------------


async def test_the_provider_sees_exactly_the_keys_tools_once_in_the_requests_format() -> None:
    async with tool_lab({"lab": lab()}, {"lab": ["echo", "whoami"]}) as tl:
        own_tool = {"name": "lookup", "description": "client's own", "input_schema": {"type": "object"}}
        await tl.anthropic().messages.create(model="claude-sonnet-4-6", tools=[own_tool], **ASK)  # type: ignore[arg-type]
        [sent] = messages_of(tl.anthropic_mock)
        assert tool_names(sent) == ["lookup", "lab-echo", "lab-whoami"]
        echo = sent.body["tools"][1]
        assert echo["description"] == "Return `text`."
        assert echo["input_schema"]["properties"] == {"text": {"type": "string"}}
        await tl.openai().chat.completions.create(model="gpt-5.5", **ASK)  # type: ignore[call-overload]
        [chat] = messages_of(tl.openai_mock)
        assert tool_names(chat) == ["lab-echo", "lab-whoami"]
        assert chat.body["tools"][0]["type"] == "function"
        assert chat.body["tools"][0]["function"]["parameters"]["properties"] == {"text": {"type": "string"}}
        # Narrowed for one request as on /mcp, switched off for one request, off by `tool_choice: none`.
        narrow = {"x-bf-mcp-include-tools": "lab-whoami"}
        await tl.openai().chat.completions.create(model="gpt-5.5", extra_headers=narrow, **ASK)  # type: ignore[call-overload]
        assert tool_names(tl.openai_mock.requests[-1]) == ["lab-whoami"]
        off = {"x-mcpgw-inject-tools": "off"}
        await tl.openai().chat.completions.create(model="gpt-5.5", extra_headers=off, **ASK)  # type: ignore[call-overload]
        assert "tools" not in tl.openai_mock.requests[-1].body
        function = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
        await tl.openai().chat.completions.create(model="gpt-5.5", tools=[function], tool_choice="none", **ASK)  # type: ignore[call-overload, list-item]
        assert tool_names(tl.openai_mock.requests[-1]) == ["f"]
        # A key that says no, and a key that sees nothing, get nothing added.
        quiet = await tl.key({"lab": ["echo"]}, llm={"inject_mcp_tools": False})
        await tl.openai(quiet).chat.completions.create(model="gpt-5.5", **ASK)  # type: ignore[call-overload]
        assert "tools" not in tl.openai_mock.requests[-1].body
        nothing = await tl.key({})
        await tl.openai(nothing).chat.completions.create(model="gpt-5.5", **ASK)  # type: ignore[call-overload]
        assert "tools" not in tl.openai_mock.requests[-1].body


async def test_injection_can_be_off_for_the_whole_gateway_and_on_for_one_key() -> None:
    async with tool_lab({"lab": lab()}, {"lab": ["echo"]}, auto_inject_mcp_tools=False) as tl:
        await tl.openai().chat.completions.create(model="gpt-5.5", **ASK)  # type: ignore[call-overload]
        assert "tools" not in tl.openai_mock.requests[-1].body
        keen = await tl.key({"lab": ["echo"]}, llm={"inject_mcp_tools": True})
        await tl.openai(keen).chat.completions.create(model="gpt-5.5", **ASK)  # type: ignore[call-overload]
        assert tool_names(tl.openai_mock.requests[-1]) == ["lab-echo"]


@pytest.mark.parametrize(
    "client_name",
    [
        "mcp__gw__lab-echo",  # Claude Code, server added as "gw"
        "mcp__my-company_gateway__lab-echo",  # Claude Code, any server name
        "mcp__gw__lab_echo",  # Codex: '-' → '_'
        "mcp_gw_lab-echo",  # Gemini CLI
        "lab-echo",  # a client that uses the bare name
    ],
)
async def test_a_tool_the_client_already_sends_is_not_injected_again(client_name: str) -> None:
    async with tool_lab({"lab": lab()}, {"lab": ["echo", "whoami"]}) as tl:
        own = {"name": client_name, "description": "from /mcp", "input_schema": {"type": "object"}}
        await tl.anthropic().messages.create(model="claude-sonnet-4-6", tools=[own], **ASK)  # type: ignore[arg-type]
        assert tool_names(tl.anthropic_mock.requests[-1]) == [client_name, "lab-whoami"]


async def test_tools_claude_code_defers_behind_tool_search_are_not_injected_either() -> None:
    async with tool_lab({"lab": lab()}, {"lab": ["echo", "whoami"]}) as tl:
        messages = [
            {"role": "user", "content": "hi"},
            {
                "role": "system",
                "content": "Deferred tools available via ToolSearch:\nmcp__gw__lab-echo\nmcp__gw__lab-whoami",
            },
        ]
        body = {"model": "claude-sonnet-4-6", "max_tokens": 5, "messages": messages}
        async with httpx2.AsyncClient(base_url=tl.base, headers={"authorization": f"Bearer {tl.vk}"}) as http:
            answer = await http.post("/anthropic/v1/messages", json=body)
        assert answer.status_code == 200, answer.text
        assert "tools" not in tl.anthropic_mock.requests[-1].body


async def test_long_tool_names_get_stable_provider_safe_names_that_map_back() -> None:
    upstream = "u" * 60  # "uuu…u-echo" is 65 characters: over every provider's 64
    async with tool_lab({upstream: {**lab(), "tools_to_auto_execute": ["echo"]}}, {upstream: ["echo"]}) as tl:
        await tl.anthropic().messages.create(model="claude-sonnet-4-6", **ASK)  # type: ignore[call-overload]
        [name] = tool_names(tl.anthropic_mock.requests[-1])
        assert len(name) == 64 and name.startswith("u" * 40)
        tl.anthropic_mock.script(Turn(tool=(name, {"text": "mapped back"})), Turn(quote_tool_results=True))
        answer = await tl.anthropic().messages.create(model="claude-sonnet-4-6", **ASK)  # type: ignore[call-overload]
        assert answer.content[0].text == "tool results: mapped back"  # type: ignore[union-attr]
        assert tool_names(tl.anthropic_mock.requests[-1]) == [name]  # the same name on every request
        # The execute endpoint takes the name the model used, too.
        call = {"type": "tool_use", "id": "toolu_x", "name": name, "input": {"text": "again"}}
        async with httpx2.AsyncClient(base_url=tl.base, headers={"authorization": f"Bearer {tl.vk}"}) as http:
            executed = await http.post("/v1/mcp/tool/execute", json=call)
        assert executed.json()["content"] == [{"type": "text", "text": "again"}]


async def test_a_search_mode_upstream_injects_its_meta_tools_which_run_through_the_gateway() -> None:
    upstream = {**lab(), "tool_mode": "search", "tools_to_auto_execute": ["*"]}
    async with tool_lab({"lab": upstream}, {"lab": ["echo", "whoami"]}) as tl:
        tl.openai_mock.script(Turn(tool=("search_tools", {"query": "return text"})), Turn(quote_tool_results=True))
        answer = await tl.openai().chat.completions.create(model="gpt-5.5", **ASK)  # type: ignore[call-overload]
        first, second = messages_of(tl.openai_mock)
        assert tool_names(first) == ["search_tools", "get_tool_schema", "call_tool"]
        assert "lab-echo" in (answer.choices[0].message.content or "")
        assert second.body["messages"][-1]["role"] == "tool"
        # Meta tools through the execute endpoint (as a client that runs the calls itself would).
        call = {
            "id": "c1",
            "type": "function",
            "function": {
                "name": "call_tool",
                "arguments": json.dumps({"name": "lab-echo", "arguments": {"text": "via meta"}}),
            },
        }
        async with httpx2.AsyncClient(base_url=tl.base, headers={"authorization": f"Bearer {tl.vk}"}) as http:
            executed = await http.post("/v1/mcp/tool/execute", json=call)
        assert executed.status_code == 200 and "via meta" in executed.json()["content"]


# -- agent mode ----------------------------------------------------------------------------------


async def test_anthropic_client_gets_the_final_answer_after_the_gateway_ran_the_tool() -> None:
    async with tool_lab({"lab": {**lab(), "tools_to_auto_execute": ["echo"]}}, {"lab": ["echo", "whoami"]}) as tl:
        tl.anthropic_mock.script(Turn(tool=("lab-echo", {"text": "pong"})), Turn(quote_tool_results=True))
        answer = await tl.anthropic().messages.create(model="claude-sonnet-4-6", **ASK)  # type: ignore[call-overload]
        assert [b.type for b in answer.content] == ["text"]
        assert answer.content[0].text == "tool results: pong"  # type: ignore[union-attr]
        assert answer.stop_reason == "end_turn"
        assert answer.usage.input_tokens == 22 and answer.usage.output_tokens == 14  # both rounds
        first, second = messages_of(tl.anthropic_mock)
        assert first.body["messages"] == ASK["messages"]
        assert second.body["messages"][-2]["role"] == "assistant"
        [result] = second.body["messages"][-1]["content"]
        assert result["type"] == "tool_result" and result["content"] == [{"type": "text", "text": "pong"}]
        assert result["tool_use_id"] == second.body["messages"][-2]["content"][0]["id"]
        # One audit record for the call, joined to both usage rows by the request's id.
        [call] = [e for e in await audit_of(tl.gateway) if e.tool == "echo"]
        rounds = await usage_of(tl.gateway)
        assert len(rounds) == 2 and {r.request_id for r in rounds} == {call.llm_request_id}
        assert call.llm_request_id and call.outcome == "ok" and call.virtual_key_id is not None


async def test_streamed_anthropic_answer_is_one_well_formed_message_across_rounds() -> None:
    async with tool_lab({"lab": {**lab(), "tools_to_auto_execute": ["slow"]}}, {"lab": ["slow"]}) as tl:
        assert tl.gateway.llm is not None
        tl.gateway.llm.agent_keepalive_seconds = 0.05
        tl.anthropic_mock.script(
            Turn(preamble="Let me wait.", tool=("lab-slow", {"seconds": 0.4})), Turn(quote_tool_results=True)
        )
        body = {"model": "claude-sonnet-4-6", "stream": True, **ASK}
        events: list[tuple[str, dict[str, Any]]] = []
        async with (
            httpx2.AsyncClient(base_url=tl.base, headers={"authorization": f"Bearer {tl.vk}"}) as http,
            http.stream("POST", "/anthropic/v1/messages", json=body) as response,
        ):
            assert response.status_code == 200
            name = ""
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    events.append((name, json.loads(line[6:])))
        kinds = [n for n, _ in events]
        assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
        assert kinds.count("message_start") == 1 and kinds.count("message_stop") == 1
        assert "ping" in kinds  # keep-alives while the tool ran
        # The next round's history holds the model's whole turn: its text (relayed unparsed) and its call.
        turn = tl.anthropic_mock.requests[-1].body["messages"][-2]
        assert turn["content"][0] == {"type": "text", "text": "Let me wait."}
        assert turn["content"][1]["type"] == "tool_use" and turn["content"][1]["input"] == {"seconds": 0.4}
        starts = [d for n, d in events if n == "content_block_start"]
        assert [s["index"] for s in starts] == [0, 1]  # consecutive across rounds
        assert all(s["content_block"]["type"] == "text" for s in starts)  # the gateway's tool call is not shown
        # The official SDK reads the same stream into one message.
        tl.anthropic_mock.script(
            Turn(preamble="Let me wait.", tool=("lab-slow", {"seconds": 0.1})), Turn(quote_tool_results=True)
        )
        async with tl.anthropic().messages.stream(model="claude-sonnet-4-6", **ASK) as stream:  # type: ignore[arg-type]
            message = await stream.get_final_message()
        assert [b.text for b in message.content] == ["Let me wait.", "tool results: done"]  # type: ignore[union-attr]
        assert message.stop_reason == "end_turn" and message.usage.output_tokens == 14


async def test_openai_client_two_tool_calls_in_one_turn_run_concurrently_streaming_and_not() -> None:
    async with tool_lab({"lab": {**lab(), "tools_to_auto_execute": ["*"]}}, {"lab": ["slow", "echo"]}) as tl:
        two = Turn(tool=("lab-slow", {"seconds": 0.5}), more_tools=[("lab-slow", {"seconds": 0.5})])
        tl.openai_mock.script(two, Turn(quote_tool_results=True))
        answer = await tl.openai().chat.completions.create(model="gpt-5.5", **ASK)  # type: ignore[call-overload]
        assert answer.choices[0].message.content == "tool results: done | done"
        assert answer.choices[0].finish_reason == "stop" and answer.usage is not None
        assert answer.usage.prompt_tokens == 26
        calls = [e for e in await audit_of(tl.gateway) if e.tool == "slow"]
        assert len(calls) == 2
        spans = sorted((c.ts - timedelta(milliseconds=c.duration_ms), c.ts) for c in calls)
        assert spans[1][0] < spans[0][1]  # the second started before the first ended
        tl.openai_mock.script(
            Turn(preamble="Checking. ", tool=("lab-echo", {"text": "ok"})), Turn(quote_tool_results=True)
        )
        stream = await tl.openai().chat.completions.create(
            model="gpt-5.5", stream=True, stream_options={"include_usage": True}, **ASK
        )  # type: ignore[call-overload]
        text, finishes, usage = "", [], None
        async for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                text += choice.delta.content or ""
                assert not choice.delta.tool_calls
                if choice.finish_reason:
                    finishes.append(choice.finish_reason)
        assert text == "Checking. tool results: ok" and finishes == ["stop"]
        assert usage is not None and usage.completion_tokens == 10


async def test_calls_the_gateway_does_not_run_go_back_to_the_client_untouched() -> None:
    async with tool_lab({"lab": {**lab(), "tools_to_auto_execute": ["echo"]}}, {"lab": ["echo", "whoami"]}) as tl:
        own = {"name": "Read", "description": "client's", "input_schema": {"type": "object"}}
        # Not marked for auto-execution; a client tool beside an auto one: both end the loop.
        tl.anthropic_mock.script(
            Turn(tool=("lab-whoami", {})),
            Turn(tool=("lab-echo", {"text": "x"}), more_tools=[("Read", {"path": "a"})]),
        )
        for expected in (["lab-whoami"], ["lab-echo", "Read"]):
            answer = await tl.anthropic().messages.create(model="claude-sonnet-4-6", tools=[own], **ASK)  # type: ignore[arg-type]
            assert [b.name for b in answer.content if b.type == "tool_use"] == expected  # type: ignore[union-attr]
            assert answer.stop_reason == "tool_use"
        assert len(messages_of(tl.anthropic_mock)) == 2
        assert not [e for e in await audit_of(tl.gateway) if e.tool in ("echo", "whoami")]
        # A key may narrow what the gateway runs: with [] nothing is run for it (set with the CLI).
        narrow = await tl.key({"lab": ["echo"]})
        done = await anyio.run_process(
            [str(MCPGW), "vk", "llm", tl.key_ids[narrow], "--llm-auto-execute", "", "--llm-inject-tools"],
            env={**os.environ, "DATABASE_URL": str(tl.gateway.database_url)},
            check=False,
        )
        output = done.stdout.decode()
        assert done.returncode == 0 and "MCP tools added to requests; auto-executes nothing" in output, output
        await tl.gateway.sync()
        tl.anthropic_mock.script(Turn(tool=("lab-echo", {"text": "x"})))
        answer = await tl.anthropic(narrow).messages.create(model="claude-sonnet-4-6", **ASK)  # type: ignore[call-overload]
        assert answer.stop_reason == "tool_use"


async def test_the_depth_limit_hands_the_last_answer_to_the_client() -> None:
    async with tool_lab(
        {"lab": {**lab(), "tools_to_auto_execute": ["echo"]}}, {"lab": ["echo"]}, max_agent_depth=2
    ) as tl:
        tl.openai_mock.default = Turn(tool=("lab-echo", {"text": "again"}))
        answer = await tl.openai().chat.completions.create(model="gpt-5.5", **ASK)  # type: ignore[call-overload]
        assert answer.choices[0].finish_reason == "tool_calls"
        assert [c.function.name for c in answer.choices[0].message.tool_calls or []] == ["lab-echo"]  # type: ignore[union-attr]
        assert len(messages_of(tl.openai_mock)) == 3  # two rounds of tools run, then the answer as it is
        assert len([e for e in await audit_of(tl.gateway) if e.tool == "echo"]) == 2


async def test_a_failing_tool_reaches_the_model_as_an_error_result() -> None:
    async with tool_lab({"lab": {**lab(), "tools_to_auto_execute": ["sample"]}}, {"lab": ["sample"]}) as tl:
        tl.anthropic_mock.script(Turn(tool=("lab-sample", {"prompt": "hi"})), Turn(quote_tool_results=True))
        answer = await tl.anthropic().messages.create(model="claude-sonnet-4-6", **ASK)  # type: ignore[call-overload]
        assert "sampling failed" in answer.content[0].text  # type: ignore[union-attr]
        [result] = messages_of(tl.anthropic_mock)[1].body["messages"][-1]["content"]
        assert result["is_error"] is True


async def test_a_per_user_tool_without_a_credential_gives_the_model_the_link() -> None:
    async with upstream_process(KEYED, env={"KEYED_TOKENS": "*", "KEYED_OPEN_LISTING": "1"}) as url:
        keyed = {
            "transport": "http",
            "url": url,
            "auth": {"type": "per_user_headers", "header_keys": ["X-Api-Token"]},
            "tools_to_auto_execute": ["whoami"],
        }
        async with tool_lab({"keyed": keyed}, {"keyed": ["whoami"]}) as tl:
            tl.anthropic_mock.script(Turn(tool=("keyed-whoami", {})), Turn(quote_tool_results=True))
            answer = await tl.anthropic().messages.create(model="claude-sonnet-4-6", **ASK)  # type: ignore[call-overload]
            text = answer.content[0].text  # type: ignore[union-attr]
            assert f"{tl.base}/forms/credentials/" in text, text
            [call] = [e for e in await audit_of(tl.gateway) if e.tool == "whoami"]
            assert call.detail == "credential required" and call.llm_request_id


async def test_a_later_round_that_fails_ends_the_stream_with_an_error_event() -> None:
    async with tool_lab({"lab": {**lab(), "tools_to_auto_execute": ["echo"]}}, {"lab": ["echo"]}) as tl:
        tl.anthropic_mock.script(Turn(tool=("lab-echo", {"text": "x"})), Turn(status=400))
        with pytest.raises(anthropic.APIStatusError, match="mock error 400"):
            async with tl.anthropic().messages.stream(model="claude-sonnet-4-6", **ASK) as stream:  # type: ignore[arg-type]
                await stream.get_final_message()
        with anyio.fail_after(5):
            while len(await usage_of(tl.gateway)) < 2:
                await anyio.sleep(0.05)
