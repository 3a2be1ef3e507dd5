"""The HTTP client of the provider adapters: one httpcore2 connection pool per provider, nothing on top.

Why not `httpx2.AsyncClient`: measured on the LLM benchmark, the client's request and response
models, auth flow, hooks and cookie handling cost about a tenth of the gateway's CPU per request,
and a provider call needs none of them (fixed headers, no redirects, no cookies). httpcore2 is the
client's own transport, used through its public pool API; answers are asked for without content
encoding (`accept-encoding: identity`), and a provider that compresses anyway (gzip, deflate) is
decoded here. Transport errors come out as httpx2's exceptions, the ones the rest of the LLM
gateway handles.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import cast
from urllib.parse import urlsplit

import httpcore2
import httpx2


class ProviderResponse:
    """A provider's answer with its body still unread: `aiter_bytes` or `aread`, then `aclose`."""

    def __init__(self, response: httpcore2.Response) -> None:
        self._response = response
        self.status_code = response.status
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers}
        encoding = self.headers.get("content-encoding", "identity").lower()
        self._decoder = zlib.decompressobj(wbits=47) if encoding in ("gzip", "deflate", "x-gzip") else None
        self._unsupported: str | None = (
            encoding if encoding not in ("identity", "gzip", "deflate", "x-gzip", "") else None
        )

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        if self._unsupported is not None:
            raise httpx2.DecodingError(f"the provider answered with content-encoding {self._unsupported!r}")
        stream = cast(AsyncIterable[bytes], self._response.stream)  # the async pool always gives an async one
        try:
            async for chunk in stream:
                if self._decoder is not None:
                    chunk = self._decoder.decompress(chunk)
                if chunk:
                    yield chunk
        except httpcore2.TimeoutException as exc:
            raise httpx2.ReadTimeout(str(exc) or "timed out reading the answer") from None
        except (httpcore2.NetworkError, httpcore2.ProtocolError) as exc:
            raise httpx2.ReadError(str(exc) or type(exc).__name__) from None
        except zlib.error as exc:
            raise httpx2.DecodingError(f"the provider's compressed answer is damaged: {exc}") from None

    async def aread(self) -> bytes:
        return b"".join([chunk async for chunk in self.aiter_bytes()])

    async def aclose(self) -> None:
        await self._response.aclose()


class ProviderHttp:
    """POSTs to one provider over a keep-alive pool; `timeout` bounds each read, `connect_timeout` each connect."""

    def __init__(self, *, timeout: float, connect_timeout: float) -> None:
        self._pool = httpcore2.AsyncConnectionPool(
            max_connections=1000, max_keepalive_connections=200, keepalive_expiry=60.0
        )
        self._timeouts = {"connect": connect_timeout, "read": timeout, "write": timeout, "pool": timeout}

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> ProviderResponse:
        """Send the request; the answer's body is left to read. Raises httpx2's transport errors."""
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            raise httpx2.InvalidURL(str(exc)) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise httpx2.InvalidURL(f"{url!r} is not an http(s) URL")
        raw_headers = [
            (b"host", parts.netloc.encode("idna") if not parts.netloc.isascii() else parts.netloc.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"accept-encoding", b"identity"),
            *((name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()),
        ]
        extensions = {"timeout": self._timeouts}
        request = httpcore2.Request(b"POST", url, headers=raw_headers, content=body, extensions=extensions)
        try:
            response = await self._pool.handle_async_request(request)
        except httpcore2.TimeoutException as exc:
            raise httpx2.TimeoutException(str(exc) or "timed out") from None
        except httpcore2.UnsupportedProtocol as exc:
            raise httpx2.InvalidURL(str(exc)) from None
        except (httpcore2.NetworkError, httpcore2.ProtocolError) as exc:
            raise httpx2.ConnectError(str(exc) or type(exc).__name__) from None
        return ProviderResponse(response)

    async def aclose(self) -> None:
        await self._pool.aclose()
