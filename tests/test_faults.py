"""Fault injection with real upstream processes: killed, frozen, slow, restarted, broken.

Each test checks what a client sees *and* the upstream's state timeline (`history`). Health
checks and reconnect backoff are shortened through the upstream config (`FAST`); assertions
poll with deadlines instead of sleeping.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import anyio
import anyio.abc
import httpx2
import mcp_types as types
import pytest

from mcp_gateway.upstreams.connection import UpstreamConnection
from tests.conftest import (
    LAB_SERVER,
    ROOT,
    RunningGateway,
    free_port,
    lab,
    listening_process,
    mcp_client,
    running_gateway,
    text_of,
    tool_names,
    upstream_process,
)

pytestmark = pytest.mark.anyio

BROKEN_SERVER = ROOT / "tests" / "upstreams" / "broken_server.py"

FAST: dict[str, Any] = {
    "ping_interval": 0.2,
    "ping_timeout": 0.2,
    "max_ping_failures": 2,
    "reconnect_backoff_start": 0.1,
    "reconnect_backoff_max": 0.5,
    "connect_timeout": 2,
}
"""Health settings that make every fault show within about a second."""


@contextlib.asynccontextmanager
async def lab_process(port: int, **env: str) -> AsyncIterator[anyio.abc.Process]:
    """The lab server over streamable HTTP on a given port (so it can be restarted on the same one)."""
    argv = [sys.executable, LAB_SERVER, "--transport", "http", "--port", str(port)]
    async with listening_process(argv, port, env) as process:
        yield process


def http_upstream(port: int, **fields: Any) -> dict[str, Any]:
    return {"transport": "http", "url": f"http://127.0.0.1:{port}/mcp", **FAST, **fields}


def connection(gw: RunningGateway, name: str) -> UpstreamConnection:
    return gw.gateway.manager.connections[name]


def states(gw: RunningGateway, name: str) -> list[str]:
    return [change.state.value for change in connection(gw, name).history]


async def until(condition: Callable[[], bool], what: str, timeout: float = 15) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout` seconds."""
    with anyio.move_on_after(timeout):
        while not condition():
            await anyio.sleep(0.05)
        return
    pytest.fail(f"timed out after {timeout:g}s waiting for {what}")


async def until_state(gw: RunningGateway, name: str, state: str, timeout: float = 15) -> None:
    await until(
        lambda: connection(gw, name).state.value == state,
        f"{name} to be {state} (timeline: {states(gw, name)})",
        timeout,
    )


def assert_timeline(seen: Sequence[str], expected: Sequence[str]) -> None:
    """`expected` occurs in `seen` in order (other entries may come between)."""
    remaining = iter(seen)
    assert all(state in remaining for state in expected), f"timeline {list(seen)} lacks {list(expected)} in order"


