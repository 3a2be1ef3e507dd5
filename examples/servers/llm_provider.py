"""A stand-in model provider: the real wire formats and real key checks, canned answers.

`make run` starts it next to the demo gateway (so `/anthropic` and `/openai` work without a
provider account; `--echo` answers with what it was asked), and the tests and benchmarks use it
as the provider behind mcpgw.

`MockProvider` serves Anthropic Messages (`/v1/messages`, `/v1/messages/count_tokens`) and
OpenAI Chat Completions (`/v1/chat/completions`, Azure's deployment path too) on one port; a
request without the expected key gets the provider's own 401. Every request is recorded
(headers, body) for assertions. What it answers comes from a queue of `Turn`s (text, a tool
call, an error status, garbage, a stream that breaks off), else a default text turn. Streams are
the real event sequences (Anthropic: `event:` lines through `message_stop`; OpenAI: `data:`
chunks through `[DONE]`), with tool-call arguments cut into small pieces at awkward places.

Run standalone:
    python examples/servers/llm_provider.py --port 9400 --key test-key [--echo]
        [--tool-call Write '{"file_path": ...}']
"""

from __future__ import annotations

import argparse
import json
import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Turn:
    """One scripted answer."""

    text: str = "Hello from the mock."
    tool: tuple[str, dict[str, Any]] | None = None
    """(name, arguments): answer with a tool call instead of text."""
    more_tools: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """Further tool calls in the same turn (parallel tool calls)."""
    preamble: str | None = None
    """Text the model says before its tool calls, in the same turn."""
    quote_tool_results: bool = False
    """Answer with the text of the tool results the request carries (`text` is replaced)."""
    status: int = 200
    """An error status to answer with (the provider's own error body)."""
    garbage: bool = False
    break_after: int | None = None
    """Streams: stop after this many events without finishing (a broken connection)."""
    hang_after: int | None = None
    """Streams: stop sending (but keep the connection open) after this many events."""
    headers: dict[str, str] = field(default_factory=dict)

    def calls(self) -> list[tuple[str, dict[str, Any]]]:
        return ([self.tool] if self.tool is not None else []) + self.more_tools


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any


