"""tools/call to a streamable-HTTP upstream as a plain POST (`upstreams/direct.py`): same behaviour as the SDK path."""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
import mcp_types as types
import pytest

from tests.conftest import LAB_SERVER, mcp_client, running_gateway, text_of, upstream_process

pytestmark = pytest.mark.anyio


async def test_calls_go_direct_on_the_sdk_session_with_its_headers() -> None:
    async with (
        upstream_process(LAB_SERVER, "http") as url,
        running_gateway({"lab": {"transport": "http", "url": url, "headers": {"X-Team": "blue"}}}) as gw,
        mcp_client(gw.url) as client,
    ):
        assert gw.gateway.manager.connections["lab"].calls_directly
        headers = json.loads(text_of(await client.call_tool("lab-whoami", {})))
        assert headers["mcp-session-id"] and headers["mcp-protocol-version"]
        assert headers["x-team"] == "blue"
        assert text_of(await client.call_tool("lab-echo", {"text": "hi"})) == "hi"
        refused = await client.call_tool("lab-echo", {"text": 3})
        assert refused.is_error


async def test_logs_and_progress_during_a_call_reach_the_caller() -> None:
    logs: list[types.LoggingMessageNotificationParams] = []
    seen: list[float] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        logs.append(params)

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with (
        upstream_process(LAB_SERVER, "http") as url,
        running_gateway({"lab": {"transport": "http", "url": url}}) as gw,
        mcp_client(gw.url, logging_callback=on_log) as client,
    ):
        await client.call_tool("lab-log", {"level": "warning", "message": "disk almost full"})
        assert logs and logs[-1].level == "warning" and "disk almost full" in json.dumps(logs[-1].data)
        result = await client.call_tool("lab-progress", {"steps": 3}, progress_callback=on_progress)
        assert text_of(result) == "ok" and seen == [1, 2, 3]


async def test_a_cancelled_call_is_cancelled_upstream(tmp_path: Path) -> None:
    events = tmp_path / "events.log"
    async with (
        upstream_process(LAB_SERVER, "http", env={"LAB_EVENT_LOG": str(events)}) as url,
        running_gateway({"lab": {"transport": "http", "url": url}}) as gw,
        mcp_client(gw.url) as client,
    ):
        with anyio.move_on_after(1):
            await client.call_tool("lab-slow", {"seconds": 30})
        with anyio.fail_after(10):
            while "cancelled" not in events.read_text():
                await anyio.sleep(0.05)
        assert text_of(await client.call_tool("lab-echo", {"text": "still here"})) == "still here"


async def test_a_call_that_times_out_fails_clearly_and_is_cancelled_upstream(tmp_path: Path) -> None:
    events = tmp_path / "events.log"
    async with (
        upstream_process(LAB_SERVER, "http", env={"LAB_EVENT_LOG": str(events)}) as url,
        running_gateway({"lab": {"transport": "http", "url": url, "timeout": 0.5}}) as gw,
        mcp_client(gw.url) as client,
    ):
        started = time.monotonic()
        result = await client.call_tool("lab-slow", {"seconds": 20})
        assert result.is_error and "'lab'" in text_of(result) and "0.5s" in text_of(result)
        assert time.monotonic() - started < 5
        with anyio.fail_after(10):
            while "cancelled" not in events.read_text():
                await anyio.sleep(0.05)
        assert text_of(await client.call_tool("lab-echo", {"text": "after timeout"})) == "after timeout"


async def test_an_upstream_dying_mid_call_fails_that_call_cleanly() -> None:
    async with (
        upstream_process(LAB_SERVER, "http") as url,
        running_gateway({"fragile": {"transport": "http", "url": url}}) as gw,
        mcp_client(gw.url) as client,
    ):
        started = time.monotonic()
        crashed = await client.call_tool("fragile-crash", {})
        assert crashed.is_error and "'fragile'" in text_of(crashed)
        assert time.monotonic() - started < 5
