"""Health monitoring and the state timeline of one upstream, with the upstream in memory.

`UpstreamConnection` takes its transport as an argument, so these tests run a low-level SDK
server in the same event loop and can freeze its `ping` handler or change its tools at will.
The last test drives `mcpgw upstream reconnect` against a real gateway.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp.server import Server, ServerRequestContext
from mcp.shared.memory import create_client_server_memory_streams

from mcp_gateway.config import StdioUpstream
from mcp_gateway.upstreams.connection import HISTORY_LENGTH, UpstreamConnection, UpstreamState
from mcp_gateway.upstreams.lists import ListKind
from mcp_gateway.upstreams.transports import Streams
from tests.conftest import ADMIN_TOKEN, lab, running_gateway

pytestmark = pytest.mark.anyio

Ctx = ServerRequestContext[Any]


class FakeUpstream:
    """An in-memory MCP server whose behaviour the test changes while it runs."""

    def __init__(self) -> None:
        self.tools = ["alpha"]
        self.frozen = False
        self.refuse = False
        self.pings = 0
        self.lists = 0
        self.connects = 0

    async def on_ping(self, ctx: Ctx, params: types.RequestParams | None) -> types.EmptyResult:
        self.pings += 1
        if self.frozen:
            await anyio.sleep_forever()
        return types.EmptyResult()

    async def on_list_tools(self, ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        self.lists += 1
        if self.frozen:
            await anyio.sleep_forever()
        return types.ListToolsResult(tools=[types.Tool(name=n, input_schema={"type": "object"}) for n in self.tools])

    @asynccontextmanager
    async def open(self, config: Any) -> AsyncIterator[Streams]:
        self.connects += 1
        if self.refuse:
            raise ConnectionRefusedError("connection refused")
        server = Server("fake", on_ping=self.on_ping, on_list_tools=self.on_list_tools)
        async with create_client_server_memory_streams() as (client, (read, write)), anyio.create_task_group() as tg:
            tg.start_soon(server.run, read, write, server.create_initialization_options())
            yield client
            tg.cancel_scope.cancel()


def settings(**fields: Any) -> StdioUpstream:
    defaults: dict[str, Any] = {
        "ping_interval": 0.02,
        "ping_timeout": 0.05,
        "max_ping_failures": 3,
        "reconnect_backoff_start": 0.01,
        "reconnect_backoff_max": 0.02,
        "connect_timeout": 2,
    }
    return StdioUpstream(command="unused", **(defaults | fields))


class Observed:
    """The `on_change` callback: what state the connection was in each time the catalog had to be rebuilt."""

    def __init__(self) -> None:
        self.states: list[UpstreamState] = []
        self.tools: list[list[str]] = []

    async def __call__(self, connection: UpstreamConnection, kinds: frozenset[ListKind]) -> None:
        self.states.append(connection.state)
        self.tools.append([t.name for t in connection.tools])


async def _ignore_resource(connection: UpstreamConnection, uri: str) -> None:
    pass


@asynccontextmanager
async def running(
    fake: FakeUpstream, config: StdioUpstream, clock: Callable[[], datetime] | None = None
) -> AsyncIterator[tuple[UpstreamConnection, Observed]]:
    observed = Observed()
    extra: dict[str, Any] = {"clock": clock} if clock else {}
    connection = UpstreamConnection(
        "fake", config, on_change=observed, on_resource_updated=_ignore_resource, open_transport=fake.open, **extra
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(connection.run)
        try:
            yield connection, observed
        finally:
            connection.stop()
            tg.cancel_scope.cancel()


async def until(condition: Callable[[], bool], what: str, timeout: float = 5) -> None:
    with anyio.move_on_after(timeout):
        while not condition():
            await anyio.sleep(0.01)
        return
    pytest.fail(f"timed out waiting for {what}")


def timeline(connection: UpstreamConnection) -> list[str]:
    return [change.state.value for change in connection.history]


async def test_failed_pings_disconnect_and_a_healthy_upstream_is_connected_again() -> None:
    fake = FakeUpstream()
    async with running(fake, settings()) as (connection, observed):
        await until(lambda: connection.state is UpstreamState.CONNECTED, "connected")
        await until(lambda: fake.pings >= 3, "a few pings")
        assert connection.state is UpstreamState.CONNECTED  # healthy pings change nothing

        fake.frozen = True
        await until(lambda: connection.state is UpstreamState.DISCONNECTED, "disconnected")
        # While it stays frozen, reconnect attempts may already have failed again (under load the
        # test can look late), so judge the *first* disconnect, which the health monitor caused.
        down = next(change for change in connection.history if change.state is UpstreamState.DISCONNECTED)
        assert down.reason == "3 health checks failed in a row (last: no answer to ping within 0.05s)"
        assert connection.tools == []

        fake.frozen = False
        await until(lambda: connection.state is UpstreamState.CONNECTED, "connected again")
        states = timeline(connection)
        assert states[:3] == ["connecting", "connected", "disconnected"]
        assert states[-2:] == ["connecting", "connected"]
        assert set(states[3:-2]) <= {"connecting", "disconnected"}, states
        assert [t.name for t in connection.tools] == ["alpha"]
        # Every state change reached the manager, so clients heard about the tools they lost and regained.
        # Extra connecting/disconnected rounds may sit in the middle if a reconnect attempt ran
        # while the upstream was still frozen; the ends of the sequence are what must hold.
        assert observed.states[:2] == [UpstreamState.CONNECTED, UpstreamState.DISCONNECTED]
        assert observed.states[-1] is UpstreamState.CONNECTED
        assert set(observed.states[2:-1]) <= {UpstreamState.CONNECTING, UpstreamState.DISCONNECTED}
        assert observed.tools[:2] == [["alpha"], []] and observed.tools[-1] == ["alpha"]
        assert all(tools == [] for tools in observed.tools[1:-1])


async def test_a_single_missed_ping_is_tolerated() -> None:
    fake = FakeUpstream()
    async with running(fake, settings(max_ping_failures=5)) as (connection, _):
        await until(lambda: connection.state is UpstreamState.CONNECTED, "connected")
        fake.frozen = True
        frozen_at = fake.pings
        await until(lambda: fake.pings >= frozen_at + 2, "two unanswered pings")
        fake.frozen = False
        await until(lambda: fake.pings >= frozen_at + 6, "answered pings")
        assert timeline(connection) == ["connecting", "connected"]


async def test_ping_false_checks_health_with_tools_list() -> None:
    fake = FakeUpstream()
    async with running(fake, settings(ping=False, sync_interval=-1)) as (connection, _):
        await until(lambda: fake.lists >= 4, "health checks by tools/list")
        assert fake.pings == 0
        fake.frozen = True
        await until(lambda: connection.state is UpstreamState.DISCONNECTED, "disconnected")
        first_down = next(c for c in connection.history if c.state is UpstreamState.DISCONNECTED)
        assert "no answer to tools/list" in first_down.reason


async def test_periodic_sync_picks_up_tools_changed_without_notification() -> None:
    fake = FakeUpstream()
    async with running(fake, settings(sync_interval=0.05)) as (connection, observed):
        await until(lambda: connection.state is UpstreamState.CONNECTED, "connected")
        version = connection.versions[ListKind.TOOLS]
        fake.tools = ["alpha", "beta"]
        await until(lambda: [t.name for t in connection.tools] == ["alpha", "beta"], "the new tool list")
        assert connection.versions[ListKind.TOOLS] == version + 1
        assert observed.tools[-1] == ["alpha", "beta"]
        assert timeline(connection) == ["connecting", "connected"]


async def test_negative_sync_interval_never_relists() -> None:
    fake = FakeUpstream()
    async with running(fake, settings(sync_interval=-1)):
        await until(lambda: fake.pings >= 10, "ten health checks")  # each 0.02 s apart: sync would have run
        assert fake.lists == 1  # the initial listing only


async def test_history_is_bounded_and_stamped_by_the_clock() -> None:
    fake = FakeUpstream()
    fake.refuse = True
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ticks = iter(range(10_000))

    def clock() -> datetime:
        return start + timedelta(seconds=next(ticks))

    async with running(fake, settings(), clock) as (connection, _):
        await until(lambda: fake.connects > HISTORY_LENGTH, "more attempts than the history keeps")
        assert len(connection.history) == HISTORY_LENGTH
        stamps = [change.at for change in connection.history]
        assert stamps == sorted(stamps) and stamps[0] > start  # the oldest entries were dropped
        summary = connection.summary()
        assert summary["state"] in ("connecting", "disconnected")
        assert summary["error"] == "ConnectionRefusedError: connection refused"
        last = summary["history"][-1]
        assert set(last) == {"at", "state", "reason"}
        assert datetime.fromisoformat(last["at"]).tzinfo is not None
        failures = [h for h in summary["history"] if h["state"] == "disconnected"]
        assert failures and all(h["reason"] == "ConnectionRefusedError: connection refused" for h in failures)


async def test_needs_reauth_serves_nothing_and_waits_for_a_reconnect() -> None:
    fake = FakeUpstream()
    async with running(fake, settings()) as (connection, observed):
        await until(lambda: connection.state is UpstreamState.CONNECTED, "connected")
        connection.needs_reauth("the user's consent expired")
        await until(lambda: connection.state is UpstreamState.NEEDS_REAUTH, "needs_reauth")
        assert connection.tools == [] and observed.tools[-1] == []
        assert connection.history[-1].reason == "the user's consent expired"
        await anyio.sleep(0.3)  # a negative check: ~15 backoff periods in which no retry may happen
        assert fake.connects == 1
        connection.reconnect()
        await until(lambda: connection.state is UpstreamState.CONNECTED, "connected after reconnect()")
        assert fake.connects == 2
        assert timeline(connection) == ["connecting", "connected", "needs_reauth", "connecting", "connected"]
        assert connection.history[-2].reason == "reconnect requested"


async def test_disabled_upstream_has_a_one_entry_timeline() -> None:
    fake = FakeUpstream()
    async with running(fake, settings(enabled=False)) as (connection, _):
        await connection.first_attempt_done.wait()
        assert fake.connects == 0
        assert [(h["state"], h["reason"]) for h in connection.summary()["history"]] == [
            ("disabled", "enabled: false in the config")
        ]


# --- reconnect on request, from the command line -------------------------------------------------


def _mcpgw() -> str:
    found = shutil.which("mcpgw", path=str(Path(sys.executable).parent))
    assert found, "the mcpgw console script is not installed in this environment"
    return found


async def _cli(*args: str, token: str | None) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k != "MCPGW_ADMIN_TOKEN"}
    if token is not None:
        env["MCPGW_ADMIN_TOKEN"] = token
    result = await anyio.run_process([_mcpgw(), *args], env=env, check=False)
    return result.returncode, (result.stdout + result.stderr).decode()


async def test_cli_upstream_reconnect(tmp_path: Path) -> None:
    events = tmp_path / "events.log"
    async with running_gateway({"lab": lab(LAB_EVENT_LOG=str(events))}) as gw:
        connection = gw.gateway.manager.connections["lab"]
        code, output = await _cli("upstream", "reconnect", "lab", "--url", gw.base_url, token=ADMIN_TOKEN)
        assert code == 0, output
        assert "reconnecting 'lab'" in output
        await until(lambda: events.read_text().count("started") == 2, "a second lab process", 30)
        await until(lambda: timeline(connection).count("connected") == 2, "connected again", 30)
        assert "reconnect requested" in [change.reason for change in connection.history]
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as api:
            row = (await api.get(f"{gw.base_url}/api/mcp/client/lab")).json()
        assert [h["state"] for h in row["history"]] == [
            "connecting",
            "connected",
            "disconnected",
            "connecting",
            "connected",
        ]
        assert row["history"][2]["reason"] == "reconnect requested"

        code, output = await _cli("upstream", "reconnect", "nope", "--url", gw.base_url, token=ADMIN_TOKEN)
        assert code == 1 and "no upstream named 'nope'" in output, output
        code, output = await _cli("upstream", "reconnect", "lab", "--url", gw.base_url, token="wrong")
        assert code == 1 and "MCPGW_ADMIN_TOKEN" in output and "401" in output, output
        code, output = await _cli("upstream", "reconnect", "lab", "--url", gw.base_url, token=None)
        assert code == 1 and "MCPGW_ADMIN_TOKEN" in output, output
    code, output = await _cli("upstream", "reconnect", "lab", "--url", gw.base_url, token=ADMIN_TOKEN)
    assert code == 1 and "cannot reach" in output, output