class MockProvider:
    """A provider with one key (`key`); `turns` are answered in order, then `default`."""

    def __init__(self, key: str = "test-provider-key", *, piece: int = 3) -> None:
        self.key = key
        self.also_accept: set[str] = set()
        """More keys this provider accepts (several keys of one account)."""
        self.piece = piece
        self.turns: deque[Turn] = deque()
        self.default = Turn()
        self.stream_write_bytes: int | None = 7
        """OpenAI streams are written in pieces of this many bytes (awkward cuts, for the tests); None:
        one write per event, as real providers write them."""
        self.echo = False
        """Answer with the text of the last user message (for the demo), instead of `default`."""
        self.tool_then_text: tuple[str, dict[str, Any]] | None = None
        """Answer every conversation with this tool call first, and with `default` once its result is back."""
        self.requests: list[Recorded] = []
        self.app = Starlette(
            routes=[
                Route("/v1/messages", self.messages, methods=["POST"]),
                Route("/anthropic/v1/messages", self.messages, methods=["POST"]),  # Claude on Azure AI Foundry
                Route("/v1/messages/count_tokens", self.count_tokens, methods=["POST"]),
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/openai/deployments/{deployment}/chat/completions", self.chat, methods=["POST"]),
                Route("/v1beta/models/{model_action}", self.gemini, methods=["POST"]),
            ]
        )

    def script(self, *turns: Turn) -> None:
        self.turns.extend(turns)

    def _next(self) -> Turn:
        turn = self._scripted()
        if turn.quote_tool_results and self.requests:
            quoted = " | ".join(_tool_result_texts(self.requests[-1].body))
            turn = replace(turn, text=f"tool results: {quoted}")
        return turn

    def _scripted(self) -> Turn:
        if self.turns:
            return self.turns.popleft()
        if self.echo and self.requests:
            body = self.requests[-1].body
            if _has_tool_result(body):
                return Turn(text="[demo provider] the tool answered: " + " | ".join(_tool_result_texts(body))[:500])
            wanted = _tool_asked_for(body)
            if wanted is not None:
                return Turn(tool=wanted)
            model = body.get("model", "?") if isinstance(body, dict) else "?"
            return Turn(text=f"[demo provider, model {model}] you said: {_last_user_text(body)[:500]}")
        if self.tool_then_text is not None:
            last = self.requests[-1].body if self.requests else {}
            return self.default if _has_tool_result(last) else Turn(tool=self.tool_then_text)
        return self.default

    async def _record(self, request: Request) -> Any:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(Recorded(request.url.path, headers, body))
        return body

    # --- Anthropic ---------------------------------------------------------------------------

    async def messages(self, request: Request) -> Response:
        body = await self._record(request)
        foundry = request.url.path.startswith("/anthropic/")
        if request.headers.get("api-key" if foundry else "x-api-key") != self.key:
            return _anthropic_error(401, "authentication_error", "invalid x-api-key")
        if not isinstance(body, dict) or not isinstance(body.get("max_tokens"), int):
            return _anthropic_error(400, "invalid_request_error", "max_tokens: Field required")
        turn = self._next()
        if turn.status != 200:
            kind = {429: "rate_limit_error", 529: "overloaded_error"}.get(turn.status, "api_error")
            return _anthropic_error(turn.status, kind, f"mock error {turn.status}", turn.headers)
        if turn.garbage:
            return Response(b"<html>bad gateway</html>", media_type="application/json")
        message_id = f"msg_{uuid.uuid4().hex[:20]}"
        model = body.get("model")
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": _anthropic_content(turn),
                    "stop_reason": "tool_use" if turn.tool else "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": 11, "output_tokens": 7, "cache_read_input_tokens": 3},
                }
            )
        return StreamingResponse(self._anthropic_stream(turn, message_id, model), media_type="text/event-stream")

    def _anthropic_events(self, turn: Turn, message_id: str, model: Any) -> list[tuple[str, dict[str, Any]]]:
        start = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 11, "output_tokens": 1, "cache_read_input_tokens": 3},
        }
        events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": start})]
        blocks: list[tuple[str, Any]] = [("text", turn.preamble)] if turn.preamble else []
        blocks += [("tool", call) for call in turn.calls()] or [("text", turn.text)]
        for index, (kind, value) in enumerate(blocks):
            if kind == "tool":
                name, arguments = value
                block = {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:20]}", "name": name, "input": {}}
                text, delta_type, field_name = json.dumps(arguments), "input_json_delta", "partial_json"
            else:
                block, text, delta_type, field_name = {"type": "text", "text": ""}, value, "text_delta", "text"
            events.append(
                ("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})
            )
            for i in range(0, len(text), self.piece):
                delta = {"type": delta_type, field_name: text[i : i + self.piece]}
                events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
            events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        stop = "tool_use" if turn.tool else "end_turn"
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": 7},
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        return events

    async def _anthropic_stream(self, turn: Turn, message_id: str, model: Any) -> Any:
        for count, (name, data) in enumerate(self._anthropic_events(turn, message_id, model)):
            if turn.break_after is not None and count >= turn.break_after:
                raise RuntimeError("mock: connection broken on purpose")
            if turn.hang_after is not None and count >= turn.hang_after:
                await anyio.sleep_forever()
            yield f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

    async def count_tokens(self, request: Request) -> Response:
        await self._record(request)
        if request.headers.get("x-api-key") != self.key:
            return _anthropic_error(401, "authentication_error", "invalid x-api-key")
        return JSONResponse({"input_tokens": 42})

    # --- Gemini (Google AI) -------------------------------------------------------------------

    async def gemini(self, request: Request) -> Response:
        body = await self._record(request)
        given = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        if given != self.key:
            return JSONResponse(
                {"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT"}}, 400
            )
        if not isinstance(body, dict) or not isinstance(body.get("contents"), list):
            return JSONResponse(
                {"error": {"code": 400, "message": "contents is required", "status": "INVALID_ARGUMENT"}}, 400
            )
        return self.gemini_answer(request.path_params["model_action"], request.query_params.get("alt"))

    def gemini_answer(self, model_action: str, alt: str | None) -> Response:
        _, _, action = model_action.partition(":")
        turn = self._next()
        if turn.status != 200:
            return JSONResponse({"error": {"code": turn.status, "message": f"mock error {turn.status}"}}, turn.status)
        if action == "streamGenerateContent":
            if alt != "sse":
                return JSONResponse({"error": {"code": 400, "message": "mock: use alt=sse"}}, 400)

            async def events() -> Any:
                for chunk in gemini_chunks(turn, self.piece):
                    yield f"data: {json.dumps(chunk)}\r\n\r\n".encode()

            return StreamingResponse(events(), media_type="text/event-stream")
        return JSONResponse(gemini_whole(turn))

    # --- OpenAI ------------------------------------------------------------------------------

    async def chat(self, request: Request) -> Response:
        body = await self._record(request)
        azure = "deployment" in request.path_params
        given = (
            request.headers.get("api-key")
            if azure
            else request.headers.get("authorization", "").removeprefix("Bearer ")
        )
        if given != self.key and given not in self.also_accept:
            return _openai_error(401, "invalid_request_error", "Incorrect API key provided", "invalid_api_key")
        turn = self._next()
        if turn.status != 200:
            return JSONResponse(
                {
                    "error": {
                        "message": f"mock error {turn.status}",
                        "type": "server_error",
                        "param": None,
                        "code": None,
                    }
                },
                status_code=turn.status,
                headers=turn.headers,
            )
        if turn.garbage:
            return Response(b"<html>bad gateway</html>", media_type="application/json")
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:20]}"
        model = body.get("model") if isinstance(body, dict) else None
        if not (isinstance(body, dict) and body.get("stream")):
            message: dict[str, Any] = {"role": "assistant", "content": turn.preamble if turn.tool else turn.text}
            if turn.tool is not None:
                message["tool_calls"] = [
                    {
                        "id": f"call_{uuid.uuid4().hex[:20]}",
                        "type": "function",
                        "function": {"name": name, "arguments": json.dumps(arguments)},
                    }
                    for name, arguments in turn.calls()
                ]
            return JSONResponse(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": 1,
                    "model": model,
                    "choices": [
                        {"index": 0, "message": message, "finish_reason": "tool_calls" if turn.tool else "stop"}
                    ],
                    "usage": {"prompt_tokens": 13, "completion_tokens": 5, "total_tokens": 18},
                }
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            self._openai_stream(turn, completion_id, model, include_usage), media_type="text/event-stream"
        )

    async def _openai_stream(self, turn: Turn, completion_id: str, model: Any, include_usage: bool) -> Any:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": 1,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(data)}\n\n".encode()

        parts = [chunk({"role": "assistant", "content": ""})]
        if turn.tool is not None:
            for i in range(0, len(turn.preamble or ""), self.piece):
                parts.append(chunk({"content": (turn.preamble or "")[i : i + self.piece]}))
            for position, (name, arguments) in enumerate(turn.calls()):
                call_id = f"call_{uuid.uuid4().hex[:20]}"
                first = {
                    "index": position,
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }
                parts.append(chunk({"tool_calls": [first]}))
                text = json.dumps(arguments)
                for i in range(0, len(text), self.piece):
                    piece = {"index": position, "function": {"arguments": text[i : i + self.piece]}}
                    parts.append(chunk({"tool_calls": [piece]}))
            parts.append(chunk({}, "tool_calls"))
        else:
            for i in range(0, len(turn.text), self.piece):
                parts.append(chunk({"content": turn.text[i : i + self.piece]}))
            parts.append(chunk({}, "stop"))
        if include_usage:
            usage = {"prompt_tokens": 13, "completion_tokens": 5, "total_tokens": 18}
            data = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": 1,
                "model": model,
                "choices": [],
                "usage": usage,
            }
            parts.append(f"data: {json.dumps(data)}\n\n".encode())
        parts.append(b"data: [DONE]\n\n")
        # Cut the bytes at awkward places (inside JSON, inside "data:"), as networks do.
        blob = b"".join(parts)
        size = self.stream_write_bytes
        pieces = parts if size is None else [blob[i : i + size] for i in range(0, len(blob), size)]
        for count, piece in enumerate(pieces):
            if turn.break_after is not None and count >= turn.break_after:
                raise RuntimeError("mock: connection broken on purpose")
            if turn.hang_after is not None and count >= turn.hang_after:
                await anyio.sleep_forever()
            yield piece


