"""The httpx2 and httpcore2 internals behind `DirectHttp`'s pool path, in one place.

Why: a `tools/call` POST handed straight to the client's httpcore2 connection pool skips
httpx2's client machinery (request and response models, auth flow, hooks, cookies): ~0.6 ms CPU
less per call on the benchmark's gateway (see `direct.py`, `_raw_request`). Doing that without
copying httpx2 takes four of its internals:

- `httpx2._sse._SSEParser`: the parser `httpx2.EventSource` runs over a response's text, run
  here over the pool's bytes (`EventSource` itself wants an `httpx2.Response`).
- `httpx2._transports.default.map_httpcore_exceptions`: how httpx2's transport turns
  httpcore2's errors into its own, so a failed POST raises what `client.stream` would raise.
- `httpx2.AsyncClient._transport_for_url`: which transport the client would send to a URL (a
  proxy mounted from the environment must not be bypassed).
- `httpx2.AsyncHTTPTransport._pool`: the httpcore2 connection pool inside the transport (so the
  SDK's requests and ours share keep-alive connections).
- that pool's settings (`_http1`, `_proxy`, `_uds`, `_local_address`, `_socket_options`,
  `_retries`, `_ssl_context`, keep-alive limits): whether `lean_http.LeanPool` may stand in for it
  (`lean_settings`), and with which TLS context.

Fallback: the pool path is off and the POST goes through the client (`client.stream`), as for
an upstream with auth or a proxy. `AVAILABLE` is false without the first two;
`transport_for_url` and `connection_pool` answer None without the last two. None of this is an
error at run time, only slower, so `missing()` names what the installed httpx2 lacks and
`tests/test_private_internals.py` fails on it: an upgrade that removes one is noticed there.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Protocol

import httpcore2
import httpx2

from mcp_gateway.upstreams.lean_http import LeanSettings

_missing_imports: list[str] = []
try:
    from httpx2._sse import _SSEParser
except ImportError:  # pragma: no cover - a future httpx2 moved it
    _missing_imports.append("httpx2._sse._SSEParser")
try:
    from httpx2._transports.default import map_httpcore_exceptions as _map_httpcore_exceptions
except ImportError:  # pragma: no cover - a future httpx2 moved it
    _missing_imports.append("httpx2._transports.default.map_httpcore_exceptions")

AVAILABLE = not _missing_imports
"""Whether `sse_parser` and `map_httpcore_exceptions` may be called; when false, no pool path."""


class SSEParser(Protocol):
    """Turns the text of an SSE body, in chunks, into events."""

    def decode(self, text: str) -> Iterator[httpx2.ServerSentEvent]: ...

    def flush(self) -> Iterator[httpx2.ServerSentEvent]: ...


def sse_parser(max_event_size: int) -> SSEParser:
    """httpx2's own SSE parser (the one `httpx2.EventSource` uses). Only when `AVAILABLE`."""
    return _SSEParser(max_event_size)


def map_httpcore_exceptions() -> AbstractContextManager[None]:
    """Re-raises httpcore2's errors as httpx2's, as httpx2's transport does. Only when `AVAILABLE`."""
    return _map_httpcore_exceptions()


def transport_for_url(client: httpx2.AsyncClient, url: str) -> httpx2.AsyncBaseTransport | None:
    """The transport `client` sends a request for `url` to; None if this httpx2 cannot tell."""
    pick = getattr(client, "_transport_for_url", None)
    if pick is None:
        return None
    transport = pick(httpx2.URL(url))
    return transport if isinstance(transport, httpx2.AsyncBaseTransport) else None


def connection_pool(transport: httpx2.AsyncHTTPTransport) -> httpcore2.AsyncConnectionPool | None:
    """The httpcore2 connection pool `transport` sends through; None if this httpx2 keeps it elsewhere."""
    pool = getattr(transport, "_pool", None)
    return pool if isinstance(pool, httpcore2.AsyncConnectionPool) else None


def lean_settings(pool: httpcore2.AsyncConnectionPool, url: httpx2.URL) -> LeanSettings | None:
    """What a `lean_http.LeanPool` needs to stand in for `pool` for `url`; None unless `pool` is a plain one:
    HTTP/1.1 over TCP (no proxy, unix socket, local address, socket options or connect retries)."""
    plain = (
        type(pool) is httpcore2.AsyncConnectionPool
        and getattr(pool, "_http1", False) is True
        and getattr(pool, "_proxy", None) is None
        and getattr(pool, "_uds", 0) is None
        and getattr(pool, "_local_address", 0) is None
        and getattr(pool, "_socket_options", 0) is None
        and getattr(pool, "_retries", 1) == 0
    )
    context = getattr(pool, "_ssl_context", None) if url.scheme == "https" else None
    if not plain or url.scheme not in ("http", "https") or (url.scheme == "https" and context is None):
        return None
    expiry = getattr(pool, "_keepalive_expiry", None)
    keep = getattr(pool, "_max_keepalive_connections", None)
    return LeanSettings(
        host=url.host,
        port=url.port or (443 if url.scheme == "https" else 80),
        ssl_context=context if isinstance(context, ssl.SSLContext) else None,
        keepalive_expiry=expiry if isinstance(expiry, int | float) else None,
        max_keepalive=keep if isinstance(keep, int) else 20,
    )


def missing() -> list[str]:
    """The internals above that the installed httpx2 lacks (empty when the pool path can work)."""
    gone = list(_missing_imports)
    if "httpx2._sse._SSEParser" not in gone and not all(
        callable(getattr(_SSEParser, method, None)) for method in ("decode", "flush")
    ):
        gone.append("httpx2._sse._SSEParser.decode/flush")
    if not callable(getattr(httpx2.AsyncClient, "_transport_for_url", None)):
        gone.append("httpx2.AsyncClient._transport_for_url")
    pool = connection_pool(httpx2.AsyncHTTPTransport())
    if pool is None:
        gone.append("httpx2.AsyncHTTPTransport._pool")
    elif lean_settings(pool, httpx2.URL("http://127.0.0.1:1/")) is None:
        gone.append("httpcore2.AsyncConnectionPool settings (_http1, _proxy, _uds, _retries, …)")
    return gone
