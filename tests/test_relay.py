"""What flows during and around a call: progress, cancellation, list_changed, server→client requests, logs."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.client.session import ClientRequestContext

from tests.conftest import (
    CONFORMANCE_SERVER,
    LAB_SERVER,
    lab,
    mcp_client,
    running_gateway,
    text_of,
    tool_names,
    upstream_process,
)

pytestmark = pytest.mark.anyio


def _upstream(kind: str, url: str | None) -> dict[str, Any]:
    return lab() if kind == "stdio" else {"transport": kind, "url": url}


async def test_progress_notifications_reach_the_caller() -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with running_gateway({"lab": lab()}) as gw, mcp_client(gw.url) as client:
        result = await client.call_tool("lab-progress", {"steps": 4}, progress_callback=on_progress)
    assert text_of(result) == "ok"
    assert [p for p, _, _ in seen] == [1, 2, 3, 4]
    assert all(total == 4 for _, total, _ in seen)


async def test_cancellation_is_forwarded_to_the_upstream(tmp_path: Path) -> None:
    events = tmp_path / "events.log"
    async with running_gateway({"lab": lab(LAB_EVENT_LOG=str(events))}) as gw, mcp_client(gw.url) as client:
        with anyio.move_on_after(1):
            await client.call_tool("lab-slow", {"seconds": 30})
        with anyio.fail_after(10):
            while "cancelled" not in events.read_text():
                await anyio.sleep(0.05)
        # The gateway and the upstream both keep serving.
        assert text_of(await client.call_tool("lab-echo", {"text": "still here"})) == "still here"


@pytest.mark.parametrize("kind", ["stdio", "http"])
async def test_tool_list_changes_are_announced_to_connected_clients(kind: str) -> None:
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with (
        upstream_process(LAB_SERVER, "http") as url,
        running_gateway({"lab": _upstream(kind, url)}) as gw,
        mcp_client(gw.url, message_handler=on_message) as watcher,
        mcp_client(gw.url) as actor,
    ):
        await watcher.list_tools()
        await actor.call_tool("lab-add_tool", {"name": "fresh"})
        with anyio.fail_after(10):
            await changed.wait()
        assert "lab-fresh" in tool_names(await watcher.list_tools())
        assert "fresh" in text_of(await watcher.call_tool("lab-fresh", {"value": "fresh"}))


@pytest.mark.parametrize("kind", ["stdio", "http", "sse"])
async def test_sampling_elicitation_and_roots_are_relayed_to_the_calling_client(kind: str) -> None:
    async def sampling(
        ctx: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        prompt = params.messages[0].content.text  # type: ignore[union-attr]
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text=f"echo:{prompt}"), model="test-model"
        )

    async def elicitation(ctx: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    async def roots(ctx: ClientRequestContext) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri="file:///work/project", name="project")])

    async with (
        upstream_process(LAB_SERVER, kind if kind != "stdio" else "http") as url,
        running_gateway({"lab": _upstream(kind, url)}) as gw,
        mcp_client(
            gw.url, sampling_callback=sampling, elicitation_callback=elicitation, list_roots_callback=roots
        ) as c,
    ):
        assert text_of(await c.call_tool("lab-sample", {"prompt": "hi"})) == "echo:hi"
        elicited = json.loads(text_of(await c.call_tool("lab-elicit", {"message": "who?"})))
        assert elicited == {"action": "accept", "content": {"name": "Ada"}}
        assert "file:///work/project" in text_of(await c.call_tool("lab-ask_roots", {}))
        # With the fast path on, all three took it: the questions rode the calls' streams, the SDK client's
        # answers came back by POST (make test runs this file again with it off: the SDK path).
        assert gw.gateway.fast is None or gw.gateway.fast.served == 3


async def test_server_to_client_requests_go_to_the_right_client_under_concurrency() -> None:
    """Two clients sample at the same time through one shared HTTP upstream session: no crossed wires."""

    def sampler(tag: str) -> Any:
        async def sampling(ctx: ClientRequestContext, params: types.CreateMessageRequestParams) -> Any:
            await anyio.sleep(0.2)  # keep both calls in flight together
            return types.CreateMessageResult(
                role="assistant", content=types.TextContent(type="text", text=tag), model="m"
            )

        return sampling

    results: dict[str, list[str]] = {"alice": [], "bob": []}
    async with (
        upstream_process(LAB_SERVER, "http") as url,
        running_gateway({"lab": {"transport": "http", "url": url}}) as gw,
        mcp_client(gw.url, sampling_callback=sampler("alice")) as alice,
        mcp_client(gw.url, sampling_callback=sampler("bob")) as bob,
    ):

        async def run(name: str, client: Any) -> None:
            for _ in range(3):
                results[name].append(text_of(await client.call_tool("lab-sample", {"prompt": "x"})))

        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "alice", alice)
            tg.start_soon(run, "bob", bob)
        assert gw.gateway.fast is None or gw.gateway.fast.served == 6
    assert results == {"alice": ["alice"] * 3, "bob": ["bob"] * 3}


async def test_client_without_sampling_gets_a_clear_error() -> None:
    async with running_gateway({"lab": lab()}) as gw, mcp_client(gw.url) as client:
        result = await client.call_tool("lab-sample", {"prompt": "hi"})
    assert result.is_error
    assert "sampling" in text_of(result).lower()


async def test_log_messages_during_a_call_reach_the_caller_and_set_level_is_forwarded() -> None:
    received: list[types.LoggingMessageNotificationParams] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        received.append(params)

    async with running_gateway({"lab": lab()}) as gw, mcp_client(gw.url, logging_callback=on_log) as client:
        await client.call_tool("lab-log", {"level": "warning", "message": "disk almost full"})
        assert [(r.level, r.data) for r in received][-1][0] == "warning"
        assert "disk almost full" in json.dumps(received[-1].data)
        await client.set_logging_level("error")
        filtered = await client.call_tool("lab-log", {"level": "warning", "message": "quiet now"})
        assert "filtered" in text_of(filtered), "the upstream never saw the client's logging/setLevel"


async def test_resource_subscriptions_are_forwarded_and_updates_reach_subscribers() -> None:
    updated = anyio.Event()
    updated_uris: list[str] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updated_uris.append(str(message.params.uri))
            updated.set()

    async with (
        upstream_process(CONFORMANCE_SERVER, "http") as url,
        running_gateway({"conf": {"transport": "http", "url": url, "prefix": ""}}) as gw,
        mcp_client(gw.url, message_handler=on_message) as client,
    ):
        await client.subscribe_resource("test://watched-resource")
        await client.call_tool("test_update_watched_resource", {})
        with anyio.fail_after(10):
            await updated.wait()
        assert "test://watched-resource" in updated_uris
        await client.unsubscribe_resource("test://watched-resource")


async def test_call_timeout_ends_in_a_clear_error_naming_the_upstream() -> None:
    async with running_gateway({"lab": {**lab(), "timeout": 0.5}}) as gw, mcp_client(gw.url) as client:
        started = time.monotonic()
        result = await client.call_tool("lab-slow", {"seconds": 20})
        elapsed = time.monotonic() - started
        assert result.is_error
        assert "'lab'" in text_of(result) and "0.5s" in text_of(result)
        assert elapsed < 5
        assert text_of(await client.call_tool("lab-echo", {"text": "after timeout"})) == "after timeout"


async def test_a_slow_upstream_never_blocks_another() -> None:
    async with (
        running_gateway({"slow": lab(), "fast": lab()}) as gw,
        mcp_client(gw.url) as client,
        mcp_client(gw.url) as other,
    ):
        fast_done_at: list[float] = []
        started = time.monotonic()

        async def slow_call() -> None:
            await client.call_tool("slow-slow", {"seconds": 3})

        async def fast_calls() -> None:
            for _ in range(5):
                assert text_of(await other.call_tool("fast-echo", {"text": "quick"})) == "quick"
            fast_done_at.append(time.monotonic() - started)

        async with anyio.create_task_group() as tg:
            tg.start_soon(slow_call)
            tg.start_soon(fast_calls)
        assert fast_done_at[0] < 2, f"fast upstream waited {fast_done_at[0]:.1f}s behind the slow one"


async def test_upstream_crash_mid_call_fails_that_call_only(tmp_path: Path) -> None:
    async with running_gateway({"fragile": lab(), "steady": lab()}) as gw, mcp_client(gw.url) as client:
        started = time.monotonic()
        crashed = await client.call_tool("fragile-crash", {})
        assert crashed.is_error and "'fragile'" in text_of(crashed)
        assert time.monotonic() - started < 5
        assert text_of(await client.call_tool("steady-echo", {"text": "fine"})) == "fine"
        # While it is down its tools say why; it is restarted in the background and serves again.
        with anyio.fail_after(15):
            while True:
                result = await client.call_tool("fragile-echo", {"text": "back"})
                if not result.is_error:
                    break
                assert "'fragile'" in text_of(result)
                await anyio.sleep(0.2)
        assert text_of(result) == "back"


async def test_upstream_failing_at_start_does_not_stop_the_gateway() -> None:
    upstreams = {"good": lab(), "bad": {"transport": "stdio", "command": "/nonexistent/server"}}
    async with running_gateway(upstreams) as gw, mcp_client(gw.url) as client:
        names = tool_names(await client.list_tools())
        assert "good-echo" in names and not any(n.startswith("bad-") for n in names)
        state = gw.gateway.manager.connections["bad"]
        assert state.state.value == "disconnected" and "/nonexistent/server" in (state.last_error or "")


async def test_many_concurrent_sessions_and_calls() -> None:
    async with running_gateway({"a": lab(), "b": lab()}) as gw:

        async def session(index: int) -> None:
            async with mcp_client(gw.url) as client:
                for call in range(5):
                    name = "a-echo" if (index + call) % 2 else "b-echo"
                    text = f"{index}:{call}"
                    assert text_of(await client.call_tool(name, {"text": text})) == text

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for index in range(20):
                    tg.start_soon(session, index)