def gemini_chunks(turn: Turn, piece: int) -> list[dict[str, Any]]:
    """A Gemini answer as `streamGenerateContent` chunks (the last one carries finishReason and usage)."""
    usage = {"promptTokenCount": 17, "candidatesTokenCount": 6, "totalTokenCount": 23}
    if turn.tool is not None:
        call = {"functionCall": {"name": turn.tool[0], "args": turn.tool[1]}}
        return [
            {
                "candidates": [{"content": {"role": "model", "parts": [call]}, "finishReason": "STOP"}],
                "usageMetadata": usage,
            }
        ]
    texts = [turn.text[i : i + piece] for i in range(0, len(turn.text), piece)] or [""]
    chunks: list[dict[str, Any]] = [
        {"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}}]} for text in texts
    ]
    chunks[-1]["candidates"][0]["finishReason"] = "STOP"
    chunks[-1]["usageMetadata"] = usage
    return chunks


def gemini_whole(turn: Turn) -> dict[str, Any]:
    """A Gemini `generateContent` answer."""
    chunks = gemini_chunks(turn, 10_000)
    parts = [p for c in chunks for p in c["candidates"][0]["content"]["parts"]]
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}],
        "usageMetadata": chunks[-1]["usageMetadata"],
        "responseId": "gemini-response",
    }


