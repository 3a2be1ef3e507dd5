"""Serving an ASGI app over a real socket inside a test: a free port and uvicorn on the test's event loop.

The gateway under test, the test OAuth servers and the credential form's browser test all run this way.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

import anyio
import anyio.abc
import uvicorn
from starlette.types import ASGIApp

from mcp_gateway.http.server_protocol import protocol_class


def free_port() -> int:
    """A port that was free a moment ago: servers embed their URL in metadata, so it is picked before they start."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class QuietServer(uvicorn.Server):
    """uvicorn without signal handlers: the test runner (or the CLI wrapper) owns SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serve_asgi(app: ASGIApp, port: int, *, lifespan: str = "on") -> AsyncIterator[str]:
    """Serve `app` on 127.0.0.1:`port` for the duration of the block; yields its base URL once it accepts requests."""
    server = QuietServer(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan=lifespan,
            access_log=False,
            http=protocol_class() or "auto",  # as `mcpgw serve` runs it
        )
    )

    async def run() -> None:
        # Shielded: a failing test cancels the task group, and uvicorn must still close its socket
        # (a leaked one fails a later test through ResourceWarning under filterwarnings=error).
        with anyio.CancelScope(shield=True):
            await server.serve()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        try:
            with anyio.fail_after(30):
                while not server.started:
                    if server.should_exit:
                        raise RuntimeError(f"server on port {port} failed to start")
                    await anyio.sleep(0.01)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True


async def read_http_request(stream: anyio.abc.ByteReceiveStream, buffer: bytes) -> tuple[bytes, bytes]:
    """One HTTP/1.1 request (with a `Content-Length` body) off a raw connection, for tests that play the server
    by hand: its head, and what was already read past its body (`buffer`: what was read past the last one)."""
    while b"\r\n\r\n" not in buffer:
        buffer += await stream.receive()
    head, _, buffer = buffer.partition(b"\r\n\r\n")
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    )
    while len(buffer) < length:
        buffer += await stream.receive()
    return head, buffer[length:]
