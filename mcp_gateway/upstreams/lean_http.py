"""HTTP/1.1 keep-alive POSTs to one upstream, parsed by httptools as the bytes arrive.

Why: profiled under load, the upstream hop of a direct `tools/call` (`direct.py`) was half of the
gateway's CPU per call, and most of that was httpcore2 and h11 — a pure-Python HTTP/1.1 state
machine, async locks and pool bookkeeping per request. What a direct call needs is small: one
origin, a request line and headers mcpgw built itself, a JSON or SSE answer, the connection kept
for the next call. Each connection here is an `asyncio.Protocol`: the event loop hands it the bytes,
httptools (the C parser uvicorn already uses for the gateway's own side) parses them in that
callback, and an SSE body is cut into events there too (`SSEBytes`). The calling task is woken
only when there is something for it — the answer's first event, a whole JSON body — not for every
read; the end of an SSE stream that arrives after the answer is read by the callback alone, which
then puts the connection back in the pool (no task, timer or drain loop per call: measured, these
were ~0.1 ms of CPU per call on the benchmark's gateway).

`LeanPool.send` raises httpcore2's exceptions, so `DirectHttp` maps errors to httpx2's as for its
httpcore2 pool. It is only used where the httpcore2 pool it stands in for is a plain one
(`_httpx2.lean_settings`: no proxy, unix socket, local address, socket options or retries); its
TLS context is that pool's, so `verify`/certificates behave the same.

Connections: idle ones are reused newest first, dropped once the server has closed them or after
the pool's keep-alive expiry, and at most the pool's keep-alive limit are kept. A connection goes
back only after its response was read to the end: at once, or — an SSE answer whose stream ends a
moment after the answer event (`Exchange.release(drain=True)`) — when the end arrives, within
`DRAIN_SECONDS`, else it is closed. A response abandoned half-way (cancelled, failed) closes its
connection.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import cast

import httpcore2
import httptools

DRAIN_SECONDS = 0.05
"""How long the end of an SSE answer may take after its answer event before the connection is closed
(as `transports._DrainOnClose` waits for the SDK's own requests)."""
MAX_EVENT_BYTES = 64 * 1024 * 1024
"""An SSE event (or a whole body) larger than this fails the exchange: a stuck or hostile upstream must
not grow the gateway's memory without bound."""


@dataclass(frozen=True, slots=True)
class LeanSettings:
    """What a lean pool copies from the httpcore2 pool it stands in for."""

    host: str
    port: int
    ssl_context: ssl.SSLContext | None
    keepalive_expiry: float | None
    max_keepalive: int


class SSEBytes:
    """Server-sent events cut out of a body as it arrives: the `data` of each `message` event, as bytes.

    The WHATWG event-stream rules, on bytes: lines end in CRLF, LF or CR (a CR at the end of a chunk
    waits for the next one, which may start with its LF), a blank line ends an event, `data` lines are
    joined by LF, a field's value loses one leading space, comments and `id`/`retry` are ignored, an
    event without data is not dispatched, a leading BOM is dropped. Only `message` events (named so, or
    unnamed) are kept: the MCP streamable-HTTP transport sends nothing else.
    """

    __slots__ = ("_data", "_event", "_pending", "_size", "_skip_lf", "_started", "events")

    def __init__(self) -> None:
        self.events: deque[bytes] = deque()
        self._pending = b""
        """The unfinished last line, line ends already made LF."""
        self._skip_lf = False
        """The last chunk ended in CR: an LF starting the next one belongs to it."""
        self._data: list[bytes] = []
        self._event = b""
        self._size = 0
        self._started = False

    def feed(self, chunk: bytes) -> bool:
        """Parse `chunk`; True when it completed at least one event.

        Raises:
            httpcore2.RemoteProtocolError: an event grew beyond `MAX_EVENT_BYTES`.
        """
        if self._skip_lf:
            self._skip_lf = False
            if chunk.startswith(b"\n"):
                chunk = chunk[1:]
        if not self._started and chunk:
            self._started = True
            if chunk.startswith(b"\xef\xbb\xbf"):
                chunk = chunk[3:]
        if b"\r" in chunk:
            self._skip_lf = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._pending:
            chunk = self._pending + chunk
        lines = chunk.split(b"\n")
        self._pending = lines.pop()
        before = len(self.events)
        for line in lines:
            self._line(line)
        if len(self._pending) + self._size > MAX_EVENT_BYTES:
            raise httpcore2.RemoteProtocolError(f"an SSE event from the upstream exceeds {MAX_EVENT_BYTES} bytes")
        return len(self.events) > before

    def _line(self, line: bytes) -> None:
        if not line:
            if self._data:
                data = b"\n".join(self._data)
                if data and self._event in (b"", b"message"):
                    self.events.append(data)
                self._data = []
                self._size = 0
            self._event = b""
            return
        field, colon, value = line.partition(b":")
        if not colon:
            value = b""
        elif value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            self._data.append(value)
            self._size += len(value) + 1
        elif field == b"event":
            self._event = value
        # comments (empty field), `id`, `retry` and unknown fields: nothing the caller needs


class Exchange:
    """One request on a connection and its response as it arrives (filled in by the connection's callbacks).

    `events` (an SSE body without a content encoding) or `chunks` (any other body) hold what has arrived;
    `wait()` returns once there is more, the response is complete, or it failed.
    """

    __slots__ = (
        "_waiter",
        "chunks",
        "complete",
        "connection",
        "error",
        "headers",
        "headers_done",
        "http_version",
        "reason",
        "released",
        "sse",
        "status",
        "whole",
    )

    def __init__(self, connection: _Connection) -> None:
        self.connection = connection
        self.status = 0
        self.reason = b""
        self.http_version = b"HTTP/1.1"
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.sse: SSEBytes | None = None
        """Set when the body is an event stream without a content encoding: then parsed as it arrives."""
        self.chunks: list[bytes] = []
        self.complete = False
        self.error: Exception | None = None
        self.whole = False
        """The reader wants the whole body (`read`): no wake-up per chunk."""
        self.released = False
        self._waiter: asyncio.Future[None] | None = None

    async def wait(self) -> None:
        """Until something more arrived (headers, an event, a chunk), the response ended, or it failed.

        Raises:
            httpcore2.ReadError, httpcore2.RemoteProtocolError: the connection failed or the answer is malformed.
        """
        if self.error is None:
            waiter = self._waiter = self.connection.loop.create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        if self.error is not None:
            raise self.error

    async def read(self) -> bytes:
        """The whole body (not for SSE bodies, which are read as events)."""
        self.whole = True
        while not self.complete:
            await self.wait()
        chunks, self.chunks = self.chunks, []
        return b"".join(chunks)

    async def iter_events(self) -> AsyncGenerator[bytes, None]:
        """The data of each `message` event as it arrives (an SSE body, parsed by `SSEBytes`)."""
        assert self.sse is not None
        events = self.sse.events
        while True:
            if events:
                yield events.popleft()
            elif self.complete:
                return
            else:
                await self.wait()

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body's chunks as they arrive (a body read through `httpx2.Response`)."""
        while True:
            if self.chunks:
                chunks, self.chunks = self.chunks, []
                for chunk in chunks:
                    yield chunk
            if self.complete:
                return
            await self.wait()

    def release(self, *, drain: bool = False) -> None:
        """The reader is done. The connection goes back to the pool if the response was read to its end;
        with `drain` (an SSE answer already taken), also when the rest arrives within `DRAIN_SECONDS`."""
        if self.released:
            return
        self.released = True
        self.connection.released(self, drain=drain)

    # --- called by the connection's parser callbacks
    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def fail(self, error: Exception) -> None:
        if self.error is None and not self.complete:
            self.error = error
            self.wake()


class _Connection(asyncio.Protocol):
    """One kept-alive connection; parses each response with httptools as its bytes arrive."""

    def __init__(self, pool: LeanPool) -> None:
        self.pool = pool
        self.loop = asyncio.get_running_loop()  # made by the loop's connection factory; kept: asked per call
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.exchange: Exchange | None = None
        self.closed = False
        self.keep_alive = False
        self.idle_since = 0.0
        self._write_paused: asyncio.Future[None] | None = None
        self._drain_timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None or exchange.complete:
            self.close()  # bytes nobody asked for: the connection's state is unknown
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._broken(httpcore2.RemoteProtocolError("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self._broken(httpcore2.RemoteProtocolError(f"malformed HTTP answer: {exc}"))
        except httpcore2.RemoteProtocolError as exc:  # from a callback (an oversized event)
            self._broken(exc)

    def eof_received(self) -> bool:
        return False  # close our side too; `connection_lost` settles the exchange

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_drain_timer()
        exchange = self.exchange
        if exchange is not None and not exchange.complete:
            if exchange.headers_done and not self._framed(exchange):
                exchange.complete = True  # a body delimited by the connection's end
                exchange.wake()
            elif exc is not None:
                exchange.fail(httpcore2.ReadError(str(exc) or type(exc).__name__))
            else:
                exchange.fail(httpcore2.RemoteProtocolError("Server disconnected without sending a complete response."))
        waiter = self._write_paused
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def pause_writing(self) -> None:
        if self._write_paused is None:
            self._write_paused = self.loop.create_future()

    def resume_writing(self) -> None:
        waiter, self._write_paused = self._write_paused, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- httptools callbacks (for the exchange in progress; `data_received` checked there is one)
    def on_status(self, reason: bytes) -> None:
        assert self.exchange is not None
        self.exchange.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.exchange is not None
        self.exchange.headers.append((name, value))

    def on_headers_complete(self) -> None:
        exchange = self.exchange
        assert exchange is not None
        exchange.status = self.parser.get_status_code()
        exchange.http_version = b"HTTP/" + self.parser.get_http_version().encode()
        exchange.headers_done = True
        event_stream = False
        for name, value in exchange.headers:
            lowered = name.lower()
            if lowered == b"content-type":
                event_stream = value.partition(b";")[0].strip().lower() == b"text/event-stream"
            elif lowered == b"content-encoding":
                event_stream = False
                break
        if event_stream and 200 <= exchange.status < 300:
            exchange.sse = SSEBytes()  # its first event wakes the reader: one wake-up for headers + answer
        else:
            exchange.wake()

    def on_body(self, body: bytes) -> None:
        exchange = self.exchange
        assert exchange is not None
        sse = exchange.sse
        if sse is not None:
            if sse.feed(body):
                exchange.wake()
            return
        exchange.chunks.append(body)
        if not exchange.whole:
            exchange.wake()

    def on_message_complete(self) -> None:
        exchange = self.exchange
        assert exchange is not None
        self.keep_alive = self.parser.should_keep_alive()  # read now: the parser forgets it afterwards
        exchange.complete = True  # an event the stream ends without a blank line for is not dispatched (the spec)
        exchange.wake()
        if exchange.released:
            self._finished()

    # --- pool side
    async def send(self, data: bytes, write_timeout: float | None) -> Exchange:
        """Write one request; the exchange its response fills in."""
        assert self.transport is not None
        self._cancel_drain_timer()
        exchange = self.exchange = Exchange(self)
        try:
            self.transport.write(data)
        except OSError as exc:
            self.close()
            raise httpcore2.WriteError(str(exc) or type(exc).__name__) from exc
        if self._write_paused is not None:
            try:
                async with asyncio.timeout(write_timeout):
                    await self._write_paused
            except TimeoutError:
                self.close()
                raise httpcore2.WriteTimeout("timed out sending the request") from None
            if self.closed:
                raise httpcore2.WriteError("the connection closed while sending the request")
        return exchange

    def released(self, exchange: Exchange, *, drain: bool) -> None:
        if exchange is not self.exchange:
            return
        if exchange.complete and exchange.error is None:
            self._finished()
        elif drain and exchange.error is None and not self.closed:
            # The rest of the stream is read by `on_message_complete`, which then gives the connection back.
            self._drain_timer = self.loop.call_later(DRAIN_SECONDS, self.close)
        else:
            self.close()

    def _finished(self) -> None:
        self._cancel_drain_timer()
        self.exchange = None
        if self.keep_alive and not self.closed:
            self.pool.idle(self)
        else:
            self.close()

    def _cancel_drain_timer(self) -> None:
        timer, self._drain_timer = self._drain_timer, None
        if timer is not None:
            timer.cancel()

    def _broken(self, error: Exception) -> None:
        if self.exchange is not None:
            self.exchange.fail(error)
        self.close()

    @staticmethod
    def _framed(exchange: Exchange) -> bool:
        """Whether the response says where its body ends (else the connection's end does)."""
        return any(name.lower() in (b"content-length", b"transfer-encoding") for name, _ in exchange.headers)

    def close(self) -> None:
        self._cancel_drain_timer()
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()


class LeanPool:
    """Keep-alive HTTP/1.1 connections to one origin."""

    def __init__(self, settings: LeanSettings, timeouts: dict[str, float | None]) -> None:
        self._settings = settings
        self._connect_timeout = timeouts.get("connect")
        self._write_timeout = timeouts.get("write")
        self._idle: list[_Connection] = []
        self._closed = False

    async def send(self, data: bytes) -> Exchange:
        """Send one request (`data`: request line, headers, blank line and body) on an idle connection or a
        new one; read the response through the returned exchange and `release` it when done.

        Raises:
            httpcore2.ConnectError, httpcore2.ConnectTimeout, httpcore2.WriteError, httpcore2.WriteTimeout
        """
        connection = self._take() or await self._connect()
        return await connection.send(data, self._write_timeout)

    def idle(self, connection: _Connection) -> None:
        """A connection whose response was read to its end: kept for the next request, if there is room."""
        if not self._closed and len(self._idle) < self._settings.max_keepalive:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            connection.close()

    def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()

    def _take(self) -> _Connection | None:
        expiry = self._settings.keepalive_expiry
        now = time.monotonic() if expiry is not None else 0.0
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and (expiry is None or now - connection.idle_since < expiry):
                return connection
            connection.close()
        return None

    async def _connect(self) -> _Connection:
        settings = self._settings
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                transport, connection = await loop.create_connection(
                    lambda: _Connection(self),
                    settings.host,
                    settings.port,
                    ssl=settings.ssl_context,
                    server_hostname=settings.host if settings.ssl_context is not None else None,
                )
        except TimeoutError:
            raise httpcore2.ConnectTimeout(f"timed out connecting to {settings.host}:{settings.port}") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpcore2.ConnectError(str(exc) or type(exc).__name__) from exc
        connection.transport = transport  # uvloop may call `connection_made` only after this returns
        return connection