def _anthropic_content(turn: Turn) -> list[dict[str, Any]]:
    blocks = [{"type": "text", "text": turn.preamble}] if turn.preamble and turn.tool else []
    if turn.tool is None:
        return [*blocks, _anthropic_block(turn)]
    return blocks + [
        {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:20]}", "name": name, "input": arguments}
        for name, arguments in turn.calls()
    ]


def _anthropic_block(turn: Turn) -> dict[str, Any]:
    if turn.tool is not None:
        return {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:20]}", "name": turn.tool[0], "input": turn.tool[1]}
    return {"type": "text", "text": turn.text}


def _anthropic_error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(
        {"type": "error", "error": {"type": kind, "message": message}}, status_code=status, headers=headers
    )


def _openai_error(status: int, kind: str, message: str, code: str | None = None) -> Response:
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}}, status_code=status)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key", default="test-provider-key")
    parser.add_argument("--tool-call", nargs=2, metavar=("NAME", "JSON_ARGUMENTS"))
    parser.add_argument("--text", default="Hello from the mock.")
    parser.add_argument(
        "--echo",
        action="store_true",
        help='answer with the last user message (demo); "call <tool> [JSON]" calls one of the offered tools',
    )
    parser.add_argument(
        "--write-events", action="store_true", help="write streams one event per write, as real providers do"
    )
    parser.add_argument("--record", help="append every request as one JSON line to this file")
    args = parser.parse_args()
    provider = MockProvider(args.key)
    provider.default = Turn(text=args.text)
    provider.echo = args.echo
    if args.write_events:
        provider.stream_write_bytes = None
    if args.tool_call:
        provider.tool_then_text = (args.tool_call[0], json.loads(args.tool_call[1]))
    if args.record:
        record_path = args.record
        recorded = provider._record

        async def record(request: Request) -> Any:
            body = await recorded(request)
            entry = provider.requests[-1]
            line = json.dumps({"path": entry.path, "headers": entry.headers, "body": entry.body}) + "\n"
            async with await anyio.open_file(record_path, "a", encoding="utf-8") as out:
                await out.write(line)
            return body

        provider._record = record  # type: ignore[method-assign]
    uvicorn.run(provider.app, host="127.0.0.1", port=args.port, log_level="warning")


def _last_user_text(body: Any) -> str:
    """The text of the last user message (Anthropic or OpenAI shape); '' when there is none."""
    messages = body.get("messages") if isinstance(body, dict) else None
    for message in reversed(messages or []):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        texts = [b.get("text", "") for b in content or [] if isinstance(b, dict) and b.get("type") == "text"]
        texts = [t for t in texts if not t.startswith("<system-reminder>")]
        if texts:
            return str(texts[-1])
    return ""


def _tool_asked_for(body: Any) -> tuple[str, dict[str, Any]] | None:
    """Demo: "call <tool> [JSON arguments]" as the last user message, for a tool the request offers."""
    words = _last_user_text(body).strip().split(maxsplit=2)
    if len(words) < 2 or words[0].lower() != "call":
        return None
    offered = {t.get("name") or (t.get("function") or {}).get("name") for t in body.get("tools") or []}
    if words[1] not in offered:
        return None
    try:
        arguments = json.loads(words[2]) if len(words) > 2 else {}
    except ValueError:
        return None
    return (words[1], arguments) if isinstance(arguments, dict) else None


def _has_tool_result(body: Any) -> bool:
    """Whether the conversation answers a tool call after the model's last turn (Anthropic or OpenAI shape)."""
    if not isinstance(body, dict):
        return False
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    after = messages
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "assistant":
            after = messages[index + 1 :]
            break
    for message in after:
        if message.get("role") == "tool":
            return True
        content = message.get("content")
        if isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content):
            return True
    return False


def _tool_result_texts(body: Any) -> list[str]:
    """The texts of the tool results in a conversation's last messages (Anthropic or OpenAI shape)."""
    texts: list[str] = []
    messages = [m for m in (body.get("messages") if isinstance(body, dict) else None) or [] if isinstance(m, dict)]
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=-1)
    for message in messages[last + 1 :]:
        if message.get("role") == "tool":
            texts.append(str(message.get("content")))
            continue
        content = message.get("content")
        for block in content if isinstance(content, list) else []:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                inner = block.get("content")
                if isinstance(inner, str):
                    texts.append(inner)
                else:
                    texts += [str(b.get("text", "")) for b in inner or [] if isinstance(b, dict)]
    return texts


if __name__ == "__main__":
    main()
