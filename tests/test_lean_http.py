"""The lean upstream pool (`upstreams/lean_http.py`): its SSE cutting agrees with httpx2's parser, and
connections are kept, drained and dropped as its docstring says, against a raw TCP server."""

from __future__ import annotations

import json

import anyio
import anyio.abc
import httpcore2
import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_gateway.upstreams import lean_http
from mcp_gateway.upstreams.direct import DirectHttp
from mcp_gateway.upstreams.lean_http import LeanPool, LeanSettings, SSEBytes
from mcp_gateway.upstreams.transports import _DrainingTransport, _plain_pool
from tests.serving import read_http_request

_line_ends = st.sampled_from(["\n", "\r\n", "\r"])
_values = st.text(alphabet=st.sampled_from([*'ab :é{}"1', "\u2603"]), max_size=12)
_lines = st.one_of(
    st.tuples(
        st.sampled_from(["data", "data:", "data: ", "event: ", "event:", "id: ", "retry: ", ": ", "x: "]), _values
    ),
    st.tuples(st.just(""), st.just("")),  # a blank line: the end of an event
)


def _httpx2_events(body: str) -> list[bytes]:
    """What httpx2's own parser (the one `EventSource` runs) makes of `body`, as the lean path keeps it."""
    from httpx2._sse import _SSEParser

    parser = _SSEParser(lean_http.MAX_EVENT_BYTES)
    events = [*parser.decode(body), *parser.flush()]
    return [e.data.encode() for e in events if e.event == "message" and e.data]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_lines, _line_ends), max_size=14),
    st.lists(st.integers(min_value=0, max_value=400), max_size=6),
    st.booleans(),
)
def test_sse_bytes_cuts_events_as_httpx2_does(
    lines: list[tuple[tuple[str, str], str]], cuts: list[int], after_each_cr: bool
) -> None:
    """Any mix of fields and line ends (CR, LF, CRLF), cut into chunks anywhere (inside a CRLF or a UTF-8
    character too): the same `message` events as httpx2's parser. The stream ends with a blank line: at an
    unterminated end httpx2 dispatches an event after a lone CR, which the event-stream spec does not."""
    body = "".join(field + value + end for (field, value), end in lines)
    raw = body.encode()
    parser = SSEBytes()
    if after_each_cr:  # the hard case: a CRLF cut in two
        cuts = [*cuts, *(i + 1 for i, byte in enumerate(raw) if byte == 13)]
    points = sorted({min(c, len(raw)) for c in cuts})
    for start, end in zip([0, *points], [*points, len(raw)], strict=True):
        parser.feed(raw[start:end])
    parser.feed(b"\n\n")
    assert list(parser.events) == _httpx2_events(body + "\n\n")


def test_sse_bytes_refuses_an_endless_event(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lean_http, "MAX_EVENT_BYTES", 100)
    parser = SSEBytes()
    parser.feed(b"data: " + b"x" * 60 + b"\n")
    with pytest.raises(httpcore2.RemoteProtocolError, match="exceeds 100 bytes"):
        parser.feed(b"data: " + b"x" * 60)


def _answer(note: str) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": "x", "result": {"content": [], "note": note}}).encode()


def _chunked_sse(note: str) -> tuple[bytes, bytes]:
    """An SSE answer as the SDK's servers send it: head and event in one write, the stream's end in another."""
    event = b"event: message\r\ndata: " + _answer(note) + b"\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    return head + b"%x\r\n%s\r\n" % (len(event), event), b"0\r\n\r\n"


async def _serve_calls(end_after: float | None, calls: int) -> tuple[list[str], int, list[float]]:
    """`calls` direct calls against a server that ends each SSE answer `end_after` s after its event (never:
    None); returns the notes answered, how many connections the server saw, and each call's duration."""
    accepted: list[object] = []
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def serve(stream: anyio.abc.SocketStream) -> None:
        accepted.append(stream)
        async with stream:
            buffer = b""
            try:
                while True:
                    _, buffer = await read_http_request(stream, buffer)
                    first, end = _chunked_sse(f"call {len(accepted)}")
                    await stream.send(first)
                    if end_after is None:
                        await anyio.sleep_forever()
                    await anyio.sleep(end_after)
                    await stream.send(end)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return

    url = f"http://127.0.0.1:{port}/mcp"
    notes: list[str] = []
    took: list[float] = []
    transport = _DrainingTransport(httpx2.AsyncHTTPTransport())
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, serve)
        async with httpx2.AsyncClient(transport=transport) as client:
            direct = DirectHttp(client, url, _plain_pool(client, url, transport, None))
            assert direct._lean is not None
            direct.protocol_version, direct.session_id = "2025-06-18", "s-1"

            async def on_message(message: object) -> None:
                raise AssertionError(message)

            for _ in range(calls):
                started = anyio.current_time()
                result = await direct.request(direct.next_id(), "tools/call", {"name": "t"}, on_message)
                took.append(anyio.current_time() - started)
                notes.append(result["note"])
                await anyio.sleep(0.15)  # past the drain time: a stream not ended by now is abandoned
            direct.close()
        group.cancel_scope.cancel()
    return notes, len(accepted), took


@pytest.mark.anyio
async def test_a_stream_that_ends_just_after_the_answer_keeps_its_connection() -> None:
    notes, connections, _ = await _serve_calls(0.01, 3)
    assert notes == ["call 1", "call 1", "call 1"] and connections == 1


@pytest.mark.anyio
async def test_a_stream_that_never_ends_is_answered_at_once_and_its_connection_dropped() -> None:
    notes, connections, took = await _serve_calls(None, 3)
    assert notes == ["call 1", "call 2", "call 3"] and connections == 3
    assert max(took) < 1.0  # the answer did not wait for the stream's end


@pytest.mark.anyio
async def test_an_idle_connection_the_server_closed_is_not_reused() -> None:
    """The server closes each connection after its answer: every call gets a new one, none fails."""
    served = 0
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def serve(stream: anyio.abc.SocketStream) -> None:
        nonlocal served
        async with stream:
            buffer = b""
            while b"\r\n\r\n" not in buffer:
                buffer += await stream.receive()
            body = _answer("ok")
            served += 1
            await stream.send(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
            )
            await anyio.sleep(0.01)

    settings_ = LeanSettings(host="127.0.0.1", port=port, ssl_context=None, keepalive_expiry=None, max_keepalive=4)
    pool = LeanPool(settings_, {"connect": 5.0, "write": 5.0})
    request = b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, serve)
        for _ in range(3):
            exchange = await pool.send(request)
            body = await exchange.read()
            exchange.release()
            assert json.loads(body)["result"]["note"] == "ok"
            await anyio.sleep(0.1)  # the server's close arrives while the connection is idle
        pool.close()
        group.cancel_scope.cancel()
    assert served == 3
