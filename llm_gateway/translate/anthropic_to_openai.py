"""An Anthropic Messages client talking to an OpenAI Chat Completions provider.

Request: Anthropic → Chat Completions. Answer: Chat Completions → Anthropic, whole or as a stream.

What has no counterpart is dropped without error (Claude Code sends it whatever the model):
`thinking` blocks and settings (mapped to `reasoning_effort` for OpenAI's own API),
`cache_control`, `context_management`, `metadata`, `defer_loading`, Anthropic server tools.
`role: "system"` entries inside `messages` become system messages where they stand. Tool
results become `tool` messages right after the assistant message that called them, as Chat
Completions requires; `tool_reference` blocks (tool search) become a line of text.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

from llm_gateway.translate.common import StreamError, parse_arguments, reframe
from llm_gateway.wire import dumps, sse

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_EFFORTS = ("low", "medium", "high")


def request(body: dict[str, Any], model: str, *, max_tokens_field: str, reasoning: bool) -> dict[str, Any]:
    """The Chat Completions body for an Anthropic Messages body.

    `reasoning`: the provider takes `reasoning_effort` (OpenAI's own API), so thinking settings map to it.
    """
    messages: list[dict[str, Any]] = []
    system = _text_of(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for message in body.get("messages") or ():
        messages.extend(_messages(message))
    out: dict[str, Any] = {"model": model, "messages": messages}
    if isinstance(body.get("max_tokens"), int):
        out[max_tokens_field] = body["max_tokens"]
    for name in ("temperature", "top_p"):
        if name in body:
            out[name] = body[name]
    if body.get("stop_sequences"):
        out["stop"] = body["stop_sequences"]
    tools = [_tool(t) for t in body.get("tools") or () if _is_custom_tool(t)]
    if tools:
        out["tools"] = tools
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            mapped = _tool_choice(choice)
            if mapped is not None:
                out["tool_choice"] = mapped
            if choice.get("disable_parallel_tool_use"):
                out["parallel_tool_calls"] = False
    if reasoning:
        effort = _effort(body)
        if effort is not None:
            out["reasoning_effort"] = effort
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def _messages(message: dict[str, Any]) -> list[dict[str, Any]]:
    role = message.get("role")
    content = message.get("content")
    if role == "system":
        return [{"role": "system", "content": _text_of(content)}]
    if isinstance(content, str):
        return [{"role": "assistant" if role == "assistant" else "user", "content": content}]
    blocks = [b for b in content or () if isinstance(b, dict)]
    if role == "assistant":
        text = "".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
        calls = [
            {"id": b.get("id"), "type": "function", "function": {"name": b.get("name"), "arguments": _arguments(b)}}
            for b in blocks
            if b.get("type") in ("tool_use", "server_tool_use")
        ]
        out: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            out["tool_calls"] = calls
        return [out]
    results = [
        {"role": "tool", "tool_call_id": b.get("tool_use_id"), "content": _result_text(b)}
        for b in blocks
        if b.get("type") == "tool_result"
    ]
    parts = [p for p in (_part(b) for b in blocks if b.get("type") != "tool_result") if p is not None]
    user: list[dict[str, Any]] = []
    if parts:
        simple = all(p["type"] == "text" for p in parts)
        user.append({"role": "user", "content": "\n\n".join(p["text"] for p in parts) if simple else parts})
    return results + user


def _part(block: dict[str, Any]) -> dict[str, Any] | None:
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": str(block.get("text", ""))}
    if kind == "image":
        source = block.get("source") or {}
        if source.get("type") == "base64":
            url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
        elif source.get("type") == "url":
            url = str(source.get("url", ""))
        else:
            return None
        return {"type": "image_url", "image_url": {"url": url}}
    if kind == "document":
        source = block.get("source") or {}
        if source.get("type") == "text":
            return {"type": "text", "text": str(source.get("data", ""))}
        return None
    return None  # thinking, redacted_thinking, tool_reference at top level: nothing to send


def _result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    text = content if isinstance(content, str) else _text_of(content, tool_references=True)
    if block.get("is_error") and not text.startswith("Error"):
        text = f"Error: {text}"
    return text


def _text_of(content: Any, *, tool_references: bool = False) -> str:
    """The text of a string or a list of blocks (system prompts, tool results)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    lines: list[str] = []
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            lines.append(str(block.get("text", "")))
        elif tool_references and block.get("type") == "tool_reference":
            lines.append(f"Tool loaded: {block.get('tool_name', '')}")
    return "\n\n".join(line for line in lines if line)


def _arguments(block: dict[str, Any]) -> str:
    value = block.get("input")
    return dumps(value if value is not None else {}).decode()


def _is_custom_tool(tool: Any) -> bool:
    """Tools with a name and schema; Anthropic's own server tools (`type: web_search_…`) cannot run elsewhere."""
    return isinstance(tool, dict) and "name" in tool and tool.get("type") in (None, "custom")


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool["name"], "parameters": _schema(tool.get("input_schema"))}
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _schema(schema: Any) -> dict[str, Any]:
    """The tool's JSON Schema without what Chat Completions servers reject (`$schema`)."""
    if not isinstance(schema, dict):
        return {"type": "object", "properties": {}}
    return {k: v for k, v in schema.items() if k != "$schema"}


