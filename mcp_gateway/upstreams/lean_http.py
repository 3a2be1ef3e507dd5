"""HTTP/1.1 keep-alive POSTs to one upstream over asyncio streams, parsed by httptools.

Why: profiled under load, the upstream hop of a direct `tools/call` (`direct.py`) was half of the
gateway's CPU per call, and most of that was httpcore2 and h11 — a pure-Python HTTP/1.1 state
machine, async locks and pool bookkeeping per request. The same POST on a kept-alive asyncio
stream with httptools (the C parser uvicorn already uses for the gateway's own side) costs about
a sixth of it (`benchmarks/proxy_overhead.py`, see docs/architecture.md). What a direct call
needs is small: one origin, a request line and headers mcpgw built itself, a JSON or SSE answer
read as it arrives, the connection kept for the next call.

`LeanPool.post` returns an object shaped like httpcore2's response (`status`, `headers`,
`extensions`, `stream`) and raises httpcore2's exceptions, so `DirectHttp` treats both the same
way and maps errors to httpx2's as before. It is only used where the httpcore2 pool it stands in
for is a plain one (`_httpx2.lean_settings`: no proxy, unix socket, local address, socket options
or retries); its TLS context is that pool's, so `verify`/certificates behave the same.

Connections: idle ones are reused newest first, dropped once the server has closed them or after
the pool's keep-alive expiry, and at most the pool's keep-alive limit are kept. A connection goes
back only after its response was read to the end; a response abandoned half-way (cancelled, or an
SSE stream the caller stops reading) closes its connection.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpcore2
import httptools

_READ_SIZE = 65536


@dataclass(frozen=True, slots=True)
class LeanSettings:
    """What a lean pool copies from the httpcore2 pool it stands in for."""

    host: str
    port: int
    ssl_context: ssl.SSLContext | None
    keepalive_expiry: float | None
    max_keepalive: int


class _Connection:
    """One kept-alive connection and the parse state of the response being read on it."""

    __slots__ = (
        "chunks",
        "complete",
        "headers",
        "headers_done",
        "idle_since",
        "keep_alive",
        "parser",
        "reader",
        "reason",
        "writer",
    )

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0
        self.start()

    def start(self) -> None:
        """A fresh parse state for the next response."""
        self.parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.reason = b""
        self.headers_done = False
        self.complete = False
        self.keep_alive = False

    # httptools callbacks
    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()  # read now: the parser forgets it afterwards

    async def read_more(self, read_timeout: float | None) -> None:
        """Read what the server sent next and parse it.

        Raises:
            httpcore2.ReadTimeout, httpcore2.ReadError, httpcore2.RemoteProtocolError
        """
        try:
            if read_timeout is None:
                data = await self.reader.read(_READ_SIZE)
            else:
                async with asyncio.timeout(read_timeout):
                    data = await self.reader.read(_READ_SIZE)
        except TimeoutError:
            raise httpcore2.ReadTimeout("timed out reading the upstream's answer") from None
        except OSError as exc:
            raise httpcore2.ReadError(str(exc) or type(exc).__name__) from exc
        parser = self.parser
        if not data:
            if self.headers_done and not self._framed():
                self.complete = True  # a body delimited by the connection's end
                return
            raise httpcore2.RemoteProtocolError("Server disconnected without sending a complete response.")
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise httpcore2.RemoteProtocolError("the upstream switched protocols") from None
        except httptools.HttpParserError as exc:
            raise httpcore2.RemoteProtocolError(f"malformed HTTP answer: {exc}") from None

    def _framed(self) -> bool:
        """Whether the response says where its body ends (else the connection's end does)."""
        return any(name.lower() in (b"content-length", b"transfer-encoding") for name, _ in self.headers)

    def reusable(self, now: float, expiry: float | None) -> bool:
        if self.reader.at_eof() or self.writer.is_closing():
            return False
        return expiry is None or now - self.idle_since < expiry

    def close(self) -> None:
        self.writer.close()


class LeanPool:
    """Keep-alive HTTP/1.1 connections to one origin."""

    def __init__(self, settings: LeanSettings, timeouts: dict[str, float | None]) -> None:
        self._settings = settings
        self._connect_timeout = timeouts.get("connect")
        self._read_timeout = timeouts.get("read")
        self._write_timeout = timeouts.get("write")
        self._idle: list[_Connection] = []
        self._closed = False

    async def post(self, head: bytes, body: bytes) -> LeanResponse:
        """Send one request (`head`: request line and headers, ending in the blank line) and read
        its status and headers; the body is read through the response's `stream`.

        Raises:
            httpcore2.ConnectError, httpcore2.ConnectTimeout, httpcore2.WriteError,
            httpcore2.ReadError, httpcore2.ReadTimeout, httpcore2.RemoteProtocolError
        """
        connection = self._take() or await self._connect()
        connection.start()
        try:
            writer = connection.writer
            try:
                writer.write(head + body)
                if writer.transport.get_write_buffer_size():
                    async with asyncio.timeout(self._write_timeout):
                        await writer.drain()
            except TimeoutError:
                raise httpcore2.WriteTimeout("timed out sending the request") from None
            except OSError as exc:
                raise httpcore2.WriteError(str(exc) or type(exc).__name__) from exc
            while not connection.headers_done:
                await connection.read_more(self._read_timeout)
        except BaseException:
            connection.close()
            raise
        parser = connection.parser
        return LeanResponse(
            status=parser.get_status_code(),
            headers=connection.headers,
            extensions={
                "reason_phrase": connection.reason,
                "http_version": b"HTTP/" + parser.get_http_version().encode(),
            },
            stream=LeanBody(self, connection, self._read_timeout),
        )

    def release(self, connection: _Connection) -> None:
        """Back to the idle list after a response read to its end (or closed when it cannot be reused)."""
        keep = not self._closed and connection.keep_alive and not connection.reader.at_eof()
        if keep and len(self._idle) < self._settings.max_keepalive and not connection.writer.is_closing():
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            connection.close()

    def close(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()

    def _take(self) -> _Connection | None:
        now = time.monotonic()
        expiry = self._settings.keepalive_expiry
        while self._idle:
            connection = self._idle.pop()
            if connection.reusable(now, expiry):
                return connection
            connection.close()
        return None

    async def _connect(self) -> _Connection:
        settings = self._settings
        try:
            async with asyncio.timeout(self._connect_timeout):
                reader, writer = await asyncio.open_connection(
                    settings.host,
                    settings.port,
                    ssl=settings.ssl_context,
                    server_hostname=settings.host if settings.ssl_context is not None else None,
                    limit=_READ_SIZE,
                )
        except TimeoutError:
            raise httpcore2.ConnectTimeout(f"timed out connecting to {settings.host}:{settings.port}") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpcore2.ConnectError(str(exc) or type(exc).__name__) from exc
        return _Connection(reader, writer)


@dataclass(slots=True)
class LeanResponse:
    """The parts of an httpcore2 response `DirectHttp` reads."""

    status: int
    headers: list[tuple[bytes, bytes]]
    extensions: dict[str, Any]
    stream: LeanBody


class LeanBody:
    """A response body as it arrives; the connection goes back to the pool once it was read to the end."""

    __slots__ = ("_connection", "_done", "_pool", "_timeout")

    def __init__(self, pool: LeanPool, connection: _Connection, timeout: float | None) -> None:
        self._pool = pool
        self._connection = connection
        self._timeout = timeout
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        try:
            while True:
                if connection.chunks:
                    chunks, connection.chunks = connection.chunks, []
                    for chunk in chunks:
                        yield chunk
                if connection.complete:
                    break
                await connection.read_more(self._timeout)
        except BaseException:
            self._finish(reuse=False)
            raise
        self._finish(reuse=True)

    async def aclose(self) -> None:
        """Give the connection back if the body was read to its end; otherwise close it."""
        self._finish(reuse=self._connection.complete and not self._connection.chunks)

    def _finish(self, *, reuse: bool) -> None:
        if self._done:
            return
        self._done = True
        if reuse:
            self._pool.release(self._connection)
        else:
            self._connection.close()
