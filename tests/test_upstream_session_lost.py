"""An upstream that forgets the gateway's session (it restarted, or reaped the session) while the
connection stays up: the next call is answered with 404 "Session not found" before it runs.

The gateway opens a new session at once and sends the call again — it was never delivered, so
the retry cannot run it twice — and the client sees only the answer. The upstream is the lab
server hosted in-process behind a wrapper that can be told to forget, and that counts the
`tools/call` requests the server itself received.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.conftest import mcp_client, running_gateway, text_of
from tests.serving import free_port, serve_asgi
from tests.upstreams.lab_server import build_server  # puts examples/servers on sys.path for `_serve`

from _serve import streamable_http_app  # isort: skip

pytestmark = pytest.mark.anyio


class Forgetful:
    """ASGI wrapper: after `forget()`, every request with a session id seen before gets the SDK's 404."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.forgotten: set[str] = set()
        self.known: set[str] = set()
        self.calls_received: list[str] = []
        self.refused = 0

    def forget(self) -> None:
        self.forgotten |= self.known

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        session = dict(scope["headers"]).get(b"mcp-session-id", b"").decode()
        if session in self.forgotten:
            self.refused += 1
            body = json.dumps(
                {"jsonrpc": "2.0", "id": "server-error", "error": {"code": -32600, "message": "Session not found"}}
            ).encode()
            await send(
                {"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": body})
            return
        if session:
            self.known.add(session)
        chunks: list[bytes] = []

        async def replay() -> Message:
            message = await receive()
            if message["type"] != "http.request":
                return message
            chunks.append(message.get("body", b""))
            if not message.get("more_body") and b'"tools/call"' in b"".join(chunks):
                self.calls_received.append(json.loads(b"".join(chunks))["params"]["arguments"]["text"])
            return message

        await self.app(scope, replay, send)


@pytest.mark.parametrize("fast", [True, False], ids=["fast path", "sdk path"])
async def test_a_forgotten_session_is_reopened_and_the_undelivered_call_sent_again(
    fast: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not fast:
        monkeypatch.setenv("MCPGW_FAST_PATH", "off")
    upstream = Forgetful(streamable_http_app(build_server({})))
    port = free_port()
    async with serve_asgi(upstream, port) as base:
        config: dict[str, Any] = {"transport": "http", "url": f"{base}/mcp"}
        async with running_gateway({"lab": config}) as gw, mcp_client(gw.url) as client:
            assert text_of(await client.call_tool("lab-echo", {"text": "before"})) == "before"
            connection = gw.gateway.manager.connections["lab"]
            upstream.forget()
            result = await client.call_tool("lab-echo", {"text": "after"})
            assert not result.is_error, text_of(result)
            assert text_of(result) == "after"
            # Delivered once: the refused attempt never reached the server.
            assert upstream.calls_received == ["before", "after"]
            assert upstream.refused >= 1
            reasons = [change.reason for change in connection.history]
            assert any("session" in (reason or "").lower() for reason in reasons), reasons
            # And it keeps working on the new session.
            assert text_of(await client.call_tool("lab-echo", {"text": "again"})) == "again"
            assert upstream.calls_received[-1] == "again"
