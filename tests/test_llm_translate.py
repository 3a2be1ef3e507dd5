"""Format translations on their own: what a provider is sent for what Claude Code sends; streams cut anywhere."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_gateway.translate import anthropic_to_openai as a2o
from llm_gateway.translate import openai_to_anthropic as o2a
from llm_gateway.translate.anthropic_to_gemini import narrow_schema
from llm_gateway.wire import SseParser, sse

pytestmark = pytest.mark.anyio


def test_claude_code_body_becomes_a_valid_chat_completions_body() -> None:
    body = {
        "model": "openai/gpt-5.5",
        "max_tokens": 32000,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197"},
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>date</system-reminder>"},
                    {"type": "text", "text": "edit it"},
                ],
            },
            {"role": "system", "content": "agents: Explore, Plan"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": ""},
                    {"type": "text", "text": "Looking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "ToolSearch", "input": {"query": "echo"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [
                            {"type": "tool_reference", "tool_name": "mcp__srv__echo"},
                            {"type": "text", "text": "Tool loaded."},
                        ],
                    },
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                ],
            },
            {"role": "system", "content": "reminder after the tool result"},
        ],
        "tools": [
            {
                "name": "mcp__srv__echo",
                "description": "Echo",
                "input_schema": {"type": "object"},
                "defer_loading": True,
            },
            {"type": "web_search_20250305", "name": "web_search"},
        ],
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "high"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "metadata": {"user_id": json.dumps({"device_id": "d", "session_id": "s"})},
        "stream": True,
    }
    out = a2o.request(body, "gpt-5.5", max_tokens_field="max_completion_tokens", reasoning=True)
    roles = [m["role"] for m in out["messages"]]
    assert roles == ["system", "user", "system", "assistant", "tool", "user", "system"]
    assert out["messages"][0]["content"].endswith("You are Claude Code.")
    assert out["messages"][1]["content"] == "<system-reminder>date</system-reminder>\n\nedit it"
    assistant = out["messages"][3]
    assert assistant["content"] == "Looking." and assistant["tool_calls"][0]["function"] == {
        "name": "ToolSearch",
        "arguments": '{"query":"echo"}',
    }
    assert out["messages"][4] == {
        "role": "tool",
        "tool_call_id": "toolu_1",
        "content": "Tool loaded: mcp__srv__echo\n\nTool loaded.",
    }
    assert out["messages"][5]["content"] == [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}]
    assert [t["function"]["name"] for t in out["tools"]] == ["mcp__srv__echo"]  # deferred kept, server tool dropped
    assert "defer_loading" not in json.dumps(out["tools"])
    assert out["reasoning_effort"] == "high" and out["max_completion_tokens"] == 32000
    assert out["stream_options"] == {"include_usage": True}
    for dropped in ("thinking", "output_config", "context_management", "metadata", "system"):
        assert dropped not in out


def test_gemini_schemas_keep_what_gemini_accepts() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "n": {"type": ["integer", "null"], "minimum": 0, "exclusiveMaximum": 9},
            "tags": {"type": "array", "items": {"type": "string", "enum": [1, "a"]}},
        },
        "required": ["n"],
    }
    assert narrow_schema(schema) == {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "nullable": True, "minimum": 0},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["1", "a"]}},
        },
        "required": ["n"],
    }


def _openai_stream(calls: list[tuple[int, str | None, str | None, str]]) -> bytes:
    """Chat Completions chunks for tool-call deltas (index, id, name, argument piece)."""
    out = b""
    for index, call_id, name, piece in calls:
        delta: dict[str, Any] = {"index": index, "function": {"arguments": piece}}
        if call_id:
            delta |= {"id": call_id, "type": "function"}
            delta["function"]["name"] = name
        chunk = {"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [delta]}, "finish_reason": None}]}
        out += b"data: " + json.dumps(chunk).encode() + b"\n\n"
    out += b'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\n\ndata: [DONE]\n\n'
    return out


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _assemble(events: bytes) -> dict[int, dict[str, Any]]:
    blocks: dict[int, dict[str, Any]] = {}
    parser = SseParser()
    names = []
    for event in [*parser.feed(events), *parser.close()]:
        names.append(event.event)
        data = json.loads(event.data)
        if data["type"] == "content_block_start":
            blocks[data["index"]] = {**data["content_block"], "json": ""}
        elif data["type"] == "content_block_delta" and data["delta"]["type"] == "input_json_delta":
            blocks[data["index"]]["json"] += data["delta"]["partial_json"]
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    return blocks


@given(size=st.integers(min_value=1, max_value=64))
async def test_parallel_tool_calls_stream_exactly_whatever_the_chunk_size(size: int) -> None:
    first, second = {"path": "a.txt", "text": 'say "hi" é'}, {"n": [1, 2, {"x": None}]}
    a, b = json.dumps(first), json.dumps(second)
    # A provider that interleaves the argument pieces of two parallel calls.
    wire = _openai_stream(
        [(0, "call_a", "Write", a[:5]), (1, "call_b", "Count", b[:3]), (0, None, None, a[5:]), (1, None, None, b[3:])]
    )
    translator = a2o.StreamTranslator("m")
    out = b"".join([piece async for piece in a2o.stream(_chunks(wire, size), translator)])
    blocks = _assemble(out)
    assert {blocks[i]["name"]: json.loads(blocks[i]["json"]) for i in blocks} == {"Write": first, "Count": second}
    assert translator.stop_reason == "tool_use"


async def test_an_anthropic_stream_becomes_chat_completion_chunks_with_the_same_arguments() -> None:
    args = json.dumps({"q": "ünïcode", "deep": {"list": [1, 2]}})
    events = sse("message_start", {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 5}}})
    events += sse(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
    )
    events += sse(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "secret"}},
    )
    events += sse(
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "t", "name": "find", "input": {}},
        },
    )
    for i in range(0, len(args), 4):
        delta = {"type": "input_json_delta", "partial_json": args[i : i + 4]}
        events += sse("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": delta})
    events += sse(
        "message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}
    )
    events += sse("message_stop", {"type": "message_stop"})
    translator = o2a.StreamTranslator("anthropic/x", include_usage=True)
    out = b"".join([piece async for piece in o2a.stream(_chunks(events, 5), translator)]).decode()
    lines = [line[6:] for line in out.split("\n\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]" and "secret" not in out
    chunks = [json.loads(line) for line in lines[:-1]]
    arguments = "".join(
        call["function"].get("arguments", "")
        for chunk in chunks
        for choice in chunk["choices"]
        for call in choice["delta"].get("tool_calls", [])
    )
    assert json.loads(arguments) == json.loads(args)
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "tool_calls"
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 9,
        "total_tokens": 14,
        "prompt_tokens_details": {"cached_tokens": 0},
    }


def test_a_relayed_stream_is_cut_only_after_complete_events() -> None:
    from llm_gateway.answers import last_event_end as _last_event_end

    assert _last_event_end(b"") == 0
    assert _last_event_end(b"event: a\ndata: {") == 0  # half an event waits for its end
    assert _last_event_end(b"data: 1\n\ndata: 2") == len(b"data: 1\n\n")
    assert _last_event_end(b"data: 1\r\n\r\n") == len(b"data: 1\r\n\r\n")
