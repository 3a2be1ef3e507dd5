"""The call pipeline on its own: a fake client channel and upstreams in memory, no HTTP anywhere.

Each case checks the result and that exactly one audit record says what happened.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import mcp_types as types
import pytest
from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import NoBackChannelError
from mcp.shared.memory import create_client_server_memory_streams

from mcp_gateway.audit import AuditEvent, AuditLog
from mcp_gateway.calls import ToolCalls
from mcp_gateway.config import GatewayConfig, StdioUpstream
from mcp_gateway.errors import CredentialRequired, UnknownTool, UpstreamUnavailable
from mcp_gateway.identity import Identity, IdentityMode, KeyGrant
from mcp_gateway.policy import Policy
from mcp_gateway.relay import Caller
from mcp_gateway.upstreams.connection import UpstreamConnection, UpstreamState
from mcp_gateway.upstreams.manager import UpstreamManager
from mcp_gateway.upstreams.transports import Streams

pytestmark = pytest.mark.anyio

_R = TypeVar("_R")


class FakeChannel:
    """A client that wants no progress and cannot be asked anything (like an LLM request)."""

    def __init__(self) -> None:
        self.notifications: list[types.ServerNotification] = []

    @property
    def connection_key(self) -> object:
        return self

    @property
    def base_url(self) -> str | None:
        return "http://gateway.test"

    @property
    def wants_progress(self) -> bool:
        return False

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        raise AssertionError("no progress was asked for")

    def supports(self, capability: types.ClientCapabilities) -> bool:
        return False

    async def request(self, request: types.ServerRequest, result_type: type[_R]) -> _R:
        raise NoBackChannelError("fake channel")

    async def notify(self, notification: types.ServerNotification) -> None:
        self.notifications.append(notification)


class MemoryServers:
    """In-memory upstreams, one low-level SDK server per upstream (its name from the config's command)."""

    def __init__(self) -> None:
        self.served: list[tuple[str, str]] = []

    @asynccontextmanager
    async def open(self, config: Any) -> AsyncIterator[Streams]:
        name = config.command

        async def list_tools(ctx: ServerRequestContext[Any], params: Any) -> types.ListToolsResult:
            schema = {"type": "object"}
            return types.ListToolsResult(
                tools=[types.Tool(name="echo", input_schema=schema), types.Tool(name="secret", input_schema=schema)]
            )

        async def call_tool(
            ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
        ) -> types.CallToolResult:
            self.served.append((name, params.name))
            text = f"{name}: {(params.arguments or {}).get('text')}"
            return types.CallToolResult(content=[types.TextContent(type="text", text=text)])

        server = Server(name, on_list_tools=list_tools, on_call_tool=call_tool)
        async with create_client_server_memory_streams() as (client, (read, write)), anyio.create_task_group() as tg:
            tg.start_soon(server.run, read, write, server.create_initialization_options())
            yield client
            tg.cancel_scope.cancel()


class NeedsCredential(UpstreamConnection):
    """An upstream acting as its caller (as per-user ones do) that has no credential for anyone yet."""

    async def request(
        self, request: types.ClientRequest, *, caller: Caller | None = None, progress: Any = None
    ) -> dict[str, Any]:
        raise CredentialRequired(
            self.name,
            f"{self.name} needs your token: open http://gateway.test/forms/credentials/f-123 (10 minutes)",
            url="http://gateway.test/forms/credentials/f-123",
        )


def alice(grants: Mapping[str, tuple[str, ...]]) -> Identity:
    key = KeyGrant("vk-alice", "alice", True, None, grants)
    return Identity(IdentityMode.VK, "vk-alice", virtual_key=key, grants=grants)


@asynccontextmanager
async def pipeline(servers: MemoryServers) -> AsyncIterator[tuple[ToolCalls, UpstreamManager, list[AuditEvent]]]:
    config = GatewayConfig.model_validate({"dedupe": {"replicas": {"upstreams": ["a", "b"]}}})
    manager = UpstreamManager(config, open_transport=servers.open)
    events: list[AuditEvent] = []

    async def discard(batch: Any) -> None:
        return None

    audit = AuditLog(discard, observers=[events.append])
    calls = ToolCalls(manager, Policy("-", lambda: manager.globals), audit, credential_wait=0)
    fast = {"ping_interval": 60, "reconnect_backoff_start": 60, "connect_timeout": 5}
    async with anyio.create_task_group() as tg:
        await tg.start(manager.run)
        await manager.apply(
            {name: StdioUpstream(command=name, **fast) for name in ("a", "b", "solo", "keyed")}  # type: ignore[arg-type]
        )
        await manager.wait_first_attempts()
        keyed = manager.connections["keyed"]
        stand_in = NeedsCredential("keyed", keyed.config, on_change=_ignore, on_resource_updated=_ignore_resource)
        stand_in.tools, stand_in.state = keyed.tools, UpstreamState.CONNECTED
        manager.connections["keyed"] = stand_in
        await manager.rebuild()
        try:
            yield calls, manager, events
        finally:
            manager.stop()
            tg.cancel_scope.cancel()


async def _ignore(*args: Any) -> None:
    return None


async def _ignore_resource(*args: Any) -> None:
    return None


def text(result: Mapping[str, Any]) -> str:
    return "".join(block["text"] for block in result["content"] if block["type"] == "text")


async def test_an_allowed_call_reaches_its_upstream_with_one_audit_record() -> None:
    servers = MemoryServers()
    async with pipeline(servers) as (calls, _, events):
        result = await calls.call(alice({"solo": ("echo",)}), "solo-echo", {"text": "hi"}, FakeChannel())
    assert text(result) == "solo: hi" and not result.get("isError")
    assert result["resultType"] == "complete"
    [event] = events
    assert (event.outcome, event.upstream, event.tool, event.virtual_key_id) == ("ok", "solo", "echo", "vk-alice")


async def test_a_denied_call_looks_unknown_and_never_reaches_the_upstream() -> None:
    servers = MemoryServers()
    async with pipeline(servers) as (calls, _, events):
        with pytest.raises(UnknownTool):
            await calls.call(alice({"solo": ("echo",)}), "solo-secret", {}, FakeChannel())
        with pytest.raises(UnknownTool):
            await calls.call(alice({"solo": ("echo",)}), "solo-nothing_like_it", {}, FakeChannel())
    assert servers.served == []
    assert [(e.outcome, e.upstream, e.tool) for e in events] == [
        ("denied", None, "solo-secret"),
        ("denied", None, "solo-nothing_like_it"),
    ]


async def test_a_missing_credential_puts_the_link_in_the_result_but_not_in_the_audit_trail() -> None:
    servers = MemoryServers()
    async with pipeline(servers) as (calls, _, events):
        result = await calls.call(alice({"keyed": ("*",)}), "keyed-echo", {"text": "x"}, FakeChannel())
    assert result["isError"] is True
    assert "http://gateway.test/forms/credentials/f-123" in text(result)
    [event] = events
    assert (event.outcome, event.upstream, event.detail) == ("error", "keyed", "credential required")


class Broken(UpstreamConnection):
    """A replica whose connection breaks under the call; `sent`: whether the request may have reached it."""

    sent = False

    async def request(
        self, request: types.ClientRequest, *, caller: Caller | None = None, progress: Any = None
    ) -> dict[str, Any]:
        raise UpstreamUnavailable(self.name, f"upstream {self.name!r} connection is closed", sent=self.sent)


@pytest.mark.parametrize("sent", [False, True])
async def test_a_replica_failing_under_the_call_fails_over_only_if_it_never_saw_the_request(sent: bool) -> None:
    servers = MemoryServers()
    async with pipeline(servers) as (calls, manager, events):
        everything = alice({"a": ("*",), "b": ("*",)})
        assert manager.catalog.tool_routes["replicas-echo"].candidates == ("a", "b")
        assert text(await calls.call(everything, "replicas-echo", {"text": "1"}, FakeChannel())) == "a: 1"
        # `a` breaks while the catalog still routes to it (it has not noticed yet).
        broken = Broken("a", manager.connections["a"].config, on_change=_ignore, on_resource_updated=_ignore_resource)
        broken.sent = sent
        manager.connections["a"] = broken
        result = await calls.call(everything, "replicas-echo", {"text": "2"}, FakeChannel())
    if sent:
        # It may have run on `a`: running it again on `b` could do it twice.
        assert result["isError"] is True and "'a' connection is closed" in text(result)
        assert [(e.outcome, e.upstream) for e in events] == [("ok", "a"), ("error", "a")]
    else:
        assert text(result) == "b: 2"
        assert [(e.outcome, e.upstream) for e in events] == [("ok", "a"), ("ok", "b")]


async def test_meta_tool_access_sees_and_calls_only_what_the_caller_may() -> None:
    servers = MemoryServers()
    async with pipeline(servers) as (calls, manager, events):
        from mcp_gateway.toolmodes.base import ToolMode
        from mcp_gateway.toolmodes.presenter import Presenter

        identity = alice({"solo": ("echo",)})
        presentation = Presenter(lambda upstream: ToolMode.SEARCH, {}).present(
            Policy("-", lambda: manager.globals).view(identity, manager.catalog), manager.catalog
        )
        access = calls.access(identity, presentation, FakeChannel())
        assert [t.name for t in access.tools()] == ["solo-echo"]
        assert text(await access.call("solo-echo", {"text": "via meta"})) == "solo: via meta"
        with pytest.raises(UnknownTool):
            await access.call("a-secret", {})
    assert [(e.outcome, e.tool) for e in events] == [("ok", "echo"), ("denied", "a-secret")]
