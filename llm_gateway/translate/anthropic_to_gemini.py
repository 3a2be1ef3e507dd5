"""An Anthropic Messages request served by Gemini `generateContent` (Google AI or Vertex), and back.

OpenAI clients reach Gemini through here too: their request is first made an Anthropic one
(`openai_to_anthropic`) and the answer goes the same way back, so there is one Gemini mapping.

Request: `system` → `systemInstruction`; user/assistant turns → `contents` with roles `user` /
`model`; text, base64 images, `tool_use` → `functionCall`, `tool_result` → `functionResponse`
(named after the call it answers: Gemini matches results by function name); `role: "system"`
entries inside `messages` join the system instruction. Tool schemas are narrowed to the subset of
OpenAPI 3 Gemini accepts (`$schema`, `additionalProperties`, `$ref` and friends dropped;
`["string", "null"]` becomes `nullable`). `max_tokens`, `temperature`, `top_p`,
`stop_sequences` map to `generationConfig`; thinking settings to `thinkingConfig`.

Answer: text parts → text blocks, `functionCall` → `tool_use` (Gemini sends arguments whole, so
a stream carries each call's JSON in one `input_json_delta`), thought parts dropped,
`finishReason` → `stop_reason`, `usageMetadata` → usage.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

from llm_gateway.translate.common import StreamError, reframe
from llm_gateway.wire import dumps, sse

_SCHEMA_KEYS = frozenset(
    {
        "type",
        "format",
        "description",
        "nullable",
        "enum",
        "items",
        "properties",
        "required",
        "anyOf",
        "minItems",
        "maxItems",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "pattern",
        "title",
        "propertyOrdering",
    }
)
_FINISH = {"STOP": "end_turn", "MAX_TOKENS": "max_tokens", "SAFETY": "refusal", "RECITATION": "refusal"}
_MODES = {"auto": "AUTO", "any": "ANY", "none": "NONE", "tool": "ANY"}


def request(body: dict[str, Any]) -> dict[str, Any]:
    """The `generateContent` body for an Anthropic Messages body (the model goes in the URL)."""
    system = _texts(body.get("system"))
    names: dict[str, str] = {}
    contents: list[dict[str, Any]] = []
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        if message.get("role") == "system":
            system += _texts(message.get("content"))
            continue
        parts = _parts(message.get("content"), names)
        if not parts:
            continue
        role = "model" if message.get("role") == "assistant" else "user"
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    declarations = [_declaration(t) for t in body.get("tools") or () if isinstance(t, dict) and "name" in t]
    declarations = [d for d in declarations if d is not None]
    if declarations:
        out["tools"] = [{"functionDeclarations": declarations}]
        choice = body.get("tool_choice")
        if isinstance(choice, dict) and choice.get("type") in _MODES:
            config: dict[str, Any] = {"mode": _MODES[choice["type"]]}
            if choice.get("type") == "tool" and choice.get("name"):
                config["allowedFunctionNames"] = [choice["name"]]
            out["toolConfig"] = {"functionCallingConfig": config}
    generation: dict[str, Any] = {}
    if isinstance(body.get("max_tokens"), int):
        generation["maxOutputTokens"] = body["max_tokens"]
    for source, target in (("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK")):
        if body.get(source) is not None:
            generation[target] = body[source]
    if body.get("stop_sequences"):
        generation["stopSequences"] = body["stop_sequences"]
    thinking = body.get("thinking")
    if (
        isinstance(thinking, dict)
        and thinking.get("type") == "enabled"
        and isinstance(thinking.get("budget_tokens"), int)
    ):
        generation["thinkingConfig"] = {"thinkingBudget": thinking["budget_tokens"]}
    if generation:
        out["generationConfig"] = generation
    return out


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content] if content else []
    return [
        str(b.get("text")) for b in content or () if isinstance(b, dict) and b.get("type") == "text" and b.get("text")
    ]


def _parts(content: Any, names: dict[str, str]) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for block in content or ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            parts.append({"text": str(block["text"])})
        elif kind == "image":
            source = block.get("source") or {}
            if source.get("type") == "base64":
                parts.append(
                    {"inlineData": {"mimeType": source.get("media_type", "image/png"), "data": source.get("data", "")}}
                )
        elif kind == "tool_use":
            names[str(block.get("id"))] = str(block.get("name", ""))
            parts.append({"functionCall": {"name": block.get("name", ""), "args": block.get("input") or {}}})
        elif kind == "tool_result":
            name = names.get(str(block.get("tool_use_id")), "tool")
            result = _result_text(block)
            response: dict[str, Any] = {"error": result} if block.get("is_error") else {"content": result}
            parts.append({"functionResponse": {"name": name, "response": response}})
    return parts


def _result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, str):
        return content
    lines = []
    for item in content or ():
        if isinstance(item, dict) and item.get("type") == "text":
            lines.append(str(item.get("text", "")))
        elif isinstance(item, dict) and item.get("type") == "tool_reference":
            lines.append(f"Tool loaded: {item.get('tool_name', '')}")
    return "\n\n".join(lines)


def _declaration(tool: dict[str, Any]) -> dict[str, Any] | None:
    if tool.get("type") not in (None, "custom"):
        return None  # Anthropic's own server tools cannot run on Gemini
    declaration: dict[str, Any] = {"name": tool["name"]}
    if tool.get("description"):
        declaration["description"] = tool["description"]
    schema = narrow_schema(tool.get("input_schema"))
    if schema.get("properties"):
        declaration["parameters"] = schema
    return declaration


def narrow_schema(schema: Any) -> dict[str, Any]:
    """A JSON Schema cut to the OpenAPI subset Gemini's function declarations accept."""
    if not isinstance(schema, dict):
        return {"type": "object", "properties": {}}
    out: dict[str, Any] = {}
    kind = schema.get("type")
    if isinstance(kind, list):
        others = [t for t in kind if t != "null"]
        if len(others) == 1:
            out["type"] = others[0]
        if "null" in kind:
            out["nullable"] = True
    elif isinstance(kind, str):
        out["type"] = kind
    for key, value in schema.items():
        if key not in _SCHEMA_KEYS or key == "type":
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: narrow_schema(sub) for name, sub in value.items()}
        elif key == "items":
            out[key] = narrow_schema(value)
        elif key == "anyOf" and isinstance(value, list):
            out[key] = [narrow_schema(sub) for sub in value]
        elif key == "enum" and isinstance(value, list):
            out[key] = [str(v) for v in value]
        else:
            out[key] = value
    if out.get("type") == "object" and "properties" not in out:
        out["properties"] = {}
    return out


