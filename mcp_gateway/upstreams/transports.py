"""Open the byte-level connection to an upstream, by transport kind.

Each function yields the SDK's `(read_stream, write_stream)` pair; the caller owns the
`ClientSession` on top. Keeping this apart from the connection lifecycle means a new transport
kind is one function here and nothing else changes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx2
from mcp import StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from mcp_gateway.config import HttpUpstream, SseUpstream, StdioUpstream

# A server may hold a response stream open while a long tool runs, and the standalone GET
# stream stays open for the whole session: reads must not time out at the HTTP layer. Call
# timeouts are enforced per request by the session instead.
_STREAM_READ_TIMEOUT = 24 * 3600.0

Streams = tuple[Any, Any]


def open_transport(config: StdioUpstream | HttpUpstream | SseUpstream) -> AbstractAsyncContextManager[Streams]:
    if isinstance(config, StdioUpstream):
        return _stdio(config)
    if isinstance(config, HttpUpstream):
        return _streamable_http(config)
    return _sse(config)


@asynccontextmanager
async def _stdio(config: StdioUpstream) -> AsyncIterator[Streams]:
    params = StdioServerParameters(command=config.command, args=config.args, env=config.env or None, cwd=config.cwd)
    async with stdio_client(params) as streams:
        yield streams


@asynccontextmanager
async def _streamable_http(config: HttpUpstream) -> AsyncIterator[Streams]:
    timeout = httpx2.Timeout(config.connect_timeout, read=_STREAM_READ_TIMEOUT)
    # Enough keep-alive connections for a burst of concurrent calls: opening a new TCP
    # connection per call costs more than the call itself on loopback.
    limits = httpx2.Limits(max_connections=256, max_keepalive_connections=64)
    async with (
        httpx2.AsyncClient(headers=config.headers, timeout=timeout, limits=limits) as client,
        streamable_http_client(config.url, http_client=client) as streams,
    ):
        yield streams


@asynccontextmanager
async def _sse(config: SseUpstream) -> AsyncIterator[Streams]:
    async with sse_client(
        config.url, headers=config.headers, timeout=config.connect_timeout, sse_read_timeout=_STREAM_READ_TIMEOUT
    ) as streams:
        yield streams
