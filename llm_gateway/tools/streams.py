"""One well-formed client stream out of several model rounds (agent mode, streaming).

The client sees one message: the first round's start, the text (and thinking) of every round as it
arrives, and the end of the last round. What the gateway handles itself is never shown: tool
calls are held back until their round has ended, and only a round whose tool calls the gateway
does not run releases them (with the round's end) to the client. Content block indexes
(Anthropic) are renumbered so they stay consecutive across rounds; token counts in the final
`usage` are the sums over all rounds.

`Stitcher.feed` takes one parsed SSE event of the client's format and returns the bytes to send
now; `end_round` says what the round ended with; `release` gives the held end of the stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llm_gateway.errors import Api
from llm_gateway.tools.formats import ToolCall, add_usage, chat_turn_of_calls, with_usage
from llm_gateway.translate.common import parse_arguments
from llm_gateway.wire import SseEvent, dumps, loads, sse

KEEPALIVE: dict[Api, bytes] = {
    "anthropic": sse("ping", {"type": "ping"}),
    "openai": b": keep-alive\n\n",
}
"""What the client receives while the gateway runs tools: Anthropic's own `ping` event; an SSE
comment for Chat Completions (clients skip comments)."""


@dataclass(slots=True)
class _HeldCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)

    def call(self) -> ToolCall:
        parsed = parse_arguments("".join(self.arguments)) if self.arguments else {}
        return ToolCall(self.id, self.name, parsed if isinstance(parsed, dict) else {})


class Stitcher:
    """Base: what both formats track across rounds."""

    def __init__(self) -> None:
        self.round = 0
        self.usage: dict[str, int] = {}
        """Sums over the finished rounds."""
        self.calls: dict[int, _HeldCall] = {}
        self.stop_reason: str | None = None
        self.failed = False
        """The stream carried an error event (already sent to the client)."""

    def begin_round(self) -> None:
        self.round += 1
        self.calls, self.stop_reason = {}, None

    def tool_calls(self) -> list[ToolCall]:
        return [held.call() for _, held in sorted(self.calls.items())]

    def turn(self) -> dict[str, Any]:
        """The model's turn of this round, as the next round's history holds it."""
        raise NotImplementedError

    def feed(self, event: SseEvent) -> list[bytes]:
        raise NotImplementedError

    def end_round(self) -> None:
        raise NotImplementedError

    def release(self) -> list[bytes]:
        raise NotImplementedError


class AnthropicStitcher(Stitcher):
    """Messages API events: `message_start`, content blocks, `message_delta`, `message_stop`."""

    def __init__(self) -> None:
        super().__init__()
        self._next_index = 0
        self._index: dict[int, int] = {}
        self._round_usage: dict[str, int] = {}
        self._delta: dict[str, Any] | None = None
        self._blocks: dict[int, dict[str, Any]] = {}
        self._unread: list[str] = []
        """Deltas relayed without being parsed (the hot case: text of the first round); read only if needed."""

    def begin_round(self) -> None:
        super().begin_round()
        self._index, self._round_usage, self._delta, self._blocks, self._unread = {}, {}, None, {}, []

    def turn(self) -> dict[str, Any]:
        for data in self._unread:
            parsed = loads(data)
            _apply_delta(self._blocks.setdefault(parsed.get("index", 0), {}), parsed.get("delta") or {})
        self._unread = []
        content: list[dict[str, Any]] = []
        for index, block in sorted(self._blocks.items()):
            held = self.calls.get(index)
            if held is not None:
                call = held.call()
                content.append({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments})
            else:
                content.append(block)
        return {"role": "assistant", "content": content}

    def feed(self, event: SseEvent) -> list[bytes]:
        if event.event == "content_block_delta" and self.round == 1 and not self.calls:
            # Nothing held and nothing renumbered yet: the event goes out as it came, unparsed.
            self._unread.append(event.data)
            return [_raw(event)]
        data = loads(event.data) if event.data else {}
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "message_start":
            message = data.get("message") or {}
            self._round_usage.update({k: v for k, v in (message.get("usage") or {}).items() if isinstance(v, int)})
            return [_raw(event)] if self.round == 1 else []
        if kind in ("content_block_start", "content_block_delta", "content_block_stop"):
            return self._block(event, kind, data)
        if kind == "message_delta":
            self._delta = data
            self.stop_reason = (data.get("delta") or {}).get("stop_reason")
            self._round_usage.update({k: v for k, v in (data.get("usage") or {}).items() if isinstance(v, int)})
            return []
        if kind == "message_stop":
            return []
        if kind == "error":
            self.failed = True
        return [_raw(event)]

    def _block(self, event: SseEvent, kind: str, data: dict[str, Any]) -> list[bytes]:
        index = data.get("index", 0)
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            self._blocks[index] = dict(block)
            if block.get("type") == "tool_use":
                self.calls[index] = _HeldCall(str(block.get("id", "")), str(block.get("name", "")))
            else:
                self._index[index] = self._next_index
                self._next_index += 1
        held = self.calls.get(index)
        if held is not None:
            held.events.append(data)
            delta = data.get("delta") or {}
            if delta.get("type") == "input_json_delta":
                held.arguments.append(str(delta.get("partial_json", "")))
            return []
        if kind == "content_block_delta":
            _apply_delta(self._blocks.setdefault(index, {}), data.get("delta") or {})
        out = self._index.get(index, index)
        if out == index:
            return [_raw(event)]
        return [sse(kind, {**data, "index": out})]

    def end_round(self) -> None:
        add_usage(self.usage, self._round_usage)

    def release(self) -> list[bytes]:
        out: list[bytes] = []
        for _, held in sorted(self.calls.items()):
            index = self._next_index
            self._next_index += 1
            out += [sse(data["type"], {**data, "index": index}) for data in held.events]
        delta = self._delta or {"type": "message_delta", "delta": {"stop_reason": self.stop_reason}, "usage": {}}
        out.append(sse("message_delta", {**delta, "usage": with_usage(delta.get("usage") or {}, self.usage)}))
        out.append(sse("message_stop", {"type": "message_stop"}))
        return out


class OpenAIStitcher(Stitcher):
    """Chat Completions chunks: content deltas, tool call deltas, a finish reason, a usage chunk, `[DONE]`."""

    def __init__(self) -> None:
        super().__init__()
        self._finish: dict[str, Any] | None = None
        self._last: dict[str, Any] = {}
        self._usage_seen = False
        self._text: list[str] = []

    def begin_round(self) -> None:
        super().begin_round()
        self._finish, self._text = None, []

    def turn(self) -> dict[str, Any]:
        return chat_turn_of_calls("".join(self._text), self.tool_calls())

    def feed(self, event: SseEvent) -> list[bytes]:
        if event.data.strip() == "[DONE]":
            return []
        data = loads(event.data)
        if not isinstance(data, dict):
            return [_raw(event)]
        if "error" in data:
            self.failed = True
            return [_raw(event)]
        self._last = data
        usage = data.get("usage")
        if usage:
            self._usage_seen = True
            add_usage(self.usage, usage)
        choices = data.get("choices") or []
        choice = choices[0] if choices and isinstance(choices[0], dict) else None
        if choice is None:
            return []  # the usage chunk: the sums go out at the end
        delta = choice.get("delta") or {}
        calls = delta.get("tool_calls")
        if calls:
            for piece in calls:
                held = self.calls.setdefault(int(piece.get("index", 0)), _HeldCall())
                held.id = piece.get("id") or held.id
                function = piece.get("function") or {}
                held.name = function.get("name") or held.name
                if function.get("arguments"):
                    held.arguments.append(str(function["arguments"]))
        if isinstance(delta.get("content"), str):
            self._text.append(delta["content"])
        finish = choice.get("finish_reason")
        if finish:
            self.stop_reason, self._finish = finish, data
        if not (calls or usage or finish):
            if self.round > 1 and delta.get("role") and not delta.get("content"):
                return []  # one message: its role was announced by the first round
            return [_raw(event)]
        rest = {k: v for k, v in delta.items() if k != "tool_calls"}
        if not rest.get("content") and not rest.get("refusal"):
            return []
        trimmed = {**data, "choices": [{**choice, "delta": rest, "finish_reason": None}]}
        trimmed.pop("usage", None)
        return [b"data: " + dumps(trimmed) + b"\n\n"]

    def end_round(self) -> None:
        return None

    def release(self) -> list[bytes]:
        envelope = {
            k: v for k, v in self._last.items() if k in ("id", "object", "created", "model", "system_fingerprint")
        }
        out: list[bytes] = []
        if self.calls:
            calls = [
                {
                    "index": position,
                    "id": held.id,
                    "type": "function",
                    "function": {"name": held.name, "arguments": "".join(held.arguments)},
                }
                for position, (_, held) in enumerate(sorted(self.calls.items()))
            ]
            chunk = {**envelope, "choices": [{"index": 0, "delta": {"tool_calls": calls}, "finish_reason": None}]}
            out.append(b"data: " + dumps(chunk) + b"\n\n")
        finish = self._finish or {**envelope, "choices": [{"index": 0, "delta": {}, "finish_reason": self.stop_reason}]}
        finish = {**finish, "choices": [{**(finish.get("choices") or [{}])[0], "delta": {}}]}
        finish.pop("usage", None)
        out.append(b"data: " + dumps(finish) + b"\n\n")
        if self._usage_seen:
            out.append(b"data: " + dumps({**envelope, "choices": [], "usage": self.usage}) + b"\n\n")
        out.append(b"data: [DONE]\n\n")
        return out


def stitcher_for(api: Api) -> Stitcher:
    return AnthropicStitcher() if api == "anthropic" else OpenAIStitcher()


def _raw(event: SseEvent) -> bytes:
    head = f"event: {event.event}\n" if event.event is not None else ""
    return (head + "data: " + event.data.replace("\n", "\ndata: ") + "\n\n").encode()


def _apply_delta(block: dict[str, Any], delta: Mapping[str, Any]) -> None:
    """Grow a content block by one delta (text, thinking, signature), as the API's own accumulators do."""
    kind = delta.get("type")
    if kind == "text_delta":
        block["text"] = block.get("text", "") + str(delta.get("text", ""))
    elif kind == "thinking_delta":
        block["thinking"] = block.get("thinking", "") + str(delta.get("thinking", ""))
    elif kind == "signature_delta":
        block["signature"] = str(delta.get("signature", ""))
    elif kind == "citations_delta" and "citation" in delta:
        block.setdefault("citations", []).append(delta["citation"])
