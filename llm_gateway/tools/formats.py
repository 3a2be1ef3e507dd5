"""Tool calls and tool results in the two client formats (Anthropic Messages, OpenAI Chat Completions).

The agent loop works in the client's own format, whatever provider serves a round (translation
happens below it, in `service.py`): it reads the model's tool calls from an answer, appends the
model's turn and the tools' results to the conversation, and, at the end, reports the tokens of
every round in the answer's `usage`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llm_gateway.errors import Api
from llm_gateway.translate.common import parse_arguments
from llm_gateway.wire import dumps

TOOL_STOPS = frozenset({"tool_use", "tool_calls"})
"""Stop reasons (Anthropic, OpenAI) of a turn that ends with tool calls."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


def calls_in_answer(api: Api, answer: Mapping[str, Any]) -> tuple[list[ToolCall], str | None]:
    """The tool calls of a whole answer, and its stop reason."""
    calls: list[ToolCall] = []
    if api == "anthropic":
        for block in answer.get("content") or ():
            if isinstance(block, dict) and block.get("type") == "tool_use":
                arguments = block.get("input")
                calls.append(
                    ToolCall(
                        str(block.get("id", "")),
                        str(block.get("name", "")),
                        arguments if isinstance(arguments, dict) else {},
                    )
                )
        return calls, answer.get("stop_reason")
    choices = answer.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            arguments = parse_arguments(function.get("arguments"))
            calls.append(
                ToolCall(
                    str(call.get("id", "")),
                    str(function.get("name", "")),
                    arguments if isinstance(arguments, dict) else {},
                )
            )
    return calls, choice.get("finish_reason")


def assistant_turn(api: Api, answer: Mapping[str, Any]) -> dict[str, Any]:
    """The model's turn of a whole answer, as the next request's history holds it."""
    if api == "anthropic":
        return {"role": "assistant", "content": answer.get("content") or []}
    message = dict((answer.get("choices") or [{}])[0].get("message") or {})
    return {k: v for k, v in message.items() if v is not None and k in ("role", "content", "tool_calls")} | {
        "role": "assistant"
    }


def chat_turn_of_calls(text: str, calls: Sequence[ToolCall]) -> dict[str, Any]:
    """A Chat Completions model turn rebuilt from a stream: its text and its tool calls (an Anthropic
    turn is rebuilt block by block, thinking included: `streams.AnthropicStitcher.turn`)."""
    return {
        "role": "assistant",
        "content": text or None,
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": dumps(c.arguments).decode()}}
            for c in calls
        ],
    }


def continued(
    api: Api, body: Mapping[str, Any], turn: dict[str, Any], results: Sequence[tuple[ToolCall, Mapping[str, Any]]]
) -> dict[str, Any]:
    """The request for the next round: the history, the model's turn, and one result per tool call."""
    messages = list(body.get("messages") or [])
    messages.append(turn)
    if api == "anthropic":
        messages.append({"role": "user", "content": [tool_result(api, call.id, result) for call, result in results]})
    else:
        messages += [tool_result(api, call.id, result) for call, result in results]
    return {**body, "messages": messages}


def tool_result(api: Api, call_id: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """A tool's MCP result as the next message of the conversation: a `tool_result` block or a `tool` message.

    Structured content is given as its JSON (what Claude Code gives the model too); images go as
    images to Anthropic and as JSON text to OpenAI (whose `tool` messages hold text only).
    """
    texts: list[str] = []
    blocks: list[dict[str, Any]] = []
    structured = result.get("structuredContent")
    if structured is not None:
        texts.append(dumps(structured).decode())
        blocks.append({"type": "text", "text": texts[-1]})
    else:
        for item in result.get("content") or ():
            if not isinstance(item, dict):
                continue
            if item.get("type") == "text":
                texts.append(str(item.get("text", "")))
                blocks.append({"type": "text", "text": texts[-1]})
            elif item.get("type") == "image" and api == "anthropic":
                source = {
                    "type": "base64",
                    "media_type": item.get("mimeType", "image/png"),
                    "data": item.get("data", ""),
                }
                blocks.append({"type": "image", "source": source})
            else:
                texts.append(dumps(item).decode())
                blocks.append({"type": "text", "text": texts[-1]})
    error = bool(result.get("isError"))
    if api == "anthropic":
        return {"type": "tool_result", "tool_use_id": call_id, "content": blocks, "is_error": error}
    return {"role": "tool", "tool_call_id": call_id, "content": "\n\n".join(texts)}


def add_usage(total: dict[str, int], usage: Any) -> None:
    """Add a round's token counts (every integer field of `usage`) to `total`."""
    if isinstance(usage, Mapping):
        for key, value in usage.items():
            if isinstance(value, int) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value


def with_usage(usage: Any, total: Mapping[str, int]) -> Any:
    """`usage` with its integer fields replaced by the sums over every round."""
    if not isinstance(usage, Mapping) or not total:
        return usage
    return {**usage, **total}
