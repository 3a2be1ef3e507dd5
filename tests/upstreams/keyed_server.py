"""A test upstream that wants a per-caller API token in a header, like GitHub's MCP server with a PAT.

Every HTTP request must carry ``X-Api-Token`` with one of the accepted tokens, else 401 (the whole
MCP session, not just tool calls). ``KEYED_TOKENS`` lists the accepted tokens (comma-separated;
``*`` accepts any non-empty token). ``KEYED_OPEN_LISTING=1`` lets requests without any token through
(so a gateway can list tools before anyone has a token); a *wrong* token is still refused.

Tools: ``whoami`` answers with the token the call carried (text and ``structuredContent``), so a
test can check each caller's call reached the upstream with that caller's own credential; ``echo``.
``GET /calls`` returns every tool call seen as ``[{"tool": ..., "token": ..., "authorization": ...}]``.

Run: ``python tests/upstreams/keyed_server.py --port N`` (streamable HTTP at /mcp).
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import mcp_types as types
import uvicorn
from mcp.server import Server, ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

HEADER = "x-api-token"
CALLS: list[dict[str, str]] = []


def _header(ctx: ServerRequestContext[Any, Any], name: str) -> str:
    headers = getattr(ctx.request, "headers", None)
    return headers.get(name, "") if headers is not None else ""


async def list_tools(ctx: ServerRequestContext[Any, Any], params: Any) -> types.ListToolsResult:
    schema = {"type": "object", "properties": {"text": {"type": "string"}}}
    return types.ListToolsResult(
        tools=[
            types.Tool(name="whoami", description="The API token this call carried.", input_schema={"type": "object"}),
            types.Tool(name="echo", description="Echo `text`.", input_schema=schema),
        ]
    )


async def call_tool(ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams) -> types.CallToolResult:
    token = _header(ctx, HEADER)
    CALLS.append({"tool": params.name, "token": token, "authorization": _header(ctx, "authorization")})
    if params.name == "whoami":
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=token)], structured_content={"token": token}
        )
    text = str((params.arguments or {}).get("text", ""))
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)])


class TokenGate:
    def __init__(self, app: ASGIApp, accepted: set[str] | None, open_listing: bool) -> None:
        self.app = app
        self.accepted = accepted
        self.open_listing = open_listing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            token = dict(scope["headers"]).get(HEADER.encode(), b"").decode()
            allowed = (not token and self.open_listing) or (
                bool(token) and (self.accepted is None or token in self.accepted)
            )
            if not allowed:
                response = JSONResponse({"error": "invalid or missing X-Api-Token"}, status_code=401)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def build_app(accepted: set[str] | None, open_listing: bool) -> Starlette:
    server: Server[Any] = Server("keyed", on_list_tools=list_tools, on_call_tool=call_tool)
    manager = StreamableHTTPSessionManager(app=server)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    async def calls(request: Request) -> JSONResponse:
        return JSONResponse(CALLS)

    return Starlette(
        routes=[
            Route("/mcp", endpoint=TokenGate(StreamableHTTPASGIApp(manager), accepted, open_listing)),
            Route("/calls", endpoint=calls, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--transport", default="http", choices=["http"])
    args = parser.parse_args()
    raw = os.environ.get("KEYED_TOKENS", "*")
    accepted = None if raw == "*" else {t for t in raw.split(",") if t}
    app = build_app(accepted, os.environ.get("KEYED_OPEN_LISTING") == "1")
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