# --- the answer ------------------------------------------------------------------------------------


def response(data: dict[str, Any], model: str) -> dict[str, Any]:
    """An Anthropic Message for a `generateContent` answer (the first candidate)."""
    candidate = (data.get("candidates") or [{}])[0]
    content: list[dict[str, Any]] = []
    text = ""
    for part in (candidate.get("content") or {}).get("parts") or ():
        if part.get("thought"):
            continue
        if "text" in part:
            text += str(part["text"])
        elif "functionCall" in part:
            call = part["functionCall"]
            content.append(
                {
                    "type": "tool_use",
                    "id": call.get("id") or _tool_id(),
                    "name": call.get("name", ""),
                    "input": call.get("args") or {},
                }
            )
    if text:
        content.insert(0, {"type": "text", "text": text})
    has_calls = any(b["type"] == "tool_use" for b in content)
    return {
        "id": f"msg_{data.get('responseId') or uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if has_calls else _FINISH.get(str(candidate.get("finishReason")), "end_turn"),
        "stop_sequence": None,
        "usage": usage(data.get("usageMetadata")),
    }


def usage(metadata: Any) -> dict[str, int]:
    if not isinstance(metadata, dict):
        return {"input_tokens": 0, "output_tokens": 0}
    cached = int(metadata.get("cachedContentTokenCount") or 0)
    out = {
        "input_tokens": int(metadata.get("promptTokenCount") or 0) - cached,
        "output_tokens": int(metadata.get("candidatesTokenCount") or 0) + int(metadata.get("thoughtsTokenCount") or 0),
    }
    if cached:
        out["cache_read_input_tokens"] = cached
    return out


def _tool_id() -> str:
    return f"toolu_{uuid.uuid4().hex[:24]}"


class StreamTranslator:
    """`streamGenerateContent?alt=sse` chunks in, Anthropic stream events out."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.usage: dict[str, int] = {"input_tokens": 0, "output_tokens": 0}
        self._index = -1
        self._text_open = False
        self._calls = False
        self._finish: str | None = None
        self._started = False

    def chunk(self, data: dict[str, Any]) -> bytes:
        if "error" in data:
            raise StreamError(data)
        out = b""
        if not self._started:
            self._started = True
            message: dict[str, Any] = {
                "id": f"msg_{data.get('responseId') or uuid.uuid4().hex[:24]}",
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }
            out += sse("message_start", {"type": "message_start", "message": message})
        if isinstance(data.get("usageMetadata"), dict):
            self.usage = usage(data["usageMetadata"])
        for candidate in data.get("candidates") or ():
            for part in (candidate.get("content") or {}).get("parts") or ():
                if part.get("thought"):
                    continue
                if part.get("text"):
                    if not self._text_open:
                        self._index += 1
                        self._text_open = True
                        block: dict[str, Any] = {"type": "text", "text": ""}
                        out += sse(
                            "content_block_start",
                            {"type": "content_block_start", "index": self._index, "content_block": block},
                        )
                    delta = {"type": "text_delta", "text": part["text"]}
                    out += sse(
                        "content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta}
                    )
                elif "functionCall" in part:
                    out += self._close_text()
                    call = part["functionCall"]
                    self._index += 1
                    self._calls = True
                    block = {
                        "type": "tool_use",
                        "id": call.get("id") or _tool_id(),
                        "name": call.get("name", ""),
                        "input": {},
                    }
                    arguments = dumps(call.get("args") or {}).decode()
                    out += sse(
                        "content_block_start",
                        {"type": "content_block_start", "index": self._index, "content_block": block},
                    )
                    delta = {"type": "input_json_delta", "partial_json": arguments}
                    out += sse(
                        "content_block_delta", {"type": "content_block_delta", "index": self._index, "delta": delta}
                    )
                    out += sse("content_block_stop", {"type": "content_block_stop", "index": self._index})
            if candidate.get("finishReason"):
                self._finish = str(candidate["finishReason"])
        return out

    def _close_text(self) -> bytes:
        if not self._text_open:
            return b""
        self._text_open = False
        return sse("content_block_stop", {"type": "content_block_stop", "index": self._index})

    def finish(self) -> bytes:
        out = b"" if self._started else self.chunk({})
        out += self._close_text()
        reason = "tool_use" if self._calls else _FINISH.get(self._finish or "STOP", "end_turn")
        out += sse(
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None}, "usage": self.usage},
        )
        return out + sse("message_stop", {"type": "message_stop"})


def stream(chunks: AsyncIterator[bytes], translator: StreamTranslator) -> AsyncIterator[bytes]:
    """Re-frame a Gemini SSE stream as Anthropic events, chunk by chunk."""
    return reframe(chunks, translator.chunk, translator.finish)
