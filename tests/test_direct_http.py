"""tools/call to a streamable-HTTP upstream as a plain POST (`upstreams/direct.py`): same behaviour as the SDK path."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import anyio
import anyio.abc
import httpx2
import mcp_types as types
import pytest

from mcp_gateway.tracing import inject_trace_headers
from mcp_gateway.upstreams.direct import DirectHttp
from mcp_gateway.upstreams.transports import _DrainingTransport, _plain_pool
from tests.conftest import LAB_SERVER, mcp_client, running_gateway, text_of, upstream_process
from tests.serving import read_http_request

pytestmark = pytest.mark.anyio


async def test_calls_go_direct_on_the_sdk_session_with_its_headers() -> None:
    async with (
        upstream_process(LAB_SERVER, "http") as url,
        running_gateway({"lab": {"transport": "http", "url": url, "headers": {"X-Team": "blue"}}}) as gw,
        mcp_client(gw.url) as client,
    ):
        assert gw.gateway.manager.connections["lab"].calls_directly
        headers = json.loads(text_of(await client.call_tool("lab-whoami", {})))
        assert headers["mcp-session-id"] and headers["mcp-protocol-version"]
        assert headers["x-team"] == "blue"
        assert text_of(await client.call_tool("lab-echo", {"text": "hi"})) == "hi"
        refused = await client.call_tool("lab-echo", {"text": 3})
        assert refused.is_error


async def test_logs_and_progress_during_a_call_reach_the_caller() -> None:
    logs: list[types.LoggingMessageNotificationParams] = []
    seen: list[float] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params)

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with (
        upstream_process(LAB_SERVER, "http") as url,
        running_gateway({"lab": {"transport": "http", "url": url}}) as gw,
        mcp_client(gw.url, logging_callback=on_log) as client,
    ):
        await client.call_tool("lab-log", {"level": "warning", "message": "disk almost full"})
        assert logs and logs[-1].level == "warning" and "disk almost full" in json.dumps(logs[-1].data)
        result = await client.call_tool("lab-progress", {"steps": 3}, progress_callback=on_progress)
        assert text_of(result) == "ok" and seen == [1, 2, 3]


async def test_a_cancelled_call_is_cancelled_upstream(tmp_path: Path) -> None:
    events = tmp_path / "events.log"
    async with (
        upstream_process(LAB_SERVER, "http", env={"LAB_EVENT_LOG": str(events)}) as url,
        running_gateway({"lab": {"transport": "http", "url": url}}) as gw,
        mcp_client(gw.url) as client,
    ):
        with anyio.move_on_after(1):
            await client.call_tool("lab-slow", {"seconds": 30})
        with anyio.fail_after(10):
            while "cancelled" not in events.read_text():
                await anyio.sleep(0.05)
        assert text_of(await client.call_tool("lab-echo", {"text": "still here"})) == "still here"


async def test_a_call_that_times_out_fails_clearly_and_is_cancelled_upstream(tmp_path: Path) -> None:
    events = tmp_path / "events.log"
    async with (
        upstream_process(LAB_SERVER, "http", env={"LAB_EVENT_LOG": str(events)}) as url,
        running_gateway({"lab": {"transport": "http", "url": url, "timeout": 0.5}}) as gw,
        mcp_client(gw.url) as client,
    ):
        started = time.monotonic()
        result = await client.call_tool("lab-slow", {"seconds": 20})
        assert result.is_error and "'lab'" in text_of(result) and "0.5s" in text_of(result)
        assert time.monotonic() - started < 5
        with anyio.fail_after(10):
            while "cancelled" not in events.read_text():
                await anyio.sleep(0.05)
        assert text_of(await client.call_tool("lab-echo", {"text": "after timeout"})) == "after timeout"


async def test_an_upstream_dying_mid_call_fails_that_call_cleanly() -> None:
    async with (
        upstream_process(LAB_SERVER, "http") as url,
        running_gateway({"fragile": {"transport": "http", "url": url}}) as gw,
        mcp_client(gw.url) as client,
    ):
        started = time.monotonic()
        crashed = await client.call_tool("fragile-crash", {})
        assert crashed.is_error and "'fragile'" in text_of(crashed)
        assert time.monotonic() - started < 5


@pytest.mark.parametrize("lean", [True, False], ids=["lean pool", "httpcore2 pool"])
async def test_the_pool_path_reads_what_the_client_would_read(lean: bool) -> None:
    """The POST made without the client (on the lean pool, or on the client's own httpcore2 pool): same headers,
    gzip and cookies handled as httpx2 does, keep-alive connections reused."""
    answer = json.dumps(
        {"jsonrpc": "2.0", "id": "x", "result": {"content": [], "note": "é"}}, ensure_ascii=False
    ).encode()
    sse = b"event: message\r\ndata: " + answer + b"\r\n\r\n"
    split = sse.index("é".encode()) + 1  # a chunk boundary inside a UTF-8 character
    responses = [
        [
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
            b"%x\r\n%s\r\n" % (split, sse[:split]),
            b"%x\r\n%s\r\n0\r\n\r\n" % (len(sse) - split, sse[split:]),
        ],
        [
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n"
            b"set-cookie: lb=7; Path=/\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(gzip.compress(answer)), gzip.compress(answer))
        ],
        [b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(answer), answer)],
    ]
    requests: list[bytes] = []
    connections: list[object] = []
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def serve(stream: anyio.abc.SocketStream) -> None:
        connections.append(stream)
        async with stream:
            buffer = b""
            while responses:
                head, buffer = await read_http_request(stream, buffer)
                requests.append(head)
                for part in responses.pop(0):
                    await stream.send(part)
                    await anyio.sleep(0.01)

    url = f"http://127.0.0.1:{port}/mcp"
    transport = _DrainingTransport(httpx2.AsyncHTTPTransport())
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, serve)
        async with httpx2.AsyncClient(
            headers={"X-Team": "blue"}, transport=transport, event_hooks={"request": [inject_trace_headers]}
        ) as client:
            pool = _plain_pool(client, url, transport, None)
            assert pool is not None and _plain_pool(client, url, transport, httpx2.Auth()) is None
            direct = DirectHttp(client, url, pool, lean=lean)
            assert (direct._lean is not None) is lean
            direct.protocol_version, direct.session_id = "2025-06-18", "s-1"

            async def on_message(message: object) -> None:
                raise AssertionError(message)

            for _ in range(3):  # SSE split mid-character; gzip + cookie (read through httpx2); then the cookie is sent
                result = await direct.request(direct.next_id(), "tools/call", {"name": "t"}, on_message)
                assert result["note"] == "é"
            direct.close()  # as the upstream's transport does when it closes
        group.cancel_scope.cancel()
    # One keep-alive connection for the pool path's two calls; the third (with the cookie) goes through the
    # client, on the client's pool: the same connection when that is also the pool path's.
    assert len(requests) == 3 and len(connections) == (2 if lean else 1)
    first = requests[0].lower()
    for header in (
        b"host: 127.0.0.1:",
        b"x-team: blue",
        b"mcp-session-id: s-1",
        b"mcp-protocol-version: 2025-06-18",
        b"accept: application/json, text/event-stream",
        b"content-type: application/json",
    ):
        assert header in first, header
    assert b"cookie: lb=7" in requests[2].lower() and b"cookie" not in first
