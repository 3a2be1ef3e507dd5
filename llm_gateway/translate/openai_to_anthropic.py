"""An OpenAI Chat Completions client talking to an Anthropic Messages provider.

Request: Chat Completions → Anthropic. Answer: Anthropic → Chat Completions, whole or as a stream.

System and developer messages become the `system` prompt (in order); `tool` messages become
`tool_result` blocks of one user message; tool calls become `tool_use` blocks with their
arguments parsed (arguments that are not JSON are kept as `{"arguments": "<text>"}`, never
lost). Anthropic requires `max_tokens`: a request without one gets `DEFAULT_MAX_TOKENS`.
Thinking blocks in the answer are dropped (Chat Completions has no place for them).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from llm_gateway.translate.common import StreamError, parse_arguments, reframe
from llm_gateway.wire import dumps

DEFAULT_MAX_TOKENS = 4096
_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "pause_turn": "stop",
    "refusal": "content_filter",
}


def request(body: dict[str, Any], model: str) -> dict[str, Any]:
    """The Anthropic Messages body for a Chat Completions body."""
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role in ("system", "developer"):
            text = _text_of(message.get("content"))
            if text:
                system.append({"type": "text", "text": text})
        elif role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": message.get("tool_call_id"),
                "content": _text_of(message.get("content")),
            }
            if messages and messages[-1]["role"] == "user" and _all_results(messages[-1]["content"]):
                messages[-1]["content"].append(block)
            else:
                messages.append({"role": "user", "content": [block]})
        elif role == "assistant":
            messages.append({"role": "assistant", "content": _assistant_blocks(message)})
        else:
            messages.append({"role": "user", "content": _user_content(message.get("content"))})
    out: dict[str, Any] = {"model": model, "messages": messages}
    if system:
        out["system"] = system
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    out["max_tokens"] = limit if isinstance(limit, int) and limit > 0 else DEFAULT_MAX_TOKENS
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = body[name]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = [_tool(t) for t in body.get("tools") or () if isinstance(t, dict) and t.get("type") == "function"]
    if tools:
        out["tools"] = tools
        choice = _tool_choice(body.get("tool_choice"))
        if body.get("parallel_tool_calls") is False:
            choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
        if choice is not None:
            out["tool_choice"] = choice
    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    if body.get("stream"):
        out["stream"] = True
    return out


def _all_results(content: Any) -> bool:
    return isinstance(content, list) and all(b.get("type") == "tool_result" for b in content)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _user_content(content: Any) -> Any:
    if isinstance(content, str):
        return content
    blocks: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else ():
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            blocks.append({"type": "text", "text": str(part.get("text", ""))})
        elif part.get("type") == "image_url":
            url = str((part.get("image_url") or {}).get("url", ""))
            blocks.append({"type": "image", "source": _image_source(url)})
    return blocks or ""


def _image_source(url: str) -> dict[str, Any]:
    if url.startswith("data:") and ";base64," in url:
        media_type, _, data = url[5:].partition(";base64,")
        return {"type": "base64", "media_type": media_type or "image/png", "data": data}
    return {"type": "url", "url": url}


def _assistant_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    text = _text_of(message.get("content"))
    if text:
        blocks.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                "name": function.get("name", ""),
                "input": parse_arguments(function.get("arguments")),
            }
        )
    return blocks or [{"type": "text", "text": ""}]


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = tool.get("function") or {}
    schema = function.get("parameters")
    out: dict[str, Any] = {
        "name": function.get("name", ""),
        "input_schema": schema if isinstance(schema, dict) else {"type": "object", "properties": {}},
    }
    if function.get("description"):
        out["description"] = function["description"]
    return out


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if name:
            return {"type": "tool", "name": name}
    return None


# --- the answer ------------------------------------------------------------------------------------


def response(data: dict[str, Any], model: str) -> dict[str, Any]:
    """A Chat Completion for an Anthropic Message."""
    text = "".join(str(b.get("text", "")) for b in data.get("content") or () if b.get("type") == "text")
    calls = [
        {"id": b.get("id"), "type": "function", "function": {"name": b.get("name"), "arguments": _dump(b.get("input"))}}
        for b in data.get("content") or ()
        if b.get("type") == "tool_use"
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": _completion_id(data.get("id")),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": _FINISH_REASONS.get(data.get("stop_reason") or "end_turn", "stop"),
            }
        ],
        "usage": usage(data.get("usage")),
    }


def usage(anthropic_usage: Any) -> dict[str, Any]:
    if not isinstance(anthropic_usage, dict):
        return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    cached = int(anthropic_usage.get("cache_read_input_tokens") or 0)
    prompt = (
        int(anthropic_usage.get("input_tokens") or 0)
        + cached
        + int(anthropic_usage.get("cache_creation_input_tokens") or 0)
    )
    completion = int(anthropic_usage.get("output_tokens") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def _dump(value: Any) -> str:
    return dumps(value if value is not None else {}).decode()


def _completion_id(source: Any) -> str:
    return f"chatcmpl-{source}" if isinstance(source, str) and source else f"chatcmpl-{uuid.uuid4().hex[:24]}"


class StreamTranslator:
    """Anthropic stream events in, Chat Completions chunks out (`data:` lines, then `data: [DONE]`)."""

    def __init__(self, model: str, *, include_usage: bool) -> None:
        self.model = model
        self.include_usage = include_usage
        self.id = _completion_id(None)
        self.created = int(time.time())
        self.usage: dict[str, Any] = {}
        self.finish_reason: str | None = None
        self._tool_positions: dict[int, int] = {}  # Anthropic block index → OpenAI tool index
        self._finished = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        return b"data: " + dumps(chunk) + b"\n\n"

    def event(self, data: dict[str, Any]) -> bytes:
        kind = data.get("type")
        if kind == "message_start":
            message = data.get("message") or {}
            self.id = _completion_id(message.get("id"))
            self.usage = dict(message.get("usage") or {})
            return self._chunk({"role": "assistant", "content": ""})
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                position = len(self._tool_positions)
                self._tool_positions[int(data.get("index") or 0)] = position
                call = {
                    "index": position,
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name", ""), "arguments": ""},
                }
                return self._chunk({"tool_calls": [call]})
            if block.get("type") == "text" and block.get("text"):
                return self._chunk({"content": block["text"]})
            return b""
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                return self._chunk({"content": delta.get("text", "")})
            if delta.get("type") == "input_json_delta":
                found = self._tool_positions.get(int(data.get("index") or 0))
                piece = delta.get("partial_json", "")
                if found is None or not piece:
                    return b""
                return self._chunk({"tool_calls": [{"index": found, "function": {"arguments": piece}}]})
            return b""  # thinking and signature deltas have no place in Chat Completions
        if kind == "message_delta":
            self.usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
            reason = (data.get("delta") or {}).get("stop_reason")
            if reason:
                self.finish_reason = _FINISH_REASONS.get(reason, "stop")
            return b""
        if kind == "error":
            raise StreamError(data)
        return b""

    def finish(self) -> bytes:
        if self._finished:
            return b""
        self._finished = True
        out = self._chunk({}, self.finish_reason or "stop")
        if self.include_usage:
            chunk = {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": usage(self.usage),
            }
            out += b"data: " + dumps(chunk) + b"\n\n"
        return out + b"data: [DONE]\n\n"


def stream(chunks: AsyncIterator[bytes], translator: StreamTranslator) -> AsyncIterator[bytes]:
    """Re-frame an Anthropic SSE stream as Chat Completions chunks, chunk by chunk."""
    return reframe(chunks, translator.event, translator.finish)
