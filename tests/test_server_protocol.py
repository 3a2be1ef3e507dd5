"""`http/server_protocol.py`: a response's head goes out with its body in one write, and never later
than the end of the event loop's turn; `mcpgw serve` and the tests' servers run uvicorn with it."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import pytest

from mcp_gateway.http.server_protocol import HeadHoldingTransport, protocol_class
from tests.serving import free_port, serve_asgi

pytestmark = pytest.mark.anyio


class _Recording:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default


HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


async def test_head_and_body_written_in_one_turn_go_out_together() -> None:
    inner = _Recording()
    transport = HeadHoldingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(HEAD)
    assert inner.writes == []
    transport.write(b"{}")
    assert inner.writes == [HEAD + b"{}"]
    await asyncio.sleep(0)
    assert inner.writes == [HEAD + b"{}"]  # nothing left to flush


async def test_a_head_alone_goes_out_at_the_end_of_the_turn_and_before_a_close() -> None:
    inner = _Recording()
    transport = HeadHoldingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(HEAD)
    await asyncio.sleep(0)
    assert inner.writes == [HEAD]
    transport.write(HEAD)
    transport.close()
    assert inner.writes == [HEAD, HEAD] and inner.closed
    assert transport.get_extra_info("peername") == ("127.0.0.1", 1)  # the rest is the transport's own


async def test_body_bytes_that_look_like_a_head_are_not_held_without_the_blank_line() -> None:
    inner = _Recording()
    transport = HeadHoldingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 is a protocol")
    assert inner.writes == [b"HTTP/1.1 is a protocol"]


async def test_uvicorn_serves_through_it() -> None:
    cls = protocol_class()
    assert cls is not None
    seen: list[object] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"first ", "more_body": True})
        await asyncio.sleep(0.01)  # the head is out long before this
        await send({"type": "http.response.body", "body": b"second"})

    async with serve_asgi(app, free_port(), lifespan="off") as url, httpx2.AsyncClient() as client:
        for _ in range(2):  # keep-alive: the second response on the same connection
            response = await client.get(url + "/")
            assert response.status_code == 200 and response.text == "first second"
    assert len(seen) == 2