def _tool_choice(choice: dict[str, Any]) -> Any:
    kind = choice.get("type")
    if kind == "auto":
        return "auto"
    if kind == "any":
        return "required"
    if kind == "none":
        return "none"
    if kind == "tool" and choice.get("name"):
        return {"type": "function", "function": {"name": choice["name"]}}
    return None


def _effort(body: dict[str, Any]) -> str | None:
    thinking = body.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "adaptive"):
        return None
    config = body.get("output_config")
    effort = config.get("effort") if isinstance(config, dict) else None
    if effort in _EFFORTS:
        return str(effort)
    if effort in ("max", "xhigh"):
        return "high"
    budget = thinking.get("budget_tokens")
    if isinstance(budget, int):
        return "low" if budget < 4096 else "medium" if budget < 16384 else "high"
    return "medium"


# --- the answer ------------------------------------------------------------------------------------


def response(data: dict[str, Any], model: str) -> dict[str, Any]:
    """An Anthropic Message for a Chat Completions answer (the first choice)."""
    choices = data.get("choices") or [{}]
    message = choices[0].get("message") or {}
    content: list[dict[str, Any]] = []
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or _tool_id(),
                "name": function.get("name", ""),
                "input": parse_arguments(function.get("arguments")),
            }
        )
    if message.get("refusal") and not content:
        content.append({"type": "text", "text": str(message["refusal"])})
    finish = choices[0].get("finish_reason")
    return {
        "id": _message_id(data.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _STOP_REASONS.get(finish or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": usage(data.get("usage")),
    }


def usage(openai_usage: Any) -> dict[str, int]:
    """Anthropic usage for OpenAI usage: input excludes cache reads there, includes them here."""
    if not isinstance(openai_usage, dict):
        return {"input_tokens": 0, "output_tokens": 0}
    prompt = int(openai_usage.get("prompt_tokens") or 0)
    details = openai_usage.get("prompt_tokens_details") or {}
    cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    out = {"input_tokens": prompt - cached, "output_tokens": int(openai_usage.get("completion_tokens") or 0)}
    if cached:
        out["cache_read_input_tokens"] = cached
    return out


def _message_id(source: Any) -> str:
    return f"msg_{source}" if isinstance(source, str) and source else f"msg_{uuid.uuid4().hex[:24]}"


def _tool_id() -> str:
    return f"toolu_{uuid.uuid4().hex[:24]}"


class StreamTranslator:
    """Chat Completions chunks in, Anthropic stream events out, in the order Anthropic sends them.

    Text and each tool call are content blocks; a tool call's arguments are streamed as
    `input_json_delta` pieces exactly as they arrive (their concatenation is the arguments the
    provider sent), and a tool call whose arguments never came gets `{}` so the block is valid.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.usage: dict[str, int] = {"input_tokens": 0, "output_tokens": 0}
        self.stop_reason: str | None = None
        self.started = False
        self._index = -1
        self._open: str | None = None  # "text" or "tool:<openai index>"
        self._tools: dict[int, int] = {}  # OpenAI tool index → our block index
        self._tool_has_arguments: dict[int, bool] = {}
        self._finished = False

    def start(self, message_id: str | None = None) -> bytes:
        self.started = True
        message: dict[str, Any] = {
            "id": _message_id(message_id),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return sse("message_start", {"type": "message_start", "message": message})

    def chunk(self, data: dict[str, Any]) -> bytes:
        """The Anthropic events for one Chat Completions chunk (possibly none)."""
        if "error" in data:
            raise StreamError(data)
        out = b"" if self.started else self.start(data.get("id"))
        if isinstance(data.get("usage"), dict):
            self.usage = usage(data["usage"])
        for choice in data.get("choices") or ():
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                out += self._ensure("text") + sse(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": self._index,
                        "delta": {"type": "text_delta", "text": text},
                    },
                )
            for call in delta.get("tool_calls") or ():
                out += self._tool_delta(call)
            if choice.get("finish_reason"):
                self.stop_reason = _STOP_REASONS.get(choice["finish_reason"], "end_turn")
        return out

    def _tool_delta(self, call: dict[str, Any]) -> bytes:
        position = int(call.get("index") or 0)
        function = call.get("function") or {}
        out = b""
        if position not in self._tools:
            out += self._close()
            self._index += 1
            self._tools[position] = self._index
            self._tool_has_arguments[position] = False
            self._open = f"tool:{position}"
            block = {
                "type": "tool_use",
                "id": call.get("id") or _tool_id(),
                "name": function.get("name", ""),
                "input": {},
            }
            out += sse(
                "content_block_start", {"type": "content_block_start", "index": self._index, "content_block": block}
            )
        # A piece for a call whose block was closed (a provider interleaving parallel calls) still goes
        # out, under that block's index: clients assemble by index, and no argument is ever lost.
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            self._tool_has_arguments[position] = True
            out += sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": self._tools[position],
                    "delta": {"type": "input_json_delta", "partial_json": arguments},
                },
            )
        return out

    def _ensure(self, kind: str) -> bytes:
        if self._open == kind:
            return b""
        out = self._close()
        self._index += 1
        self._open = kind
        block = {"type": "text", "text": ""}
        return out + sse(
            "content_block_start", {"type": "content_block_start", "index": self._index, "content_block": block}
        )

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        out = b""
        if self._open.startswith("tool:"):
            position = int(self._open[5:])
            if not self._tool_has_arguments.get(position):
                out += sse(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": self._index,
                        "delta": {"type": "input_json_delta", "partial_json": "{}"},
                    },
                )
        self._open = None
        return out + sse("content_block_stop", {"type": "content_block_stop", "index": self._index})

    def finish(self) -> bytes:
        """The closing events: the last block's stop, `message_delta` (stop reason, usage), `message_stop`."""
        if self._finished:
            return b""
        self._finished = True
        out = b"" if self.started else self.start()
        out += self._close()
        delta = {"stop_reason": self.stop_reason or "end_turn", "stop_sequence": None}
        out += sse("message_delta", {"type": "message_delta", "delta": delta, "usage": self.usage})
        return out + sse("message_stop", {"type": "message_stop"})


def stream(chunks: AsyncIterator[bytes], translator: StreamTranslator) -> AsyncIterator[bytes]:
    """Re-frame a Chat Completions SSE stream as Anthropic events, chunk by chunk."""
    return reframe(chunks, translator.chunk, translator.finish)
