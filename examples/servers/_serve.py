"""Shared transport plumbing for the example and test upstream servers.

Every upstream in this repo (``notes_server``, ``media_server``, ``tests/upstreams/lab_server``) is a low-level
``mcp.server.Server`` that must be reachable over all three transports the gateway speaks to upstreams: stdio,
streamable HTTP and legacy SSE. Keeping that wiring here means each server file is only its tools, and the three
transports behave identically across servers (same paths, same capability advertisement).

Command line understood by :func:`serve`::

    [--transport stdio|http|sse] [--host 127.0.0.1] [--port N]

* ``http``  -- streamable HTTP at ``/mcp`` (a Starlette ``Route``, not ``Mount``: ``Mount`` answers ``POST /mcp``
  with a 307 redirect to ``/mcp/``).
* ``sse``   -- legacy HTTP+SSE: ``GET /sse`` opens the event stream, ``POST /messages/?session_id=…`` sends messages.
* ``stdio`` -- newline-delimited JSON-RPC on stdin/stdout.

Host/Origin (DNS-rebinding) checks are deliberately off: these servers only listen on loopback and the gateway
may forward a ``Host`` header that names itself rather than the upstream.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
import uvicorn
from mcp.server import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.sse import SseServerTransport
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPDeprecationWarning
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

Transport = Literal["stdio", "http", "sse"]
TRANSPORTS: tuple[Transport, ...] = ("stdio", "http", "sse")

MCP_PATH = "/mcp"
SSE_PATH = "/sse"
SSE_MESSAGES_PATH = "/messages/"


class ListChangedServer(Server[Any]):
    """A low-level ``Server`` that always advertises ``listChanged: true`` for tools, prompts and resources.

    Why a subclass: the streamable-HTTP session manager calls ``create_initialization_options()`` with no
    arguments, so without this override a server reached over HTTP reports ``listChanged: false`` and clients
    (including the gateway) would be right to ignore its ``notifications/*/list_changed``. Overriding here fixes
    it for every transport at once.
    """

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        """Default the notification options to "everything may change" instead of "nothing changes"."""
        if notification_options is None:
            notification_options = NotificationOptions(tools_changed=True, prompts_changed=True, resources_changed=True)
        return super().create_initialization_options(notification_options, experimental_capabilities, extensions)


def parse_args(
    argv: Sequence[str] | None, *, default_transport: Transport, default_port: int, description: str | None = None
) -> argparse.Namespace:
    """Parse the common ``--transport/--host/--port`` options (each server only picks its defaults)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--transport", choices=TRANSPORTS, default=default_transport)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    return parser.parse_args(argv)


def streamable_http_app(server: Server[Any]) -> Starlette:
    """Build a Starlette app serving ``server`` over streamable HTTP at ``/mcp``.

    The session manager can only be run once, so it is created per app and entered in the app lifespan.
    Exposed separately from :func:`serve` so tests can host the app in-process if they want to.
    """
    manager = StreamableHTTPSessionManager(app=server)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    return Starlette(routes=[Route(MCP_PATH, endpoint=StreamableHTTPASGIApp(manager))], lifespan=lifespan)


class _SseEndpoint:
    """``GET /sse`` as a raw ASGI app: one SSE connection = one MCP session run to completion.

    A class instance (not a function) so Starlette's ``Route`` treats it as an ASGI app instead of a
    request/response handler -- the SDK transport writes the streaming response itself and needs ASGI ``send``.
    """

    def __init__(self, server: Server[Any], transport: SseServerTransport) -> None:
        self._server = server
        self._transport = transport

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with self._transport.connect_sse(scope, receive, send) as (read_stream, write_stream):
            await self._server.run(read_stream, write_stream, self._server.create_initialization_options())


def sse_app(server: Server[Any]) -> Starlette:
    """Build a Starlette app serving ``server`` over the legacy SSE transport (``GET /sse`` + ``POST /messages/``)."""
    transport = SseServerTransport(SSE_MESSAGES_PATH)
    return Starlette(
        routes=[
            Route(SSE_PATH, endpoint=_SseEndpoint(server, transport), methods=["GET"]),
            Mount(SSE_MESSAGES_PATH, app=transport.handle_post_message),
        ]
    )


async def serve_stdio(server: Server[Any]) -> None:
    """Serve one client on this process's stdin/stdout until stdin closes."""
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def serve(
    server: Server[Any],
    argv: Sequence[str] | None = None,
    *,
    default_transport: Transport = "stdio",
    default_port: int = 8000,
) -> None:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and serve ``server`` on the chosen transport until stopped.

    Logging, roots and sampling are flagged deprecated for the 2026-07-28 protocol era, but these servers exist to
    exercise exactly those handshake-era features, so the SDK's ``MCPDeprecationWarning`` is silenced here rather
    than sprinkled over every call site.
    """
    warnings.filterwarnings("ignore", category=MCPDeprecationWarning)
    args = parse_args(argv, default_transport=default_transport, default_port=default_port, description=server.name)
    if args.transport == "stdio":
        anyio.run(serve_stdio, server)
        return
    app = streamable_http_app(server) if args.transport == "http" else sse_app(server)
    path = MCP_PATH if args.transport == "http" else SSE_PATH
    print(f"{server.name}: serving {args.transport} on http://{args.host}:{args.port}{path}", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
