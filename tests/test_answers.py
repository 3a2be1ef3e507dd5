"""`AnswerAsJson`: a POST's event stream holding only the answer becomes JSON; anything else streams as before."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from mcp_gateway.http.answers import AnswerAsJson
from mcp_gateway.http.guards import JSONRPC_METHOD_KEY

pytestmark = pytest.mark.anyio

RESPONSE = b'{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"hi"}]}}'
PROGRESS = b'{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}'
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-store"), (b"mcp-session-id", b"s1")]


def event(data: bytes) -> bytes:
    return b"event: message\r\ndata: " + data + b"\r\n\r\n"


def sse_app(*chunks: bytes, headers: list[tuple[bytes, bytes]] = SSE_HEADERS) -> Any:
    """What the SDK transport does for a request POST: an SSE start, one chunk per event, then the end."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


async def run(app: Any, method: str = "POST", rpc_method: str = "tools/call") -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "headers": [], "state": {JSONRPC_METHOD_KEY: rpc_method}}
    await AnswerAsJson(app)(scope, receive, send)
    return sent


async def test_a_stream_with_only_the_answer_becomes_a_json_body() -> None:
    sent = await run(sse_app(event(RESPONSE)))
    assert len(sent) == 2
    headers = dict(sent[0]["headers"])
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"content-length"] == str(len(RESPONSE)).encode()
    assert headers[b"mcp-session-id"] == b"s1"
    assert sent[1] == {"type": "http.response.body", "body": RESPONSE, "more_body": False}
    assert json.loads(sent[1]["body"])["id"] == 7


async def test_an_error_answer_with_a_string_id_is_recognised_too() -> None:
    error = b'{"jsonrpc":"2.0","id":"a\\"b","error":{"code":-32602,"message":"Unknown tool: x"}}'
    sent = await run(sse_app(event(error)))
    assert dict(sent[0]["headers"])[b"content-type"] == b"application/json"
    assert sent[1]["body"] == error


async def test_answers_in_another_key_order_are_parsed_to_be_sure() -> None:
    reordered = b'{"id":7,"result":{},"jsonrpc":"2.0"}'
    sent = await run(sse_app(event(reordered)))
    assert sent[1]["body"] == reordered
    notification = b'{"method":"notifications/message","jsonrpc":"2.0","params":{"level":"info","data":"x"}}'
    streamed = await run(sse_app(event(notification), event(RESPONSE)))
    assert dict(streamed[0]["headers"])[b"content-type"] == b"text/event-stream"


async def test_progress_before_the_answer_keeps_the_stream() -> None:
    chunks = (event(PROGRESS), event(RESPONSE))
    sent = await run(sse_app(*chunks))
    assert sent[0]["headers"] == SSE_HEADERS
    assert [m["body"] for m in sent[1:]] == [*chunks, b""]


async def test_a_keep_alive_ping_keeps_the_stream() -> None:
    sent = await run(sse_app(b": ping - 2026-11-26\r\n\r\n", event(RESPONSE)))
    assert sent[0]["headers"] == SSE_HEADERS
    assert len(sent) == 4


async def test_a_stream_that_ends_without_events_is_passed_on() -> None:
    sent = await run(sse_app())
    assert sent[0]["headers"] == SSE_HEADERS
    assert sent[1]["more_body"] is False


async def test_other_methods_get_streams_and_json_answers_are_untouched() -> None:
    assert (await run(sse_app(event(RESPONSE)), method="GET"))[0]["headers"] == SSE_HEADERS
    assert (await run(sse_app(event(RESPONSE)), rpc_method="tools/list"))[0]["headers"] == SSE_HEADERS
    json_headers = [(b"content-type", b"application/json")]
    sent = await run(sse_app(RESPONSE, headers=json_headers))
    assert sent[0]["headers"] == json_headers
    assert [m["body"] for m in sent[1:]] == [RESPONSE, b""]
