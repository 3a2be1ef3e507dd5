"""Open the byte-level connection to an upstream, by transport kind.

Each function yields the SDK's `(read_stream, write_stream)` pair; the caller owns the
`ClientSession` on top. Streamable HTTP adds a third element, a `DirectHttp` for plain POSTs on
the same session (see `direct.py`). Keeping this apart from the connection lifecycle means a
new transport kind is one function here and nothing else changes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import httpcore2
import httpx2
from mcp import StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from mcp_gateway.config import HttpUpstream, SseUpstream, StdioUpstream
from mcp_gateway.tracing import inject_trace_headers
from mcp_gateway.upstreams import _httpx2
from mcp_gateway.upstreams.direct import DirectHttp

# A server may hold a response stream open while a long tool runs, and the standalone GET
# stream stays open for the whole session: reads must not time out at the HTTP layer. Call
# timeouts are enforced per request by the session instead.
_STREAM_READ_TIMEOUT = 24 * 3600.0
# The DELETE that ends a session on disconnect: an upstream that stopped answering must not
# hold the reconnect up for the stream read timeout above.
_CLOSE_TIMEOUT = 2.0

_TIMEOUT_KEYS = ("connect", "read", "write", "pool")

Streams = tuple[Any, ...]
"""`(read_stream, write_stream)`, plus a `DirectHttp` for streamable HTTP."""


def open_transport(
    config: StdioUpstream | HttpUpstream | SseUpstream, auth: httpx2.Auth | None = None
) -> AbstractAsyncContextManager[Streams]:
    """`auth` (HTTP kinds only) adds a caller's credentials to every request of the session."""
    if isinstance(config, StdioUpstream):
        return _stdio(config)
    if isinstance(config, HttpUpstream):
        return _streamable_http(config, auth)
    return _sse(config, auth)


@asynccontextmanager
async def _stdio(config: StdioUpstream) -> AsyncIterator[Streams]:
    params = StdioServerParameters(command=config.command, args=config.args, env=config.env or None, cwd=config.cwd)
    async with stdio_client(params) as streams:
        yield streams


@asynccontextmanager
async def _streamable_http(config: HttpUpstream, auth: httpx2.Auth | None) -> AsyncIterator[Streams]:
    timeout = httpx2.Timeout(config.connect_timeout, read=_STREAM_READ_TIMEOUT)
    # Enough keep-alive connections for a burst of concurrent calls: opening a new TCP
    # connection per call costs more than the call itself on loopback.
    limits = httpx2.Limits(max_connections=256, max_keepalive_connections=64)
    transport = _DrainingTransport(httpx2.AsyncHTTPTransport(limits=limits))
    async with (
        httpx2.AsyncClient(
            headers=config.headers,
            timeout=timeout,
            transport=transport,
            auth=auth,
            # The SDK sends each POST from the calling task's context: its span becomes the parent.
            event_hooks={"request": [inject_trace_headers]},
        ) as client,
        streamable_http_client(config.url, http_client=client) as (read, write),
    ):
        transport.direct = DirectHttp(client, config.url, _plain_pool(client, config.url, transport, auth))
        try:
            yield read, write, transport.direct
        finally:
            transport.direct.close()


def _plain_pool(
    client: httpx2.AsyncClient, url: str, transport: _DrainingTransport, auth: httpx2.Auth | None
) -> httpcore2.AsyncConnectionPool | None:
    """The connection pool `DirectHttp` may POST to directly: only when the client would add
    nothing but headers to the request (no auth flow, no proxy mount, only the trace header hook)."""
    inner = transport.inner
    if auth is not None or not isinstance(inner, httpx2.AsyncHTTPTransport):
        return None
    if _httpx2.transport_for_url(client, url) is not transport:  # e.g. a proxy from the environment
        return None
    return _httpx2.connection_pool(inner)


@asynccontextmanager
async def _sse(config: SseUpstream, auth: httpx2.Auth | None) -> AsyncIterator[Streams]:
    async with sse_client(
        config.url,
        headers=config.headers,
        auth=auth,
        timeout=config.connect_timeout,
        sse_read_timeout=_STREAM_READ_TIMEOUT,
        httpx_client_factory=_traced_client,
    ) as streams:
        yield streams


def _traced_client(
    headers: dict[str, str] | None = None, timeout: httpx2.Timeout | None = None, auth: httpx2.Auth | None = None
) -> httpx2.AsyncClient:
    """The SDK's default client for the SSE transport (it always passes a timeout), plus trace headers."""
    hooks: dict[str, list[Any]] = {"request": [inject_trace_headers]}
    return httpx2.AsyncClient(headers=headers, timeout=timeout, auth=auth, event_hooks=hooks)


class _DrainingTransport(httpx2.AsyncBaseTransport):
    """Lets a POST's SSE response finish before it is closed, so its connection is kept alive
    (and bounds the session-closing DELETE by `_CLOSE_TIMEOUT`).

    The SDK client closes a call's event stream as soon as the result event arrives, a moment
    before the server ends the stream. httpx2 can only return a connection to the pool once its
    body is fully read, so every call would open (and the upstream accept) a new TCP connection.
    Reading the few remaining bytes, briefly, turns that back into keep-alive.
    """

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner
        self.direct: DirectHttp | None = None
        """Told the session headers of each request the SDK sends."""

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if self.direct is not None:
            self.direct.observe(request)
        if request.method == "DELETE":
            request.extensions = {**request.extensions, "timeout": dict.fromkeys(_TIMEOUT_KEYS, _CLOSE_TIMEOUT)}
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and response.headers.get("content-type", "").startswith("text/event-stream"):
            response.stream = _DrainOnClose(response.stream)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class _DrainOnClose(httpx2.AsyncByteStream):
    _DRAIN_SECONDS = 0.05

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._iterator: Any = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self._iterator = self._inner.__aiter__()
        async for chunk in self._iterator:
            yield chunk

    async def aclose(self) -> None:
        if self._iterator is not None:
            with anyio.move_on_after(self._DRAIN_SECONDS):
                async for _ in self._iterator:
                    pass
        await self._inner.aclose()
