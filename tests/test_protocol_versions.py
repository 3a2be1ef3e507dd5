"""Every protocol era on the client side, every transport on the upstream side.

Client side: handshake-era clients (2025-03-26, 2025-06-18, 2025-11-25) speak raw JSON-RPC over streamable HTTP
here, so the test pins the wire (headers, session id, negotiated version) rather than what an SDK hides; a
2026-07-28 client (`mcp.Client`, which probes `server/discover`) works without `initialize` or a session.
Upstream side: the gateway reaches the same lab server over stdio, streamable HTTP and legacy SSE.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult

from tests.conftest import LAB_SERVER, lab, mcp_client, running_gateway, text_of, upstream_process

HANDSHAKE_VERSIONS = ["2025-03-26", "2025-06-18", "2025-11-25"]
MODERN_VERSION = "2026-07-28"
ACCEPT_BOTH = "application/json, text/event-stream"

pytestmark = pytest.mark.anyio


def jsonrpc_messages(response: httpx2.Response) -> list[dict[str, Any]]:
    """The JSON-RPC messages of a POST response, whether sent as JSON or as an SSE stream."""
    if response.headers["content-type"].startswith("application/json"):
        body = response.json()
        return body if isinstance(body, list) else [body]
    data = [line.removeprefix("data:").strip() for line in response.text.splitlines() if line.startswith("data:")]
    return [json.loads(item) for item in data if item]


class RawSession:
    """A handshake-era client written out by hand: one POST per message, the session id echoed back."""

    def __init__(self, http: httpx2.AsyncClient, url: str, version: str) -> None:
        self.http = http
        self.url = url
        self.version = version
        self.session_id: str | None = None
        self._next_id = 0

    def headers(self) -> dict[str, str]:
        headers = {"Accept": ACCEPT_BOTH, "Content-Type": "application/json"}
        if self.session_id is not None:
            headers["Mcp-Session-Id"] = self.session_id
            headers["MCP-Protocol-Version"] = self.version
        return headers

    async def post(self, message: dict[str, Any]) -> httpx2.Response:
        return await self.http.post(self.url, json=message, headers=self.headers())

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one request; return its `result` (fails the test on an error or a missing answer)."""
        self._next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self._next_id, "method": method}
        if params is not None:
            message["params"] = params
        response = await self.post(message)
        assert response.status_code == 200, (method, response.status_code, response.text)
        if method == "initialize":
            self.session_id = response.headers["mcp-session-id"]
        answers = [m for m in jsonrpc_messages(response) if m.get("id") == self._next_id]
        assert len(answers) == 1, (method, response.text)
        assert "result" in answers[0], (method, answers[0])
        result: dict[str, Any] = answers[0]["result"]
        return result

    async def initialize(self) -> dict[str, Any]:
        result = await self.request(
            "initialize",
            {
                "protocolVersion": self.version,
                "capabilities": {},
                "clientInfo": {"name": f"raw-{self.version}", "version": "1.0"},
            },
        )
        response = await self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert response.status_code == 202, response.text
        return result


@asynccontextmanager
async def raw_session(url: str, version: str = "2025-11-25") -> AsyncIterator[RawSession]:
    async with httpx2.AsyncClient(timeout=30) as http:
        yield RawSession(http, url, version)


@pytest.mark.parametrize("version", HANDSHAKE_VERSIONS)
async def test_handshake_era_client_negotiates_its_version_and_calls_tools(version: str) -> None:
    async with running_gateway({"lab": lab()}) as gw, raw_session(gw.url, version) as session:
        initialized = await session.initialize()
        assert initialized["protocolVersion"] == version
        assert initialized["serverInfo"]["name"] == "mcpgw"

        listed = await session.request("tools/list")
        assert "lab-echo" in [tool["name"] for tool in listed["tools"]]

        called = await session.request("tools/call", {"name": "lab-echo", "arguments": {"text": f"hi {version}"}})
    assert called.get("isError", False) is False, called
    assert called["content"] == [{"type": "text", "text": f"hi {version}"}]


async def test_modern_client_lists_and_calls_without_handshake_or_session() -> None:
    sent: list[httpx2.Request] = []

    async def record(request: httpx2.Request) -> None:
        sent.append(request)

    async with (
        running_gateway({"lab": lab()}) as gw,
        httpx2.AsyncClient(timeout=30, event_hooks={"request": [record]}) as http,
        # mode="auto" probes server/discover, so this also shows the gateway advertises the modern era.
        Client(streamable_http_client(gw.url, http_client=http), mode="auto", cache=None) as client,
    ):
        assert client.protocol_version == MODERN_VERSION
        listed = await client.list_tools()
        assert "lab-echo" in [tool.name for tool in listed.tools]
        # Caught here and asserted after the blocks close, so a failure ends the gateway cleanly.
        try:
            called: CallToolResult | MCPError = await client.call_tool("lab-echo", {"text": "stateless"})
        except MCPError as exc:
            called = exc

    posts = [json.loads(r.content) for r in sent if r.method == "POST"]
    assert [p["method"] for p in posts] == ["server/discover", "tools/list", "tools/call"]
    assert all(r.headers.get("mcp-protocol-version") == MODERN_VERSION for r in sent)
    assert not any("mcp-session-id" in r.headers for r in sent)

    assert isinstance(called, CallToolResult), f"tools/call from a {MODERN_VERSION} client failed: {called!r}"
    assert not called.is_error, called
    assert text_of(called) == "stateless"


@asynccontextmanager
async def lab_upstream(transport: str) -> AsyncIterator[dict[str, Any]]:
    if transport == "stdio":
        yield lab()
        return
    async with upstream_process(LAB_SERVER, transport) as url:
        yield {"transport": transport, "url": url}


@pytest.mark.parametrize("transport", ["stdio", "http", "sse"])
async def test_tool_call_through_each_upstream_transport(transport: str) -> None:
    async with (
        lab_upstream(transport) as upstream,
        running_gateway({"lab": upstream}) as gw,
        mcp_client(gw.url) as session,
    ):
        connection = gw.gateway.manager.connections["lab"]
        assert connection.config.transport == transport
        result = await session.call_tool("lab-echo", {"text": f"via {transport}"})
    assert not result.is_error, result
    assert text_of(result) == f"via {transport}"


async def test_delete_ends_the_session() -> None:
    async with running_gateway({"lab": lab()}) as gw, raw_session(gw.url) as session:
        await session.initialize()
        await session.request("tools/list")

        deleted = await session.http.delete(gw.url, headers=session.headers())
        assert deleted.status_code in (200, 204), deleted.text

        after = await session.post({"jsonrpc": "2.0", "id": 99, "method": "tools/list"})
    assert after.status_code == 404, after.text


async def test_get_opens_a_server_event_stream() -> None:
    async with running_gateway({"lab": lab()}) as gw, raw_session(gw.url) as session:
        await session.initialize()
        headers = {**session.headers(), "Accept": "text/event-stream"}
        del headers["Content-Type"]
        async with session.http.stream("GET", gw.url, headers=headers) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
