"""Answer a POST with plain JSON when its event stream would carry nothing but the answer.

The SDK's streamable-HTTP transport answers every request POST with an SSE stream, so that
progress, log messages and server→client requests (sampling, elicitation, roots) can ride
along before the result. Most calls send none of these, and for them the stream is pure cost:
three ASGI messages instead of two, chunked framing, an event to parse on the client and, with
the SDK client (which closes the stream as soon as the answer arrives, before it has ended),
a new TCP connection per call because the half-read response cannot go back to the pool.

`AnswerAsJson` sits between the gateway and the SDK transport and holds back the start of an
SSE response until the first event is known:

- the first event is the JSON-RPC response: the client gets it as an `application/json`
  body (the spec lets a server answer a POST either way, and clients must accept both), and
  the rest of the stream (only its end) is dropped;
- anything else first (a progress or log notification, a server→client request, a keep-alive
  ping): the held start goes out and the stream is passed on untouched from then on.

So nothing that needs the stream loses it, and which way to answer is decided by what actually
happens during the call rather than guessed beforehand. Only `tools/call` is answered this way
(the method `EnvelopeGuard` found in the body): it is the hot path, and other requests keep
the SDK's framing (conformance suites count SSE streams on `tools/list`, for instance). GET
streams pass through unchanged.
"""

from __future__ import annotations

import re

import pydantic_core
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_gateway.http.guards import JSONRPC_METHOD_KEY

_SSE = b"text/event-stream"
# Headers that describe the event stream, not the answer; the JSON answer gets its own length.
_STREAM_HEADERS = frozenset({b"content-type", b"content-length", b"transfer-encoding", b"x-accel-buffering"})
# What the SDK writes for a response (`{"jsonrpc":"2.0","id":…,"result"|"error":…`): recognised
# without parsing the whole body, which may be large. Anything else is parsed to be sure.
_RESPONSE_PREFIX = re.compile(rb'\{"jsonrpc":"2\.0","id":(?:"(?:[^"\\]|\\.)*"|-?\d+),"(?:result|error)":')
_LINE = re.compile(rb"\r\n|\r|\n")


class AnswerAsJson:
    """ASGI middleware: a POST's SSE stream that would hold only the response becomes a JSON body."""

    def __init__(self, app: ASGIApp, methods: frozenset[str] = frozenset({"tools/call"})) -> None:
        self.app = app
        self.methods = methods

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope.get("state", {}).get(JSONRPC_METHOD_KEY) not in self.methods
        ):
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        streaming = False  # passing everything through
        answered = False  # the JSON answer is out; what the stream still sends is dropped

        async def send_answer_or_stream(message: Message) -> None:
            nonlocal held, streaming, answered
            if streaming:
                await send(message)
                return
            if answered:
                return
            if held is None:
                if message["type"] == "http.response.start" and message["status"] == 200 and _is_sse(message):
                    held = message
                else:
                    streaming = True
                    await send(message)
                return
            answer = _lone_response(message.get("body", b"")) if message.get("more_body", False) else None
            if answer is None:
                streaming = True
                await send(held)
                await send(message)
                return
            answered = True
            headers = [(k, v) for k, v in held["headers"] if k.lower() not in _STREAM_HEADERS]
            headers += [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": answer, "more_body": False})

        await self.app(scope, receive, send_answer_or_stream)


def _is_sse(start: Message) -> bool:
    return any(k.lower() == b"content-type" and v.startswith(_SSE) for k, v in start["headers"])


def _lone_response(chunk: bytes) -> bytes | None:
    """The JSON-RPC response `chunk` (one SSE event) carries, or None if it is anything else."""
    data: list[bytes] = []
    for line in _LINE.split(chunk):
        if line.startswith(b"data:"):
            data.append(line[6:] if line.startswith(b"data: ") else line[5:])
        elif line.startswith(b":") or (line.startswith(b"event:") and line[6:].strip() != b"message"):
            return None  # a comment (keep-alive ping) or another kind of event: keep the stream
    if not data:
        return None
    body = b"\n".join(data)
    if _RESPONSE_PREFIX.match(body):
        return body
    try:
        message = pydantic_core.from_json(body)
    except ValueError:
        return None
    is_response = isinstance(message, dict) and "method" not in message and ("result" in message or "error" in message)
    return body if is_response else None
