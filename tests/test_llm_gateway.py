"""The LLM gateway end to end: the official `anthropic` and `openai` SDKs → mcpgw → mock providers.

Every provider here is a real HTTP server speaking the real wire format and checking its own key
(`examples/servers/llm_provider.py`); the gateway runs as it does in production, behind the same
identity middleware as `/mcp`, with a virtual key from its store.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import anyio
import httpx2
import openai
import pytest

from examples.servers.llm_provider import MockProvider, Turn
from tests.conftest import ADMIN_TOKEN, RunningGateway, running_gateway
from tests.conftest import lab as lab_upstream
from tests.serving import free_port, serve_asgi

pytestmark = pytest.mark.anyio

ANTHROPIC_KEY = "sk-ant-provider-key-for-tests"
OPENAI_KEY = "sk-openai-provider-key-for-tests"
MCPGW = Path(sys.executable).parent / "mcpgw"
CLAUDE_CODE_UA = "claude-cli/2.1.197 (external, sdk-cli)"
WEATHER_ARGS = {"city": "Zürich", "units": "metric", "days": [1, 2, 3], "note": 'quote " and \\ backslash'}


@dataclass
class Lab:
    gateway: RunningGateway
    anthropic: MockProvider
    openai: MockProvider
    vk: str
    clients: list[Any] = field(default_factory=list)

    @property
    def base(self) -> str:
        return self.gateway.base_url

    def anthropic_client(self, key: str | None = None, **options: Any) -> anthropic.AsyncAnthropic:
        client = anthropic.AsyncAnthropic(
            base_url=f"{self.base}/anthropic", api_key=key or self.vk, max_retries=0, **options
        )
        self.clients.append(client)
        return client

    def openai_client(self, key: str | None = None) -> openai.AsyncOpenAI:
        client = openai.AsyncOpenAI(base_url=f"{self.base}/openai/v1", api_key=key or self.vk, max_retries=0)
        self.clients.append(client)
        return client

    @property
    def usage(self) -> list[Any]:
        service = self.gateway.gateway.llm
        assert service is not None
        return service.usage.recent


@contextlib.asynccontextmanager
async def llm_lab(provider_options: dict[str, dict[str, Any]] | None = None, **llm: Any) -> AsyncIterator[Lab]:
    options = provider_options or {}
    anthropic_mock = MockProvider(ANTHROPIC_KEY)
    openai_mock = MockProvider(OPENAI_KEY)
    async with (
        serve_asgi(anthropic_mock.app, free_port()) as anthropic_url,
        serve_asgi(openai_mock.app, free_port()) as openai_url,
    ):
        settings = {
            "providers": {
                "anthropic": {"base_url": anthropic_url, "api_key": ANTHROPIC_KEY, **options.get("anthropic", {})},
                "openai": {"base_url": f"{openai_url}/v1", "api_key": OPENAI_KEY, "models": ["gpt-5.5"]},
            },
            "routing_rules": [
                {
                    "name": "sonnet-model",
                    "priority": 10,
                    "when": {"model": "sonnet-model", "headers": {"user-agent": {"starts_with": "claude-cli"}}},
                    "target": "anthropic/claude-sonnet-4-6",
                    "fallbacks": ["openai/gpt-5.5"],
                }
            ],
            **llm,
        }
        async with running_gateway({}, auth={"enforce_auth_on_inference": True}, llm=settings) as gateway:
            assert gateway.gateway.store is not None
            _, vk = await gateway.gateway.store.create_virtual_key("llm-tests", mcp_configs={})
            lab = Lab(gateway, anthropic_mock, openai_mock, vk)
            try:
                yield lab
            finally:
                for client in lab.clients:
                    await client.close()


async def test_anthropic_client_reaches_anthropic_with_the_provider_key_and_everything_passed_through() -> None:
    async with llm_lab() as lab:
        client = lab.anthropic_client()
        message = await client.messages.create(
            model="claude-opus-4-8",
            max_tokens=100,
            system=[{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
            messages=[{"role": "user", "content": "hi"}, {"role": "system", "content": "mid-conversation system"}],  # type: ignore[list-item]
            extra_body={"thinking": {"type": "adaptive"}, "context_management": {"edits": []}, "future_field": 1},
            extra_headers={"anthropic-beta": "context-1m-2025-08-07,effort-2025-11-24"},
        )
        assert message.content[0].type == "text" and message.content[0].text == "Hello from the mock."
        [seen] = lab.anthropic.requests
        assert seen.headers["x-api-key"] == ANTHROPIC_KEY
        assert lab.vk not in json.dumps(seen.headers) and lab.vk not in json.dumps(seen.body)
        assert seen.headers["anthropic-beta"] == "context-1m-2025-08-07,effort-2025-11-24"
        assert seen.body["model"] == "claude-opus-4-8"
        assert seen.body["thinking"] == {"type": "adaptive"} and seen.body["future_field"] == 1
        assert seen.body["messages"][1] == {"role": "system", "content": "mid-conversation system"}
        [event] = lab.usage
        assert (event.provider, event.model, event.input_tokens, event.output_tokens) == (
            "anthropic",
            "claude-opus-4-8",
            11,
            7,
        )
        assert event.virtual_key_id is not None and event.status == 200


async def test_a_routing_rule_rewrites_the_model_only_for_matching_requests() -> None:
    async with llm_lab() as lab:
        client = lab.anthropic_client()
        await client.messages.create(
            model="sonnet-model",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"user-agent": CLAUDE_CODE_UA},
        )
        await client.messages.create(
            model="sonnet-model",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"user-agent": "curl/8"},
        )
        assert [r.body["model"] for r in lab.anthropic.requests] == ["claude-sonnet-4-6", "sonnet-model"]
        assert [e.rule for e in lab.usage] == ["sonnet-model", None]


async def test_anthropic_stream_is_relayed_with_the_full_event_sequence() -> None:
    async with llm_lab() as lab:
        client = lab.anthropic_client()
        seen: list[str] = []
        async with client.messages.stream(
            model="claude-sonnet-4-6", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            async for event in stream:
                seen.append(event.type)
            final = await stream.get_final_message()
        assert final.content[0].type == "text" and final.content[0].text == "Hello from the mock."
        assert seen[0] == "message_start" and seen[-1] == "message_stop"
        assert lab.usage[-1].stream and lab.usage[-1].output_tokens == 7 and lab.usage[-1].ttfb_ms is not None


async def test_anthropic_client_gets_a_streamed_tool_call_from_an_openai_provider_and_sends_the_result_back() -> None:
    async with llm_lab() as lab:
        lab.openai.script(Turn(tool=("get_weather", WEATHER_ARGS)), Turn(text="It is sunny."))
        client = lab.anthropic_client()
        tools = [
            {
                "name": "get_weather",
                "description": "Weather for a city",
                "input_schema": {
                    "$schema": "https://json-schema.org/draft/2020-12/schema",
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                },
            }
        ]
        messages: list[Any] = [{"role": "user", "content": "weather?"}]
        async with client.messages.stream(
            model="openai/gpt-5.5",
            max_tokens=200,
            tools=tools,  # type: ignore[arg-type]
            messages=messages,
            extra_body={"thinking": {"type": "adaptive"}, "output_config": {"effort": "low"}},
        ) as stream:
            first = await stream.get_final_message()
        [call] = [b for b in first.content if b.type == "tool_use"]
        assert call.name == "get_weather" and call.input == WEATHER_ARGS
        assert first.stop_reason == "tool_use"
        sent = lab.openai.requests[0]
        assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
        assert sent.body["model"] == "gpt-5.5" and sent.body["reasoning_effort"] == "low"
        assert sent.body["tools"][0]["function"]["parameters"] == {
            "type": "object",
            "properties": {"city": {"type": "string"}},
        }
        assert "thinking" not in sent.body and "output_config" not in sent.body

        messages += [
            {"role": "assistant", "content": [c.model_dump() for c in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21°C"}]},
        ]
        second = await client.messages.create(model="openai/gpt-5.5", max_tokens=200, tools=tools, messages=messages)  # type: ignore[arg-type]
        assert second.content[0].type == "text" and second.content[0].text == "It is sunny."
        followup = lab.openai.requests[1].body["messages"]
        assert followup[1]["tool_calls"][0]["id"] == call.id
        assert json.loads(followup[1]["tool_calls"][0]["function"]["arguments"]) == WEATHER_ARGS
        assert followup[2] == {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21°C"}


async def test_openai_client_reaches_openai_and_streams() -> None:
    async with llm_lab() as lab:
        client = lab.openai_client()
        completion = await client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
        assert completion.choices[0].message.content == "Hello from the mock."
        stream = await client.chat.completions.create(
            model="gpt-5.5",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "Hello from the mock."
        assert [r.headers["authorization"] for r in lab.openai.requests] == [f"Bearer {OPENAI_KEY}"] * 2
        assert lab.usage[-1].input_tokens == 13 and lab.usage[-1].output_tokens == 5


async def test_openai_client_gets_an_exact_tool_call_from_an_anthropic_provider() -> None:
    async with llm_lab() as lab:
        lab.anthropic.script(Turn(tool=("get_weather", WEATHER_ARGS)), Turn(tool=("get_weather", WEATHER_ARGS)))
        client = lab.openai_client()
        tools: Any = [
            {
                "type": "function",
                "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
            }
        ]
        messages: Any = [{"role": "system", "content": "sys"}, {"role": "user", "content": "weather?"}]
        stream = await client.chat.completions.create(
            model="anthropic/claude-sonnet-4-6", messages=messages, tools=tools, stream=True
        )
        arguments = ""
        names = []
        finish = None
        async for chunk in stream:
            for choice in chunk.choices:
                for call in choice.delta.tool_calls or ():
                    if call.function and call.function.name:
                        names.append(call.function.name)
                    if call.function and call.function.arguments:
                        arguments += call.function.arguments
                finish = choice.finish_reason or finish
        assert names == ["get_weather"] and json.loads(arguments) == WEATHER_ARGS and finish == "tool_calls"
        whole = await client.chat.completions.create(
            model="anthropic/claude-sonnet-4-6", messages=messages, tools=tools
        )
        [call] = whole.choices[0].message.tool_calls or []
        assert json.loads(call.function.arguments) == WEATHER_ARGS  # type: ignore[union-attr]
        sent = lab.anthropic.requests[0].body
        assert sent["system"] == [{"type": "text", "text": "sys"}] and sent["max_tokens"] == 4096
        assert sent["tools"] == [{"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}]


async def test_a_failing_provider_falls_back_before_anything_was_streamed() -> None:
    async with llm_lab() as lab:
        lab.anthropic.script(Turn(status=529))
        client = lab.anthropic_client()
        async with client.messages.stream(
            model="sonnet-model",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"user-agent": CLAUDE_CODE_UA},
        ) as stream:
            final = await stream.get_final_message()
        assert final.content[0].type == "text" and final.content[0].text == "Hello from the mock."
        assert len(lab.anthropic.requests) == 1 and len(lab.openai.requests) == 1
        event = lab.usage[-1]
        assert event.fallback and event.provider == "openai" and event.model == "gpt-5.5" and event.status == 200


async def test_auth_failures_are_final_and_in_each_apis_shape() -> None:
    async with llm_lab() as lab:
        with pytest.raises(anthropic.AuthenticationError) as refused:
            await lab.anthropic_client(key="sk-mcpgw-not-a-key").messages.create(
                model="claude-sonnet-4-6", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
            )
        assert refused.value.response.headers["x-should-retry"] == "false"
        assert refused.value.body == {
            "type": "error",
            "error": {"type": "authentication_error", "message": "virtual key not found"},
        }
        with pytest.raises(openai.AuthenticationError) as openai_refused:
            await lab.openai_client(key="nonsense").chat.completions.create(
                model="gpt-5.5", messages=[{"role": "user", "content": "hi"}]
            )
        assert "authentication required" in str(openai_refused.value)
        assert not lab.anthropic.requests and not lab.openai.requests


async def test_x_bf_vk_wins_over_a_foreign_bearer_token() -> None:
    """Claude Code with ANTHROPIC_CUSTOM_HEADERS='x-bf-vk: …' also sends its dummy ANTHROPIC_AUTH_TOKEN."""
    async with llm_lab() as lab:
        client = lab.anthropic_client(key="dummy-token", default_headers={"x-bf-vk": lab.vk})
        client.api_key = "dummy-token"
        message = await client.messages.create(
            model="claude-sonnet-4-6", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
        assert message.content[0].type == "text"


async def test_bad_requests_get_clear_errors_in_the_apis_shape() -> None:
    async with llm_lab(max_body_bytes=4096) as lab:
        client = lab.anthropic_client()
        with pytest.raises(anthropic.BadRequestError, match="provider 'bedrock' is not configured"):
            await client.messages.create(
                model="bedrock/global.anthropic.claude-sonnet-4-6",
                max_tokens=5,
                messages=[{"role": "user", "content": "hi"}],
            )
        headers = {"authorization": f"Bearer {lab.vk}", "content-type": "application/json"}
        async with httpx2.AsyncClient(base_url=lab.base) as http:
            broken = await http.post("/anthropic/v1/messages?beta=true", content=b"{not json", headers=headers)
            assert broken.status_code == 400
            assert broken.json()["error"] == {
                "type": "invalid_request_error",
                "message": "the request body is not valid JSON",
            }
            huge = await http.post("/openai/v1/chat/completions", content=b"x" * 5000, headers=headers)
            assert huge.status_code == 413 and huge.json()["error"]["type"] == "invalid_request_error"
            no_model = await http.post("/anthropic/v1/messages", json={"messages": []}, headers=headers)
            assert no_model.status_code == 400 and "`model` is required" in no_model.text
            probe = await http.head("/anthropic")
            assert probe.status_code == 200  # Claude Code's start-up probe, without credentials
            models = await http.get("/anthropic/v1/models", headers=headers)
            assert [m["id"] for m in models.json()["data"]] == ["sonnet-model", "openai/gpt-5.5"]
        assert not lab.anthropic.requests


async def test_provider_garbage_and_a_stream_that_stops_mid_way_end_with_an_error_not_a_hang(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with llm_lab(provider_options={"anthropic": {"timeout": 1}}) as lab:
        lab.anthropic.script(Turn(garbage=True))
        client = lab.openai_client()
        with pytest.raises(openai.APIStatusError) as garbage:
            await client.chat.completions.create(
                model="anthropic/claude-sonnet-4-6", messages=[{"role": "user", "content": "hi"}]
            )
        assert garbage.value.status_code == 502 and "not JSON" in str(garbage.value)

        lab.anthropic.script(Turn(hang_after=3))
        anthropic_client = lab.anthropic_client()
        with pytest.raises(anthropic.APIStatusError, match="timed out mid-stream"):
            async with anthropic_client.messages.stream(
                model="claude-sonnet-4-6", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
            ) as stream:
                async for _ in stream:
                    pass
        assert lab.usage[-1].status == 502 and "timed out" in (lab.usage[-1].error or "")
    logged = [r for r in caplog.records if r.name.startswith(("llm_gateway", "mcp_gateway"))]
    assert any("ended early" in r.getMessage() for r in logged)
    assert not [r for r in logged if r.exc_info], "a provider failure is not a gateway bug: no traceback"


async def test_count_tokens_goes_to_anthropic_family_providers_only() -> None:
    async with llm_lab() as lab:
        client = lab.anthropic_client()
        counted = await client.messages.count_tokens(
            model="claude-sonnet-4-6", messages=[{"role": "user", "content": "hi"}]
        )
        assert counted.input_tokens == 42
        with pytest.raises(anthropic.NotFoundError, match="only available for Anthropic-family providers"):
            await client.messages.count_tokens(model="openai/gpt-5.5", messages=[{"role": "user", "content": "hi"}])


async def test_usage_is_stored_priced_and_reported_by_the_cli_and_metrics() -> None:
    prices = {
        "anthropic/claude-sonnet-4-6": {"input": 3.0, "output": 15.0, "cache_read": 0.3},
        "openai/*": {"input": 1.0},
    }
    async with llm_lab(prices=prices) as lab:
        client = lab.anthropic_client()
        for model in ("claude-sonnet-4-6", "claude-sonnet-4-6", "openai/gpt-5.5"):
            await client.messages.create(model=model, max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        service = lab.gateway.gateway.llm
        store = lab.gateway.gateway.store
        assert service is not None and store is not None
        await service.usage.flush()
        by_model = {t.key: t for t in await store.llm_usage_totals(by="model")}
        sonnet = by_model["anthropic/claude-sonnet-4-6"]
        # 11 input, 7 output, 3 cache reads per mock answer: (11*3 + 7*15 + 3*0.3) / 1e6 each
        assert sonnet.requests == 2 and sonnet.cost_usd == pytest.approx(2 * (33 + 105 + 0.9) / 1e6)
        assert by_model["openai/gpt-5.5"].cost_usd == pytest.approx(13 / 1e6)
        url = str(lab.gateway.gateway.database_url)
        done = await anyio.run_process(
            [str(MCPGW), "usage", "--by", "model", "--json"], env={**os.environ, "DATABASE_URL": url}, check=False
        )
        report = json.loads(done.stdout)
        assert {row["key"]: row["requests"] for row in report["rows"]} == {
            "anthropic/claude-sonnet-4-6": 2,
            "openai/gpt-5.5": 1,
        }, done.stderr
        async with httpx2.AsyncClient(base_url=lab.base) as http:
            metrics = (await http.get("/metrics")).text
        assert (
            'mcpgw_llm_requests_total{model="anthropic/claude-sonnet-4-6",provider="anthropic",status="200"} 2.0'
            in metrics
        )
        assert 'mcpgw_llm_tokens_total{kind="output",model="openai/gpt-5.5",provider="openai"} 5.0' in metrics


async def test_a_key_limited_to_some_models_is_refused_others_and_fallbacks_outside_its_list() -> None:
    async with llm_lab() as lab:
        store = lab.gateway.gateway.store
        assert store is not None
        _, limited = await store.create_virtual_key("limited", mcp_configs={}, llm={"allowed_models": ["anthropic/*"]})
        client = lab.anthropic_client(key=limited)
        ok = await client.messages.create(
            model="claude-sonnet-4-6", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
        assert ok.content[0].type == "text"
        with pytest.raises(anthropic.PermissionDeniedError) as refused:
            await client.messages.create(
                model="openai/gpt-5.5", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
            )
        assert "may not use model 'openai/gpt-5.5'" in str(refused.value) and "allowed: anthropic/*" in str(
            refused.value
        )
        assert refused.value.response.headers["x-should-retry"] == "false"
        lab.anthropic.script(Turn(status=529))
        with pytest.raises(anthropic.APIStatusError) as overloaded:
            await client.messages.create(
                model="sonnet-model",
                max_tokens=5,
                messages=[{"role": "user", "content": "hi"}],
                extra_headers={"user-agent": CLAUDE_CODE_UA},
            )
        assert overloaded.value.status_code == 529
        assert not lab.openai.requests  # the fallback is outside the key's models


async def test_request_and_dollar_budgets_answer_429_with_retry_after() -> None:
    async with llm_lab(prices={"anthropic/*": {"input": 1_000_000.0}}) as lab:
        store = lab.gateway.gateway.store
        service = lab.gateway.gateway.llm
        assert store is not None and service is not None
        record, key = await store.create_virtual_key("budgeted", mcp_configs={})
        done = await anyio.run_process(
            [str(MCPGW), "vk", "llm", record.id, "--llm-rpm", "2", "--llm-usd-day", "20"],
            env={**os.environ, "DATABASE_URL": str(lab.gateway.gateway.database_url)},
            check=False,
        )
        assert done.returncode == 0 and "2 requests/min; 20 USD/day" in done.stdout.decode(), done.stderr
        await lab.gateway.gateway.sync()
        client = lab.anthropic_client(key=key)
        ask: dict[str, Any] = {
            "model": "claude-sonnet-4-6",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "hi"}],
        }
        # Each answer: 11 input + 3 cache-read tokens, cache reads at the input price ($1 a token): $14.
        await client.messages.create(**ask)
        await client.messages.create(**ask)  # $28: over the day's $20 from now on
        with pytest.raises(anthropic.RateLimitError) as limited:
            await client.messages.create(**ask)
        assert "at most 2 requests per minute" in str(limited.value)
        assert 1 <= int(limited.value.response.headers["retry-after"]) <= 60
        service.limits._requests.clear()  # the minute has passed
        with pytest.raises(anthropic.RateLimitError, match=r"budget spent: \$28.00 of \$20.00 per day"):
            await client.messages.create(**ask)
        assert len(lab.anthropic.requests) == 2


async def test_azure_openai_deployments_claude_on_foundry_and_a_rate_limited_key_rotated_away() -> None:
    azure = MockProvider("azure-key")
    keyed = MockProvider("second-key")
    async with serve_asgi(azure.app, free_port()) as azure_url, serve_asgi(keyed.app, free_port()) as keyed_url:
        llm = {
            "providers": {
                "azure": {"base_url": azure_url, "api_key": "azure-key", "deployments": {"gpt-5.5": "prod-gpt"}},
                "foundry": {"kind": "azure", "api": "messages", "base_url": azure_url, "api_key": "azure-key"},
                "rotating": {
                    "kind": "openai_compatible",
                    "base_url": f"{keyed_url}/v1",
                    "keys": [{"value": "first-key", "weight": 1000}, {"value": "second-key", "weight": 1}],
                },
            }
        }
        async with running_gateway({}, llm=llm) as gateway:
            base = gateway.base_url
            async with (
                openai.AsyncOpenAI(base_url=f"{base}/openai/v1", api_key="none", max_retries=0) as oai,
                anthropic.AsyncAnthropic(base_url=f"{base}/anthropic", api_key="none", max_retries=0) as claude,
            ):
                via_azure = await oai.chat.completions.create(
                    model="azure/gpt-5.5", messages=[{"role": "user", "content": "hi"}]
                )
                via_foundry = await claude.messages.create(
                    model="foundry/claude-sonnet-4-6", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
                )
                # Both keys are valid; the first (by far the heavier) is rate-limited: the request must be
                # retried at once with the other one.
                keyed.also_accept.add("first-key")
                keyed.script(Turn(status=429, headers={"retry-after": "30"}))
                rotated = await oai.chat.completions.create(
                    model="rotating/llama", messages=[{"role": "user", "content": "hi"}], max_tokens=7
                )
    assert via_azure.choices[0].message.content == "Hello from the mock."
    assert via_foundry.content[0].type == "text"
    first, second = azure.requests
    assert first.path == "/openai/deployments/prod-gpt/chat/completions" and first.headers["api-key"] == "azure-key"
    assert "authorization" not in first.headers
    assert second.path == "/anthropic/v1/messages" and second.headers["api-key"] == "azure-key"
    assert rotated.choices[0].message.content == "Hello from the mock."
    assert [r.headers["authorization"] for r in keyed.requests] == ["Bearer first-key", "Bearer second-key"]
    assert keyed.requests[1].body["max_tokens"] == 7  # compatible servers get max_tokens as sent


async def test_rules_aliases_and_providers_changed_through_the_admin_api_apply_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MCPGW_TEST_SECOND_KEY", OPENAI_KEY)
    async with llm_lab() as lab:
        admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        client = lab.anthropic_client()
        ask: dict[str, Any] = {"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
        async with httpx2.AsyncClient(base_url=f"{lab.base}/api", headers=admin) as api:
            rule = {"name": "fast", "when": {"model": {"glob": "fast-*"}}, "target": "openai/gpt-5.5-mini"}
            assert (await api.put("/llm/routing-rules/fast", json=rule)).status_code == 200
            await client.messages.create(model="fast-please", **ask)
            assert lab.openai.requests[-1].body["model"] == "gpt-5.5-mini"

            assert (await api.put("/llm/aliases/cheap", json={"target": "openai/gpt-5.5-nano"})).status_code == 200
            await client.messages.create(model="cheap", **ask)
            assert lab.openai.requests[-1].body["model"] == "gpt-5.5-nano"

            literal = await api.put("/llm/providers/second", json={"kind": "openai", "api_key": "sk-literal"})
            assert (
                literal.status_code == 422 and "${VAR} reference" in literal.text and "sk-literal" not in literal.text
            )
            no_kind = await api.put("/llm/providers/local", json={"base_url": "http://127.0.0.1:1/v1"})
            assert no_kind.status_code == 422 and "provider 'local' needs `kind`" in no_kind.text
            unset = await api.put("/llm/providers/second", json={"kind": "openai", "api_key": "${NOT_SET_ANYWHERE}"})
            assert unset.status_code == 422 and "NOT_SET_ANYWHERE is not set" in unset.text
            base_url = lab.gateway.gateway.config.llm.providers["openai"].base_url
            second = {"kind": "openai", "base_url": base_url, "api_key": "${MCPGW_TEST_SECOND_KEY}"}
            added = await api.put("/llm/providers/second", json=second)
            assert added.status_code == 200, added.text
            shown = {p["name"]: p for p in added.json()["providers"]}
            assert shown["second"]["source"] == "api"
            assert shown["second"]["config"]["api_key"] == "${MCPGW_TEST_SECOND_KEY}"  # the reference, not the key
            assert shown["anthropic"]["source"] == "config" and shown["anthropic"]["config"]["api_key"] == "***"
            await client.messages.create(model="second/gpt-5.5", **ask)
            assert lab.openai.requests[-1].headers["authorization"] == f"Bearer {OPENAI_KEY}"

            explained = await api.post("/llm/explain", json={"model": "fast-x", "headers": {"User-Agent": "x"}})
            assert explained.json()["targets"] == ["openai/gpt-5.5-mini"] and explained.json()["rule"] == "fast"
            assert (await api.delete("/llm/routing-rules/sonnet-model")).status_code == 409  # from the file
            assert (await api.delete("/llm/routing-rules/fast")).status_code == 204
            assert (await api.delete("/llm/routing-rules/fast")).status_code == 404
            await client.messages.create(model="fast-please", **ask)
            assert lab.anthropic.requests[-1].body["model"] == "fast-please"  # no rule now: the default provider


async def test_a_rule_set_with_the_cli_reaches_a_running_gateway_without_a_restart(tmp_path: Path) -> None:
    async with llm_lab() as lab:
        env = {**os.environ, "DATABASE_URL": str(lab.gateway.gateway.database_url)}
        command = [str(MCPGW), "route", "set", "fast", "--model", "fast", "--target", "openai/gpt-5.5-mini"]
        done = await anyio.run_process([*command, "--config", "/nonexistent.yaml"], env=env, check=False)
        assert done.returncode == 0, done.stderr
        listed = await anyio.run_process([str(MCPGW), "route", "list", "--json"], env=env, check=False)
        rules = {r["name"]: r["source"] for r in json.loads(listed.stdout)["routing_rules"]}
        assert rules == {"fast": "store"}  # no gateway.yaml here: only the store's rule
        store = lab.gateway.gateway.store
        assert store is not None
        await store.create_virtual_key("carol", mcp_configs={})
        rule = tmp_path / "carol.yaml"
        rule.write_text("scope: virtual_key\nvirtual_keys: [carol]\nwhen: {model: fast}\ntarget: anthropic/haiku\n")
        scoped = [str(MCPGW), "route", "set", "carol-fast", "--file", str(rule), "--config", "/nonexistent.yaml"]
        assert (await anyio.run_process(scoped, env=env, check=False)).returncode == 0
        config = tmp_path / "gateway.yaml"  # explain needs the providers the targets name
        config.write_text("llm:\n  providers:\n    anthropic: {api_key: x}\n    openai: {api_key: y}\n")
        explain = [str(MCPGW), "route", "explain", "--model", "fast", "--json", "--config", str(config)]
        for_carol = json.loads((await anyio.run_process([*explain, "--vk", "carol"], env=env)).stdout)
        assert (for_carol["rule"], for_carol["targets"]) == ("carol-fast", ["anthropic/haiku"])
        for_anyone = json.loads((await anyio.run_process(explain, env=env)).stdout)
        assert (for_anyone["rule"], for_anyone["targets"]) == ("fast", ["openai/gpt-5.5-mini"])
        unknown = await anyio.run_process([*explain, "--vk", "nobody"], env=env, check=False)
        assert unknown.returncode == 1 and "no virtual key named or with id 'nobody'" in unknown.stderr.decode()
        client = lab.anthropic_client()
        with anyio.fail_after(10):  # the store watcher polls every 2 s
            while True:
                await client.messages.create(model="fast", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
                if lab.openai.requests and lab.openai.requests[-1].body["model"] == "gpt-5.5-mini":
                    break
                await anyio.sleep(0.5)


async def test_key_scoped_rules_come_first_then_priority_then_definition_order() -> None:
    rules = [
        {"name": "low", "priority": 1, "when": {"model": {"regex": "^team-"}}, "target": "openai/low"},
        {"name": "high", "priority": 5, "when": {"model": {"regex": "^team-"}}, "target": "openai/high"},
        {"name": "tie", "priority": 5, "when": {"model": {"regex": "^team-"}}, "target": "openai/tie"},
        {
            "name": "alice-only",
            "scope": "virtual_key",
            "virtual_keys": ["alice"],
            "when": {"model": {"glob": "team-*"}, "headers": {"x-team": {"regex": "^(red|blue)$"}}},
            "targets": [{"target": "anthropic/a", "weight": 1}, {"target": "anthropic/b", "weight": 1}],
        },
        {"name": "sessions", "priority": 9, "when": {"identity_modes": ["session"]}, "target": "openai/never"},
    ]
    async with llm_lab(routing_rules=rules) as lab:
        store = lab.gateway.gateway.store
        assert store is not None
        _, alice = await store.create_virtual_key("alice", mcp_configs={})
        ask: dict[str, Any] = {"model": "team-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
        await lab.anthropic_client().messages.create(**ask)  # another key: global rules, highest first, ties in order
        assert lab.openai.requests[-1].body["model"] == "high"
        alice_client = lab.anthropic_client(key=alice)
        seen = set()
        for _ in range(20):
            await alice_client.messages.create(**ask, extra_headers={"x-team": "red"})
            seen.add(lab.anthropic.requests[-1].body["model"])
        assert seen == {"a", "b"}  # both weighted targets are used
        await alice_client.messages.create(**ask, extra_headers={"x-team": "green"})
        assert lab.openai.requests[-1].body["model"] == "high"  # her rule's header does not match
        assert {e.rule for e in lab.usage} == {"high", "alice-only"}


async def test_a_client_that_goes_away_mid_stream_stops_the_relay_and_the_provider_stream() -> None:
    async with llm_lab() as lab:
        lab.anthropic.script(Turn(hang_after=3))  # the provider would keep the stream open for its whole timeout
        body = {
            "model": "claude-sonnet-4-6",
            "max_tokens": 5,
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        }
        headers = {"authorization": f"Bearer {lab.vk}"}
        async with (
            httpx2.AsyncClient(base_url=lab.base) as http,
            http.stream("POST", "/anthropic/v1/messages", json=body, headers=headers) as response,
        ):
            async for line in response.aiter_lines():
                if line.startswith("event: message_start"):
                    break
        with anyio.fail_after(10):  # recorded in the relay's cleanup, which closes the provider's stream
            while not lab.usage:
                await anyio.sleep(0.05)
        assert lab.usage[-1].stream and lab.usage[-1].provider == "anthropic"


async def test_a_model_tool_call_is_run_by_the_gateway_as_the_caller_and_answered_in_its_format() -> None:
    upstreams = {"lab": lab_upstream()}
    async with running_gateway(upstreams, auth={"enforce_auth_on_inference": True}, llm={}) as gateway:
        store = gateway.gateway.store
        assert store is not None
        _, key = await store.create_virtual_key("tools", mcp_configs={"lab": ["echo"]})
        await gateway.gateway.sync()
        headers = {"authorization": f"Bearer {key}"}
        async with httpx2.AsyncClient(base_url=gateway.base_url, headers=headers) as http:
            anthropic_call = {"type": "tool_use", "id": "toolu_1", "name": "lab-echo", "input": {"text": "héllo"}}
            answer = await http.post("/v1/mcp/tool/execute", json=anthropic_call)
            assert answer.status_code == 200, answer.text
            assert answer.json() == {
                "type": "tool_result",
                "tool_use_id": "toolu_1",
                "content": [{"type": "text", "text": "héllo"}],
                "is_error": False,
            }
            openai_call = {
                "id": "call_1",
                "type": "function",
                "function": {"name": "lab-echo", "arguments": json.dumps({"text": "hi"})},
            }
            answer = await http.post("/v1/mcp/tool/execute", json=openai_call)
            assert answer.json() == {"role": "tool", "tool_call_id": "call_1", "content": "hi"}
            hidden = {"type": "tool_use", "id": "t", "name": "lab-add", "input": {"a": 1, "b": 2}}
            refused = await http.post("/v1/mcp/tool/execute", json=hidden)  # not in the key's grants
            assert refused.status_code == 404 and "unknown tool 'lab-add'" in refused.text
            garbled = await http.post("/v1/mcp/tool/execute", json={"name": "lab-echo"})
            assert garbled.status_code == 400 and "tool_use" in garbled.text
        async with httpx2.AsyncClient(base_url=gateway.base_url) as anonymous:
            assert (await anonymous.post("/v1/mcp/tool/execute", json=anthropic_call)).status_code == 401
        assert gateway.gateway.audit is not None
        await gateway.gateway.audit.flush()
        events = await store.list_audit(limit=10)
        assert [(e.tool, e.outcome) for e in events][:3] == [("lab-add", "denied"), ("echo", "ok"), ("echo", "ok")]
