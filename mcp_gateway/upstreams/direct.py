"""`tools/call` to a streamable-HTTP upstream as one plain POST, beside the SDK session.

Through `ClientSession.send_request` a call passes a request model dump, the dispatcher (a
pending-response stream, an OpenTelemetry span), the transport's write stream, a task group
and a task per message in the transport's `post_writer`, a redirect-checking request wrapper,
an SSE parse with a model validation of every event, and the read stream back. Measured on
the lab upstream: ~1.7 ms CPU per call, against ~1.0 ms for the same POST made directly with
the same httpx2 client. The gateway makes one such call per client call, so this is the
single largest cost of the hop.

`DirectHttp` makes the POST itself, on the session the SDK opened and keeps: same client
(headers, trace header hook, keep-alive pool), the session id and protocol version the SDK's
own requests carry (`observe` reads them off each outgoing request), a JSON-RPC id of its own
(`mcpgw-<n>`, which cannot collide with the SDK's integers). The answer is checked the way the
SDK checks it (`validate_server_result`, later-revision fields dropped). Whatever else arrives
on the call's stream is handled in the calling task, in order, before the stream is read on:
log messages are relayed to the caller right there (so they reach the client ahead of the
answer, as through the SDK), anything else — server→client requests (sampling, elicitation,
roots), other notifications — is handed to the SDK session (`MergedInbound.deliver`) with the
calling task's context, exactly as if it had come through the SDK transport, so relaying and
attribution are unchanged.

Only used when it is plainly equivalent: a handshake-era session (2024-11-05 … 2025-11-25)
whose headers have been seen, a call without a progress callback (progress stays with the
SDK, which owns the token bookkeeping). A redirect turns the path off for the upstream and the
call goes through the SDK, which follows same-origin redirects.

When the client would add nothing but headers to the POST (no auth flow, no proxy, only the
trace header hook: `transports._plain_pool`), the POST skips httpx2's client machinery (request
and response models, auth flow, hooks, cookie handling) and goes to the client's httpcore2
connection pool with the headers the client would have sent: another ~0.6 ms CPU per call on
the benchmark's gateway (`_raw_request`). Answers with a content encoding, cookies or a charset
other than UTF-8 are still read through an `httpx2.Response`; once the upstream has set a
cookie, calls go through the client again.

The SDK and httpx2 internals this takes are reached only through `_sdk_client.py` and
`_httpx2.py`; without them (an upgrade removed one) the direct path, or its pool shortcut, is off.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import itertools
import logging
import os
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
)
from typing import Any, cast

import httpcore2
import httpx2
import pydantic_core
from httpx2 import ServerSentEvent
from mcp import MCPError
from mcp_types import (
    CONNECTION_CLOSED,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    PARSE_ERROR,
    ErrorData,
    JSONRPCMessage,
    jsonrpc_message_adapter,
)
from mcp_types import methods as _methods
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from opentelemetry import propagate
from pydantic import TypeAdapter, ValidationError

from mcp_gateway.tracing import trace_context_active
from mcp_gateway.upstreams import _httpx2, _sdk_client
from mcp_gateway.upstreams.lean_http import LeanPool

SESSION_ID_HEADER = "mcp-session-id"
PROTOCOL_VERSION_HEADER = "mcp-protocol-version"
_ACCEPT = "application/json, text/event-stream"
_MAX_EVENT_BYTES = 1024 * 1024 * 64
_DRAIN_SECONDS = 0.05  # as `transports._DrainOnClose`: let the rest of an SSE answer in, keep the connection
_httpx_logger = logging.getLogger("httpx2")
_LEAN = os.environ.get("MCPGW_LEAN_HTTP", "on").lower() not in ("0", "off", "false", "no")
"""`MCPGW_LEAN_HTTP=off`: direct calls go through httpcore2's pool instead (for comparison and as a way out)."""

OnMessage = Callable[[JSONRPCMessage], Awaitable[None]]
"""Handles a message that arrives on a call's stream before its answer, in the calling task."""


class NotDirect(Exception):
    """The upstream did not take the request (a redirect): send it through the SDK instead."""


