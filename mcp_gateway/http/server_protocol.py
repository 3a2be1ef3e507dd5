"""uvicorn's httptools protocol, writing a response's head and its body in one system call.

uvicorn writes the status line and headers the moment the app sends `http.response.start`, and
the body at `http.response.body`: two `send()` calls, two TCP segments and, on the client, often
two reads, for every JSON answer the gateway gives (a `tools/call` on the fast path, an error, a
model reply). The app sends both in the same turn of the event loop, so holding the head until
the next write — or, at the latest, the end of that turn — costs nothing and saves a system call
per response (measured on the benchmark's gateway: ~10 µs of CPU per call, and one wake-up of the
client). Nothing else changes: every other call goes to uvicorn's transport as it was.

`protocol_class()` is what `mcpgw serve` and the tests' in-process servers hand to uvicorn; it is
None without httptools (uvicorn then picks its default).
"""

from __future__ import annotations

import asyncio
from typing import Any

_RESPONSE_HEAD = b"HTTP/1.1 "


class HeadHoldingTransport:
    """A transport that keeps a response head back until the next write or the end of the loop turn."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is not None:
            self._held = None
            self._transport.write(held + data)
        elif data.startswith(_RESPONSE_HEAD) and data.endswith(b"\r\n\r\n"):
            self._held = data
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)  # everything else is the transport's own


def protocol_class() -> type[asyncio.Protocol] | None:
    """uvicorn's httptools protocol with `HeadHoldingTransport`; None when httptools is not installed."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return None

    class HeadHoldingHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            holding = HeadHoldingTransport(transport, self.loop)
            super().connection_made(holding)  # type: ignore[arg-type]

    return HeadHoldingHttpToolsProtocol