class ListChanged:
    """A `message_handler` counting `notifications/tools/list_changed`."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            self.count += 1


async def test_http_upstream_killed_mid_call_fails_fast_and_comes_back_when_restarted() -> None:
    port = free_port()
    async with contextlib.AsyncExitStack() as stack:
        fragile = await stack.enter_async_context(lab_process(port))
        gw = await stack.enter_async_context(
            running_gateway({"fragile": http_upstream(port), "steady": {**lab(), **FAST}})
        )
        client = await stack.enter_async_context(mcp_client(gw.url))
        other = await stack.enter_async_context(mcp_client(gw.url))
        results: dict[str, tuple[types.CallToolResult, float]] = {}

        async def call(session: Any, tool: str, seconds: float) -> None:
            result = await session.call_tool(tool, {"seconds": seconds})
            results[tool] = (result, time.monotonic())

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, client, "fragile-slow", 30)
            tg.start_soon(call, other, "steady-slow", 1.5)
            await until(lambda: all(len(connection(gw, n).in_flight) for n in ("fragile", "steady")), "calls in flight")
            killed_at = time.monotonic()
            fragile.kill()

        failed, failed_at = results["fragile-slow"]
        assert failed.is_error and "'fragile'" in text_of(failed)
        assert failed_at - killed_at < 5
        steady, _ = results["steady-slow"]
        assert not steady.is_error and text_of(steady) == "done"
        await until_state(gw, "fragile", "disconnected")
        assert "HTTP connection failed" in (connection(gw, "fragile").last_error or "")
        names = tool_names(await client.list_tools())
        assert "steady-echo" in names and not any(n.startswith("fragile-") for n in names)
        await fragile.wait()

        async with lab_process(port):
            await until_state(gw, "fragile", "connected")
            assert text_of(await client.call_tool("fragile-echo", {"text": "back"})) == "back"
        assert_timeline(states(gw, "fragile"), ["connecting", "connected", "disconnected", "connecting", "connected"])
        assert states(gw, "steady") == ["connecting", "connected"]


async def test_frozen_upstream_is_disconnected_after_failed_pings_and_reconnects_when_thawed() -> None:
    port = free_port()
    changed = ListChanged()
    async with (
        lab_process(port) as frozen,
        running_gateway({"frozen": http_upstream(port), "steady": {**lab(), **FAST}}) as gw,
        mcp_client(gw.url, message_handler=changed) as client,
    ):
        assert "frozen-echo" in tool_names(await client.list_tools())
        frozen.send_signal(signal.SIGSTOP)
        try:
            await until_state(gw, "frozen", "disconnected")
            await until(lambda: changed.count >= 1, "list_changed after the upstream froze", 5)
            names = tool_names(await client.list_tools())
            assert "steady-echo" in names and not any(n.startswith("frozen-") for n in names)
            down = connection(gw, "frozen").history[-1]
            assert "2 health checks failed" in down.reason and "ping" in down.reason
            seen_before_thaw = changed.count
        finally:
            frozen.send_signal(signal.SIGCONT)
        await until_state(gw, "frozen", "connected")
        await until(lambda: changed.count > seen_before_thaw, "list_changed after the upstream came back", 5)
        assert "frozen-echo" in tool_names(await client.list_tools())
        assert text_of(await client.call_tool("frozen-echo", {"text": "thawed"})) == "thawed"
        assert_timeline(states(gw, "frozen"), ["connected", "disconnected", "connecting", "connected"])
        assert states(gw, "steady") == ["connecting", "connected"]


async def test_slow_calls_time_out_while_pings_keep_the_upstream_connected() -> None:
    port = free_port()
    async with (
        lab_process(port),
        running_gateway({"lab": http_upstream(port, timeout=0.5, ping_timeout=1)}) as gw,
        mcp_client(gw.url) as client,
    ):
        for _ in range(3):  # 1.5 s of slow calls: several health checks meanwhile
            started = time.monotonic()
            result = await client.call_tool("lab-slow", {"seconds": 5})
            assert result.is_error and "'lab'" in text_of(result) and "0.5s" in text_of(result)
            assert time.monotonic() - started < 3
        assert text_of(await client.call_tool("lab-echo", {"text": "fine"})) == "fine"
        assert states(gw, "lab") == ["connecting", "connected"]


async def test_restart_with_another_tool_list_is_announced_to_clients() -> None:
    port = free_port()
    changed = ListChanged()
    async with (
        lab_process(port, LAB_TOOL_COUNT="2") as first,
        running_gateway({"lab": http_upstream(port)}) as gw,
        mcp_client(gw.url, message_handler=changed) as client,
    ):
        before = tool_names(await client.list_tools())
        assert "lab-tool_001" in before and "lab-tool_003" not in before
        first.terminate()
        await first.wait()
        async with lab_process(port, LAB_TOOL_COUNT="4"):
            await until(
                lambda: "lab-tool_003" in [t.name for t in gw.gateway.manager.catalog.tools],
                f"the new tool list (timeline: {states(gw, 'lab')})",
            )
            await until(lambda: changed.count >= 1, "list_changed after the restart", 5)
            assert "lab-tool_003" in tool_names(await client.list_tools())
            assert text_of(await client.call_tool("lab-tool_003", {"value": "new"})) == "new"
        assert_timeline(states(gw, "lab"), ["connected", "disconnected", "connecting", "connected"])


async def test_stdio_upstream_that_exits_is_restarted(tmp_path: Any) -> None:
    events = tmp_path / "events.log"
    async with (
        running_gateway({"lab": {**lab(LAB_EVENT_LOG=str(events)), **FAST}}) as gw,
        mcp_client(gw.url) as client,
    ):
        crashed = await client.call_tool("lab-crash", {})
        assert crashed.is_error and "'lab'" in text_of(crashed)
        await until(lambda: events.read_text().count("started") >= 2, "the process to be started again")
        await until_state(gw, "lab", "connected")
        assert text_of(await client.call_tool("lab-echo", {"text": "again"})) == "again"
        history = list(connection(gw, "lab").history)
        assert_timeline([c.state.value for c in history], ["connected", "disconnected", "connecting", "connected"])
        lost = next(c for c in history if c.state.value == "disconnected")
        assert lost.reason == "the server process exited"


@pytest.mark.parametrize(
    ("mode", "error"), [("500", "error response"), ("garbage", "not json-rpc"), ("html", "content type")]
)
async def test_broken_http_upstream_is_disconnected_with_a_clear_error(
    mode: str, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with (
        upstream_process(BROKEN_SERVER, "http", env={"BROKEN_MODE": mode}) as url,
        running_gateway({"broken": {"transport": "http", "url": url, **FAST}, "good": lab()}) as gw,
        mcp_client(gw.url) as client,
    ):
        names = tool_names(await client.list_tools())
        assert "good-echo" in names and not any(n.startswith("broken-") for n in names)
        assert text_of(await client.call_tool("good-echo", {"text": "ok"})) == "ok"
        broken = connection(gw, "broken")
        assert broken.state.value in ("disconnected", "connecting")  # between two reconnect attempts
        assert error in (broken.last_error or "").lower(), broken.last_error
        await until(lambda: states(gw, "broken").count("disconnected") >= 3, "a few reconnect attempts")
        async with httpx2.AsyncClient() as http:
            ready = (await http.get(f"{gw.base_url}/readyz")).json()
        row = next(u for u in ready["upstreams"] if u["name"] == "broken")
        assert row["state"] in ("disconnected", "connecting") and error in row["error"].lower()
        assert [h["state"] for h in row["history"]][:3] == ["connecting", "disconnected", "connecting"]
    tracebacks = [r for r in caplog.records if r.exc_info and r.name.startswith(("mcp_gateway", "uvicorn", "asyncio"))]
    assert not tracebacks, [r.getMessage() for r in tracebacks]


async def test_silent_tool_changes_are_picked_up_by_periodic_sync() -> None:
    changed = ListChanged()
    async with (
        running_gateway({"lab": {**lab(), **FAST, "sync_interval": 0.3}}) as gw,
        mcp_client(gw.url, message_handler=changed) as client,
    ):
        await client.list_tools()
        added = await client.call_tool("lab-add_tool", {"name": "quiet", "notify": False})
        assert text_of(added) == "added"
        await until(lambda: changed.count >= 1, "list_changed from the periodic sync", 5)
        assert "lab-quiet" in tool_names(await client.list_tools())
        assert states(gw, "lab") == ["connecting", "connected"]


async def test_upstream_restarted_between_health_checks_gets_a_new_session_and_the_call_goes_through() -> None:
    port = free_port()
    async with (
        lab_process(port) as first,
        running_gateway({"lab": http_upstream(port, ping_interval=60)}) as gw,
        mcp_client(gw.url) as client,
    ):
        first.terminate()
        await first.wait()
        async with lab_process(port):
            # Refused with 404 before it ran: the gateway opens a new session and sends it again.
            again = await client.call_tool("lab-echo", {"text": "hello?"})
            assert not again.is_error and text_of(again) == "hello?"
            assert states(gw, "lab").count("connected") == 2
            assert text_of(await client.call_tool("lab-echo", {"text": "hello"})) == "hello"
            down = next(c for c in connection(gw, "lab").history if c.state.value == "disconnected")
            assert "session" in down.reason