class DirectHttp:
    """Plain POSTs on an upstream session the SDK's streamable-HTTP client opened and owns."""

    def __init__(
        self,
        client: httpx2.AsyncClient,
        url: str,
        pool: httpcore2.AsyncConnectionPool | None = None,
        *,
        lean: bool = _LEAN,
    ) -> None:
        """`pool`: the client's connection pool, when a request through the client would only add
        its default and static headers and the trace headers (no auth, no proxy, no other hooks).
        The POST then goes to the pool directly, see `_raw_request` — or, with `lean` and a plain
        pool, to a `lean_http.LeanPool` with the same settings."""
        self._client = client
        self._url = url
        self._ids = itertools.count(1)
        self._usable = _sdk_client.AVAILABLE
        self._pool = pool if _httpx2.AVAILABLE else None
        parsed = httpx2.URL(url)
        self._target = httpcore2.URL(
            scheme=parsed.raw_scheme, host=parsed.raw_host, port=parsed.port, target=parsed.raw_path
        )
        self._host = parsed.netloc
        settings = _httpx2.lean_settings(self._pool, parsed) if self._pool is not None and lean else None
        # No per-read timeout on the lean pool: the client's read timeout is a day (streams stay open), and
        # every direct call runs under the upstream's call timeout (`connection._direct_request`).
        timeouts = {**client.timeout.as_dict(), "read": None}
        self._lean = LeanPool(settings, timeouts) if settings is not None else None
        """Where the pool path's POSTs go when the httpcore2 pool is a plain one (see `lean_http`)."""
        self.session_id: str | None = None
        self.protocol_version: str | None = None
        self._merged_for: tuple[object, list[tuple[bytes, bytes]]] | None = None
        self._head_for: tuple[list[tuple[bytes, bytes]], bytes] | None = None

    @property
    def _request_line(self) -> bytes:
        return b"POST " + self._target.target + b" HTTP/1.1\r\n"

    def close(self) -> None:
        """Close the lean pool's idle connections (the httpcore2 pool closes with its client)."""
        if self._lean is not None:
            self._lean.close()

    def observe(self, request: httpx2.Request) -> None:
        """Learn the session's headers from a request the SDK sends (it stamps both once initialized)."""
        version = request.headers.get(PROTOCOL_VERSION_HEADER)
        if version is not None and request.method == "POST":
            self.protocol_version = version
            self.session_id = request.headers.get(SESSION_ID_HEADER)

    @property
    def ready(self) -> bool:
        return self._usable and self.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS

    def next_id(self) -> str:
        return f"mcpgw-{next(self._ids)}"

    async def request(
        self, request_id: str, method: str, params: Mapping[str, Any], on_message: OnMessage
    ) -> dict[str, Any]:
        """Send one request and return its result as the upstream sent it (shaped like the SDK's).

        Raises:
            MCPError: a JSON-RPC error from the upstream, or what the SDK client would raise
                (`CONNECTION_CLOSED` when the stream ends without an answer, "Session terminated"
                for a 404 on our session).
            NotDirect: the upstream redirected; nothing was processed.
            httpx2.TransportError: the connection failed.
        """
        version = self.protocol_version
        assert version is not None
        out = dict(params)
        if trace_context_active():
            meta = dict(out.get("_meta") or {})
            propagate.inject(meta)  # W3C trace context in `_meta`, as the SDK's dispatcher adds it
            if meta:
                out["_meta"] = meta
        body = pydantic_core.to_json({"jsonrpc": "2.0", "id": request_id, "method": method, "params": out})
        headers = {"accept": _ACCEPT, "content-type": "application/json", PROTOCOL_VERSION_HEADER: version}
        if self.session_id is not None:
            headers[SESSION_ID_HEADER] = self.session_id
        client = self._client
        if self._pool is not None and not client.is_closed and not client.cookies.jar:
            if self._lean is not None:
                raw = await self._lean_request(body, headers, on_message)
            else:
                raw = await self._raw_request(body, headers, on_message)
        else:
            async with client.stream("POST", self._url, content=body, headers=headers) as response:
                raw = await self._answer(
                    response.status_code,
                    response.headers.get("content-type", ""),
                    response.aread,
                    lambda: _events(response),
                    on_message,
                )
        return _shaped(method, version, raw)

    async def _lean_request(self, body: bytes, headers: dict[str, str], on_message: OnMessage) -> dict[str, Any]:
        """The POST `_raw_request` would send, on the lean pool (see `lean_http`).

        An SSE answer is read as the pool's connection cut it into events; a JSON body whole; anything
        that needs more than that (a content encoding, cookies, a charset other than UTF-8) through an
        `httpx2.Response`, as `_raw_request` does.
        """
        assert self._lean is not None
        data = b"".join([self._lean_head(headers), b"Content-Length: %d\r\n\r\n" % len(body), body])
        with _httpx2.map_httpcore_exceptions():
            exchange = await self._lean.send(data)
            try:
                while not exchange.headers_done:  # for an SSE answer: woken once its first event is in
                    await exchange.wait()
                status = exchange.status
                self._log_answer(exchange.http_version, status, exchange.reason)
                content_type, plain = _content_of(exchange.headers)
                read: Callable[[], Awaitable[bytes]] = exchange.read
                events: Callable[[], AsyncGenerator[str | bytes, None]] = exchange.iter_events
                if not plain:
                    extensions = {"http_version": exchange.http_version, "reason_phrase": exchange.reason}
                    wrapped = self._through_httpx2(status, exchange.headers, exchange.iter_chunks(), extensions)
                    if exchange.sse is None:  # a content encoding: read through httpx2 (cookies are kept above)
                        read, events = wrapped.aread, lambda: _events(wrapped)
                return await self._answer(status, content_type, read, events, on_message)
            finally:
                # An SSE answer's stream ends a moment after the answer: the pool keeps the connection once it has.
                exchange.release(drain=exchange.sse is not None)

    def _log_answer(self, http_version: bytes, status: int, reason: bytes) -> None:
        """httpx2's `HTTP Request: …` line (its logger, at INFO, as a request through the client would log it)."""
        if _httpx_logger.isEnabledFor(logging.INFO):
            _httpx_logger.info(
                'HTTP Request: POST %s "%s %d %s"', self._url, http_version.decode(), status, reason.decode()
            )

    def _through_httpx2(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        chunks: AsyncIterator[bytes],
        extensions: MutableMapping[str, Any],
        request_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> httpx2.Response:
        """An answer that needs more than reading (a content encoding, cookies, a charset other than UTF-8) as an
        `httpx2.Response` to read it through; its cookies go to the client's jar, as a request through it would."""
        wrapped = httpx2.Response(
            status,
            headers=headers,
            stream=_PoolStream(chunks),
            extensions=extensions,
            request=httpx2.Request("POST", self._url, headers=request_headers),
        )
        self._client.cookies.extract_cookies(wrapped)
        return wrapped

    def _lean_head(self, headers: dict[str, str]) -> bytes:
        """Request line, `Host` and the merged headers (see `_merged`), as bytes; kept while they stay the same."""
        merged = self._merged(headers)
        cached = self._head_for
        if cached is not None and cached[0] is merged:
            return cached[1]
        head = b"".join(
            [self._request_line, b"Host: " + self._host + b"\r\n", *[n + b": " + v + b"\r\n" for n, v in merged]]
        )
        self._head_for = (merged, head)
        return head

    async def _raw_request(self, body: bytes, headers: dict[str, str], on_message: OnMessage) -> dict[str, Any]:
        """The POST `client.stream` would send, handed to the client's connection pool directly.

        Same request line and headers (the client's default and static headers, then ours, then
        the trace headers its request hook adds), same timeouts, same pool (so the SDK's requests
        and ours share keep-alive connections), transport errors mapped to httpx2's as its
        transport maps them. Skipped: building httpx2's request and response models, the auth flow
        and hooks. An answer that needs more than reading (a content encoding, cookies, a charset
        other than UTF-8) is wrapped in an `httpx2.Response` and read through it.
        """
        assert self._pool is not None
        raw_headers = [(b"Host", self._host), (b"Content-Length", str(len(body)).encode()), *self._merged(headers)]
        with _httpx2.map_httpcore_exceptions():
            request = httpcore2.Request(
                b"POST",
                self._target,
                headers=raw_headers,
                content=body,
                extensions={"timeout": self._client.timeout.as_dict()},
            )
            response = await self._pool.handle_async_request(request)
        body_stream = _Body(response.stream)
        content_type = ""
        try:
            status = response.status
            extensions = response.extensions
            self._log_answer(extensions.get("http_version", b"HTTP/1.1"), status, extensions.get("reason_phrase", b""))
            content_type, plain = _content_of(response.headers)
            if not plain:
                wrapped = self._through_httpx2(status, response.headers, body_stream.chunks(), extensions, raw_headers)
                return await self._answer(
                    status, wrapped.headers.get("content-type", ""), wrapped.aread, lambda: _events(wrapped), on_message
                )
            return await self._answer(
                status,
                content_type,
                lambda: _read_all(body_stream),
                lambda: _raw_events(body_stream, content_type),
                on_message,
            )
        finally:
            try:
                if content_type.lower().startswith("text/event-stream"):  # let the stream end: keep-alive
                    await body_stream.drain()
            finally:
                await body_stream.aclose()

    def _merged(self, headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
        """The client's headers updated with `headers`, then with the trace headers its request hook adds.

        The first part is the same for every call of a session (same client headers, session id and
        version): merged once and kept, as long as the client's headers are unchanged.
        """
        base = self._client.headers.raw
        key = (tuple(base), tuple(headers.items()))
        if self._merged_for is None or self._merged_for[0] != key:
            merged = httpx2.Headers(self._client.headers)
            merged.update(headers)
            self._merged_for = (key, merged.raw)
        trace: dict[str, str] = {}
        if trace_context_active():
            propagate.inject(trace)  # what the client's `inject_trace_headers` request hook adds
        if not trace:
            return self._merged_for[1]
        traced = httpx2.Headers(self._merged_for[1])
        traced.update(trace)
        return traced.raw

    async def _answer(
        self,
        status: int,
        content_type: str,
        read: Callable[[], Awaitable[bytes]],
        events: Callable[[], AsyncGenerator[str | bytes, None]],
        on_message: OnMessage,
    ) -> dict[str, Any]:
        """The result of the upstream's answer, whichever way it came: a JSON body (`read`), or an event
        stream (`events`: the data of its `message` events), where the first response answers and what
        comes before it is handled in order (`on_message`), before the stream is read on."""
        if 300 <= status < 400:
            self._usable = False
            raise NotDirect(f"HTTP {status} from {self._url}")
        content_type = content_type.lower()
        if status == 202:
            raise MCPError(INVALID_REQUEST, "server answered a request with 202 Accepted")
        if status >= 400:
            if content_type.startswith("application/json"):
                error = _error_of(await read())
                if error is not None:
                    raise MCPError.from_error_data(error)
            if status == 404:
                raise MCPError(INVALID_REQUEST, "Session terminated" if self.session_id else "Not Found")
            raise MCPError(INTERNAL_ERROR, "Server returned an error response")
        if content_type.startswith("application/json"):
            answer = _response_of(await read())
            if answer is None:
                raise MCPError(PARSE_ERROR, "Failed to parse JSON response")
            return answer
        if not content_type.startswith("text/event-stream"):
            raise MCPError(INVALID_REQUEST, f"Unexpected content type: {content_type}")
        # Closed here, not left to the event loop's async-generator finaliser, once the answer is in.
        async with contextlib.aclosing(events()) as stream:
            async for data in stream:
                answer = _response_of(data)
                if answer is not None:
                    return answer
                # Not our answer: a log message, a server→client request, a notification. Handled
                # before the stream is read on, so it reaches the client ahead of the answer.
                try:
                    message = jsonrpc_message_adapter.validate_json(data, by_name=False)
                except ValidationError:
                    continue
                await on_message(message)
        raise MCPError(CONNECTION_CLOSED, "SSE stream ended without a response")


def _content_of(headers: list[tuple[bytes, bytes]]) -> tuple[str, bool]:
    """A response's content type, and whether its body can be read as it is: no content encoding, no
    cookies, a UTF-8 charset (else it is read through an `httpx2.Response`, as the client would)."""
    content_type = ""
    plain = True
    for key, value in headers:
        name = key.lower()
        if name == b"content-type":
            content_type = value.decode("latin-1")
        elif name in (b"content-encoding", b"set-cookie"):
            plain = False
    charset = content_type.partition(";")[2].lower()
    if "charset" in charset and "utf-8" not in charset and "utf8" not in charset:
        plain = False
    return content_type, plain


async def _events(response: httpx2.Response) -> AsyncGenerator[str, None]:
    """The data of each `message` event of an event-stream response, as `httpx2.EventSource` reads them."""
    source = cast(
        AsyncGenerator[ServerSentEvent, None], aiter(httpx2.EventSource(response, max_event_size=_MAX_EVENT_BYTES))
    )
    async with contextlib.aclosing(source) as events:
        async for event in events:
            if event.event == "message" and event.data:
                yield event.data


def _message_data(events: Iterable[ServerSentEvent]) -> Iterator[str]:
    """The data of the `message` events among `events` (the only ones a call's stream answers with)."""
    return (event.data for event in events if event.event == "message" and event.data)


class _Body:
    """An httpcore2 response body, read through one iterator (as httpx2's response reads it)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._chunks: AsyncIterator[bytes] | None = None

    def chunks(self) -> AsyncIterator[bytes]:
        if self._chunks is None:
            self._chunks = self._stream.__aiter__()
        return self._chunks

    async def drain(self) -> None:
        """What `transports._DrainOnClose` does: the rest of a body being read, briefly."""
        if self._chunks is not None:
            # asyncio's timeout, not anyio's cancel scope: this runs once per call, on the hot path.
            with contextlib.suppress(TimeoutError), _httpx2.map_httpcore_exceptions():
                async with asyncio.timeout(_DRAIN_SECONDS):
                    async for _ in self._chunks:
                        pass

    async def aclose(self) -> None:
        await self._stream.aclose()


async def _read_all(body: _Body) -> bytes:
    with _httpx2.map_httpcore_exceptions():
        return b"".join([chunk async for chunk in body.chunks()])


async def _raw_events(body: _Body, content_type: str) -> AsyncGenerator[str, None]:
    """What `_events` yields (through `httpx2.EventSource`) for a UTF-8 body without a content encoding."""
    # `EventSource` wants exactly this media type (`_answer` only checked the prefix)
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type != "text/event-stream":
        raise httpx2.SSEError(f"Expected response with content type 'text/event-stream', got {media_type!r}.")
    parser = _httpx2.sse_parser(_MAX_EVENT_BYTES)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    with _httpx2.map_httpcore_exceptions():
        async for chunk in body.chunks():
            text = decoder.decode(chunk)
            if text:
                for data in _message_data(parser.decode(text)):
                    yield data
    text = decoder.decode(b"", True)
    if text:
        for data in _message_data(parser.decode(text)):
            yield data
    for data in _message_data(parser.flush()):
        yield data


class _PoolStream(httpx2.AsyncByteStream):
    """A body read off the pool (an httpcore2 response's, or a lean exchange's) as an httpx2 stream, errors mapped
    as httpx2's transport maps them; for answers read through `httpx2.Response`. Closing it is the caller's job
    (`_raw_request` after the drain, `_lean_request` by releasing the exchange)."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx2.map_httpcore_exceptions():
            async for chunk in self._chunks:
                yield chunk

    async def aclose(self) -> None:
        pass


def _response_of(data: str | bytes) -> dict[str, Any] | None:
    """The result of the response in `data`; None when `data` is another kind of message."""
    try:
        message = pydantic_core.from_json(data)
    except ValueError:
        message = _from_json_replacing(data)
    if not isinstance(message, dict) or "method" in message or ("result" not in message and "error" not in message):
        return None  # a request or notification; any response on the call's stream answers the call (as in the SDK)
    if "error" in message:
        error = _error_of(message)
        raise MCPError.from_error_data(error or ErrorData(code=INTERNAL_ERROR, message="malformed error response"))
    result = message.get("result")
    if not isinstance(result, dict):
        raise MCPError(PARSE_ERROR, "the response has no result object")
    return result


def _from_json_replacing(data: str | bytes) -> Any:
    """`data` parsed after its invalid UTF-8 is replaced (U+FFFD), as a text decoder would have read it."""
    if isinstance(data, bytes):
        try:
            return pydantic_core.from_json(data.decode("utf-8", errors="replace"))
        except ValueError:
            pass
    raise MCPError(PARSE_ERROR, "Failed to parse SSE message") from None


def _error_of(body: bytes | Mapping[str, Any]) -> ErrorData | None:
    try:
        message = pydantic_core.from_json(body) if isinstance(body, bytes) else body
        return ErrorData.model_validate(message["error"]) if isinstance(message, Mapping) else None
    except (ValueError, KeyError, TypeError, ValidationError):
        return None


_RESULT_CHECKS: dict[tuple[str, str], TypeAdapter[Any] | None] = {}


def _result_check(method: str, version: str) -> TypeAdapter[Any] | None:
    """The validator `validate_server_result` runs for `method` at `version` (None: a method the surface
    does not list). Validation only: that function also dumps the validated result, which is thrown away."""
    key = (method, version)
    try:
        return _RESULT_CHECKS[key]
    except KeyError:
        surface = _methods.SERVER_RESULTS.get(key)
        check = _RESULT_CHECKS[key] = TypeAdapter(cast(Any, surface)) if surface is not None else None
        return check


def _shaped(method: str, version: str, raw: dict[str, Any]) -> dict[str, Any]:
    """What `ClientSession.send_request` does to a raw result before its caller sees it."""
    _sdk_client.clamp_inbound_ttl(raw)
    check = _result_check(method, version)
    if check is not None:
        check.validate_python(raw, by_name=False)
    foreign = _sdk_client.later_revision_fields(method, version)
    if not foreign.isdisjoint(raw):
        raw = {key: value for key, value in raw.items() if key not in foreign}
    return raw
