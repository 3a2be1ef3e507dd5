"""Claude on Bedrock and Vertex through mcpgw, against mocks that check SigV4 and Google service-account auth.

The official `anthropic` and `openai` SDKs are the clients; `tests/llm/mock_clouds.py` verifies each
request the way the cloud would (a SigV4 signature recomputed with botocore; a JWT assertion signed by
the service account's key, then the access token it was issued).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from examples.servers.llm_provider import MockProvider, Turn
from tests.conftest import RunningGateway, running_gateway
from tests.llm.mock_clouds import AWS_ACCESS_KEY, AWS_REGION, AWS_SECRET_KEY, MockBedrock, MockVertex
from tests.serving import free_port, serve_asgi

pytestmark = pytest.mark.anyio

SONNET_ON_BEDROCK = "bedrock/global.anthropic.claude-sonnet-4-6"
Clouds = tuple[RunningGateway, MockBedrock, MockVertex, str]


def anthropic_client(gateway: RunningGateway, vk: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=f"{gateway.base_url}/anthropic", api_key=vk, max_retries=0)


@contextlib.asynccontextmanager
async def clouds(
    tmp_path: Path, *, secret: str = AWS_SECRET_KEY
) -> AsyncIterator[tuple[RunningGateway, MockBedrock, MockVertex, str]]:
    bedrock, vertex = MockBedrock(), MockVertex()
    vertex_port = free_port()
    vertex.base_url = f"http://127.0.0.1:{vertex_port}"
    async with serve_asgi(bedrock.app, free_port()) as bedrock_url, serve_asgi(vertex.app, vertex_port):
        llm = {
            "providers": {
                "bedrock": {
                    "base_url": bedrock_url,
                    "region": AWS_REGION,
                    "access_key_id": AWS_ACCESS_KEY,
                    "secret_access_key": secret,
                },
                "vertex": {
                    "base_url": vertex.base_url,
                    "region": "us-east5",
                    "credentials_file": str(vertex.service_account_file(tmp_path)),
                },
            }
        }
        async with running_gateway({}, auth={"enforce_auth_on_inference": True}, llm=llm) as gateway:
            assert gateway.gateway.store is not None
            _, vk = await gateway.gateway.store.create_virtual_key("clouds", mcp_configs={})
            yield gateway, bedrock, vertex, vk


async def test_claude_on_bedrock_signed_with_sigv4_streaming_and_not(tmp_path: Path) -> None:
    async with clouds(tmp_path) as (gateway, bedrock, _, vk), anthropic_client(gateway, vk) as client:
        whole = await client.messages.create(
            model=SONNET_ON_BEDROCK,
            max_tokens=20,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"anthropic-beta": "context-1m-2025-08-07"},
            extra_body={"thinking": {"type": "adaptive"}},
        )
        async with client.messages.stream(
            model=SONNET_ON_BEDROCK, max_tokens=20, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            streamed = await stream.get_final_message()
    assert whole.content[0].type == "text" and whole.content[0].text == "Hello from the mock."
    assert streamed.content[0].type == "text" and streamed.content[0].text == "Hello from the mock."
    assert not bedrock.signature_failures
    first, second = bedrock.requests
    assert first.path == "/model/global.anthropic.claude-sonnet-4-6/invoke"
    assert second.path == "/model/global.anthropic.claude-sonnet-4-6/invoke-with-response-stream"
    assert first.body["anthropic_beta"] == ["context-1m-2025-08-07"] and first.body["thinking"] == {"type": "adaptive"}
    assert vk not in str(first.headers)


async def test_a_wrong_aws_secret_is_refused_by_the_signature_check(tmp_path: Path) -> None:
    async with clouds(tmp_path, secret="not-the-secret") as (gateway, bedrock, _, vk):
        client = anthropic_client(gateway, vk)
        with pytest.raises(anthropic.InternalServerError, match="refused the gateway's credentials") as refused:
            await client.messages.create(
                model=SONNET_ON_BEDROCK, max_tokens=5, messages=[{"role": "user", "content": "hi"}]
            )
        await client.close()
    assert refused.value.status_code == 502 and refused.value.response.headers["x-should-retry"] == "false"
    assert "signature does not match" in str(refused.value) and "llm.providers.bedrock" in str(refused.value)
    assert bedrock.signature_failures == ["signature does not match"]


async def test_openai_client_to_claude_on_bedrock_streams_through_the_event_stream(tmp_path: Path) -> None:
    async with clouds(tmp_path) as (gateway, _, _, vk):
        openai_url = f"{gateway.base_url}/openai/v1"
        async with openai.AsyncOpenAI(base_url=openai_url, api_key=vk, max_retries=0) as client:
            stream = await client.chat.completions.create(
                model=SONNET_ON_BEDROCK, messages=[{"role": "user", "content": "hi"}], stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "Hello from the mock."


async def test_claude_on_vertex_with_a_service_account_token_fetched_once(tmp_path: Path) -> None:
    async with clouds(tmp_path) as (gateway, _, vertex, vk), anthropic_client(gateway, vk) as client:
        results: list[Any] = []
        for _ in range(2):
            results.append(
                await client.messages.create(
                    model="vertex/claude-sonnet-4-6", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
                )
            )
        async with client.messages.stream(
            model="vertex/claude-sonnet-4-6", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            results.append(await stream.get_final_message())
    assert [r.content[0].text for r in results] == ["Hello from the mock."] * 3
    assert vertex.token_requests == 1
    paths = [r.path for r in vertex.requests]
    assert paths == [
        "/v1/projects/mcpgw-test-project/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-6:rawPredict",
        "/v1/projects/mcpgw-test-project/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-6:rawPredict",
        "/v1/projects/mcpgw-test-project/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-6:streamRawPredict",
    ]


CALENDAR_ARGS = {"title": "Ship it", "when": {"day": "2026-12-07", "hour": 9}, "guests": ["a@x", "b@y"]}
CALENDAR_TOOL = {
    "name": "create_event",
    "description": "Create a calendar event",
    "input_schema": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "title": {"type": "string"},
            "when": {"type": "object", "properties": {"day": {"type": "string", "format": "date"}}},
            "note": {"type": ["string", "null"]},
        },
        "required": ["title"],
    },
}


async def test_gemini_tool_call_round_trip_from_an_anthropic_client(tmp_path: Path) -> None:
    gemini = MockProvider("gemini-api-key")
    gemini.script(
        Turn(tool=("create_event", CALENDAR_ARGS)), Turn(tool=("create_event", CALENDAR_ARGS)), Turn(text="Done.")
    )
    async with serve_asgi(gemini.app, free_port()) as gemini_url:
        llm = {"providers": {"gemini": {"base_url": gemini_url, "api_key": "gemini-api-key"}}}
        async with (
            running_gateway({}, llm=llm) as gateway,
            anthropic_client(gateway, "anonymous") as client,
        ):
            messages: list[Any] = [{"role": "user", "content": "book it"}]
            async with client.messages.stream(
                model="gemini/gemini-3.1-pro",
                max_tokens=100,
                tools=[CALENDAR_TOOL],
                messages=messages,  # type: ignore[list-item]
            ) as stream:
                streamed = await stream.get_final_message()
            whole = await client.messages.create(
                model="gemini/gemini-3.1-pro",
                max_tokens=100,
                tools=[CALENDAR_TOOL],
                messages=messages,  # type: ignore[list-item]
            )
            [call] = [b for b in whole.content if b.type == "tool_use"]
            messages += [
                {"role": "assistant", "content": [c.model_dump() for c in whole.content]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "booked"}]},
            ]
            final = await client.messages.create(
                model="gemini/gemini-3.1-pro",
                max_tokens=100,
                tools=[CALENDAR_TOOL],
                messages=messages,  # type: ignore[list-item]
            )
    [streamed_call] = [b for b in streamed.content if b.type == "tool_use"]
    assert streamed_call.name == "create_event" and streamed_call.input == CALENDAR_ARGS
    assert streamed.stop_reason == "tool_use" and call.input == CALENDAR_ARGS
    assert final.content[0].type == "text" and final.content[0].text == "Done."
    first, _, third = gemini.requests
    assert first.path == "/v1beta/models/gemini-3.1-pro:streamGenerateContent"
    assert first.headers["x-goog-api-key"] == "gemini-api-key"
    parameters = first.body["tools"][0]["functionDeclarations"][0]["parameters"]
    assert "$schema" not in parameters and "additionalProperties" not in parameters
    assert parameters["properties"]["note"] == {"type": "string", "nullable": True}
    assert first.body["generationConfig"]["maxOutputTokens"] == 100
    assert third.body["contents"][1] == {
        "role": "model",
        "parts": [{"functionCall": {"name": "create_event", "args": CALENDAR_ARGS}}],
    }
    assert third.body["contents"][2] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "create_event", "response": {"content": "booked"}}}],
    }


async def test_openai_client_to_gemini_on_vertex_streams_with_a_service_account(tmp_path: Path) -> None:
    async with clouds(tmp_path) as (gateway, _, vertex, vk):
        openai_url = f"{gateway.base_url}/openai/v1"
        async with openai.AsyncOpenAI(base_url=openai_url, api_key=vk, max_retries=0) as client:
            stream = await client.chat.completions.create(
                model="vertex/gemini-3.1-pro", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            whole = await client.chat.completions.create(
                model="vertex/gemini-3.1-pro", messages=[{"role": "user", "content": "hi"}]
            )
    assert text == "Hello from the mock." and whole.choices[0].message.content == "Hello from the mock."
    assert [r.path.rsplit("/", 1)[-1] for r in vertex.requests] == [
        "gemini-3.1-pro:streamGenerateContent",
        "gemini-3.1-pro:generateContent",
    ]
