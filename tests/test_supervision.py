"""Background tasks run supervised: a failure in one is logged, the task restarted, and `/mcp` keeps serving.

The unit tests drive `Supervisor` directly; the gateway tests inject a fault into each real background
task in turn (through `Supervisor.inject`, the test hook every supervised loop checks) and watch
`/readyz` report it while MCP clients keep being served.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.lowlevel
import httpx2
import pytest

from mcp_gateway.config import GatewayConfig
from mcp_gateway.http.app import create_gateway
from mcp_gateway.supervisor import InjectedFault, Supervisor, TaskState
from tests.conftest import (
    ADMIN_TOKEN,
    OPEN_AUTH,
    RunningGateway,
    _serve,
    free_port,
    lab,
    mcp_client,
    pg_admin,
    running_gateway,
    text_of,
)
from tests.test_faults import ListChanged

pytestmark = pytest.mark.anyio

FAST_SUPERVISOR = {"backoff_start": 0.05, "backoff_max": 0.2, "stable_after": 3}


# --- the supervisor on its own -------------------------------------------------------------------


async def test_a_failing_task_is_logged_once_restarted_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    supervisor = Supervisor(**FAST_SUPERVISOR)
    runs: list[int] = []
    done = anyio.Event()

    async def flaky() -> None:
        runs.append(len(runs))
        if len(runs) <= 3:
            raise ValueError("boom")
        done.set()
        await anyio.sleep_forever()

    with caplog.at_level(logging.WARNING, logger="mcp_gateway.supervisor"):
        async with anyio.create_task_group() as tg:
            supervisor.spawn(tg, "flaky", flaky, required=True)
            with anyio.fail_after(5):
                await done.wait()
            assert not supervisor.healthy, "it failed less than `stable_after` ago"
            [record] = supervisor.summary()
            assert record == {
                "name": "flaky",
                "state": "recovering",
                "required": True,
                "failures": 3,
                "error": "ValueError: boom",
            }
            tg.cancel_scope.cancel()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(errors) == 1 and errors[0].exc_info is not None, "the traceback is logged once"
    assert len(warnings) == 2 and all("failed again" in r.getMessage() for r in warnings)
    assert supervisor.summary() == [], "a cancelled task leaves the registry"


async def test_a_required_task_that_returns_is_reported_stopped() -> None:
    supervisor = Supervisor(**FAST_SUPERVISOR)

    async def quits() -> None:
        return None

    async with anyio.create_task_group() as tg:
        supervisor.spawn(tg, "watcher", quits, required=True)
        supervisor.spawn(tg, "helper", quits)
    assert not supervisor.healthy
    assert [(t["name"], t["state"]) for t in supervisor.summary()] == [("watcher", TaskState.STOPPED.value)]


async def test_a_required_task_waiting_to_restart_makes_the_supervisor_unhealthy() -> None:
    supervisor = Supervisor(backoff_start=10, backoff_max=10)
    failed = anyio.Event()

    async def broken() -> None:
        failed.set()
        raise RuntimeError("no")

    async with anyio.create_task_group() as tg:
        supervisor.spawn(tg, "broken", broken, required=True)
        await failed.wait()
        await anyio.lowlevel.checkpoint()
        assert not supervisor.healthy
        assert supervisor.summary()[0]["state"] == "restarting"
        tg.cancel_scope.cancel()


async def test_a_task_is_healthy_again_once_it_ran_stable_after_seconds_without_failing() -> None:
    now = [1000.0]
    supervisor = Supervisor(backoff_start=0.01, stable_after=60, clock=lambda: now[0])
    running = anyio.Event()

    async def fails_once() -> None:
        if not supervisor.summary() or supervisor.summary()[0]["failures"] == 0:
            raise RuntimeError("first try")
        running.set()
        await anyio.sleep_forever()

    async with anyio.create_task_group() as tg:
        supervisor.spawn(tg, "watcher", fails_once, required=True)
        with anyio.fail_after(5):
            await running.wait()
        assert not supervisor.healthy and supervisor.summary()[0]["state"] == "recovering"
        now[0] += 59
        assert not supervisor.healthy
        now[0] += 2
        assert supervisor.healthy and supervisor.summary()[0]["state"] == "running"
        tg.cancel_scope.cancel()


def test_checkpoints_raise_only_where_a_fault_is_armed() -> None:
    supervisor = Supervisor()
    supervisor.checkpoint("health:lab")  # nothing armed: a no-op
    supervisor.inject("health:*", times=2)
    supervisor.checkpoint("store-watcher")
    for _ in range(2):
        with pytest.raises(InjectedFault, match="health:lab"):
            supervisor.checkpoint("health:lab")
    supervisor.checkpoint("health:lab")
    supervisor.inject("announcer", times=0)
    for _ in range(5):
        with pytest.raises(InjectedFault):
            supervisor.checkpoint("announcer")
    supervisor.clear_faults()
    supervisor.checkpoint("announcer")


# --- faults injected into a running gateway ------------------------------------------------------


@contextlib.asynccontextmanager
async def gateway_with(upstreams: dict[str, Any], **server: Any) -> AsyncIterator[RunningGateway]:
    port = free_port()
    config = GatewayConfig.model_validate(
        {
            "server": {"port": port, **server},
            "auth": OPEN_AUTH,
            "upstreams": {name: {"allow_on_all_virtual_keys": True, **u} for name, u in upstreams.items()},
        }
    )
    with tempfile.TemporaryDirectory(prefix="mcpgw-test-") as folder:
        gateway = create_gateway(
            config,
            database_url=f"sqlite+aiosqlite:///{folder}/mcpgw.db",
            admin_token=ADMIN_TOKEN,
            supervisor=Supervisor(**FAST_SUPERVISOR),
        )
        async with _serve(gateway, port) as running:
            yield running


async def readyz(gw: RunningGateway) -> httpx2.Response:
    async with httpx2.AsyncClient(timeout=10) as http:
        return await http.get(f"{gw.base_url}/readyz")


async def until(check: Callable[[], Any], what: str, timeout: float = 10) -> Any:
    with anyio.fail_after(timeout):
        while True:
            value = await check()
            if value:
                return value
            await anyio.sleep(0.05)
    raise AssertionError(what)


def failing(body: dict[str, Any], name: str) -> bool:
    return any(t["name"] == name and t["failures"] > 0 for t in body["tasks"])


async def still_serves(gw: RunningGateway) -> None:
    """A brand-new client can connect, list and call: the session manager is alive."""
    async with mcp_client(gw.url) as client:
        assert "lab-echo" in [t.name for t in (await client.list_tools()).tools]
        assert text_of(await client.call_tool("lab-echo", {"text": "served"})) == "served"


LAB = {**lab(), "ping_interval": 0.1, "ping_timeout": 2, "sync_interval": 0.1}


@pytest.mark.parametrize(
    ("task", "required"),
    [("store-watcher", True), ("audit-writer", True), ("announcer", True), ("health:lab", False), ("sync:lab", False)],
)
async def test_a_fault_in_each_background_task_is_reported_and_never_stops_mcp(task: str, required: bool) -> None:
    async with gateway_with({"lab": LAB}) as gw, mcp_client(gw.url) as held:
        supervisor = gw.gateway.supervisor
        supervisor.inject(task, times=0)
        if task == "announcer":
            gw.gateway.clients.request_announce()

        async def reported() -> dict[str, Any] | None:
            body: dict[str, Any] = (await readyz(gw)).json()
            return body if failing(body, task) else None

        body = await until(reported, f"{task} reported failing")
        entry = next(t for t in body["tasks"] if t["name"] == task)
        assert entry["required"] is required and "fault injected" in entry["error"]
        if required:
            # While a required task keeps failing, the gateway says it is not fully ready...
            async def degraded() -> bool:
                response = await readyz(gw)
                return response.status_code == 503 and any(task in p for p in response.json()["problems"])

            await until(degraded, f"/readyz 503 naming {task}")
        # ...but /mcp keeps serving: the session held across the fault, and new clients.
        assert text_of(await held.call_tool("lab-echo", {"text": "held"})) == "held"
        await still_serves(gw)

        supervisor.clear_faults()

        async def recovered() -> bool:
            response = await readyz(gw)
            tasks = {t["name"]: t["state"] for t in response.json()["tasks"]}
            return response.status_code == 200 and tasks.get(task, "running") == "running"

        await until(recovered, f"{task} running again and /readyz 200")
        await still_serves(gw)


async def test_a_crashing_upstream_owner_task_is_restarted_and_the_upstream_reconnects() -> None:
    async with gateway_with({"lab": LAB}) as gw, mcp_client(gw.url) as client:
        gw.gateway.supervisor.inject("upstream:lab", times=1)
        gw.gateway.manager.connections["lab"].reconnect()

        async def reconnected() -> bool:
            body = (await readyz(gw)).json()
            [lab_state] = body["upstreams"]
            return failing(body, "upstream:lab") and lab_state["state"] == "connected"

        await until(reconnected, "the owner task restarted and lab connected again")
        assert text_of(await client.call_tool("lab-echo", {"text": "back"})) == "back"


async def test_a_failure_while_notifying_one_client_affects_that_client_only() -> None:
    first, second = ListChanged(), ListChanged()
    async with (
        gateway_with({"lab": lab()}) as gw,
        mcp_client(gw.url, message_handler=first) as one,
        mcp_client(gw.url, message_handler=second) as two,
    ):
        await one.list_tools()  # registration order: `one` is judged first
        await two.list_tools()
        gw.gateway.supervisor.inject("notify:*", times=1)
        assert text_of(await two.call_tool("lab-add_tool", {"name": "extra"})) == "added"

        async def told() -> bool:
            return second.count >= 1

        await until(told, "the second client hears list_changed")
        await anyio.sleep(0.5)  # the first client's notice, had it been sent, would have come with the second's
        assert first.count == 0, "the first client's turn failed"
        assert text_of(await one.call_tool("lab-echo", {"text": "ok"})) == "ok"

        assert text_of(await two.call_tool("lab-add_tool", {"name": "extra2"})) == "added"

        async def both_told() -> bool:
            return first.count >= 1 and second.count >= 2

        await until(both_told, "both clients hear the next change")
        assert "lab-extra2" in [t.name for t in (await one.list_tools()).tools]
        assert (await readyz(gw)).status_code == 200


# --- readiness and liveness tell the truth -------------------------------------------------------


async def test_liveness_and_readiness_fail_when_the_session_manager_is_not_running() -> None:
    """Without its lifespan (the state the outage left behind) the gateway cannot serve /mcp: say so."""
    gateway = create_gateway(GatewayConfig.model_validate({"auth": OPEN_AUTH}), database_url="sqlite+aiosqlite://")
    transport = httpx2.ASGITransport(app=gateway.app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        health = await http.get("/healthz")
        assert health.status_code == 503
        assert health.json() == {"status": "failing", "reason": "the MCP session manager is not running"}
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert "the MCP session manager is not running" in ready.json()["problems"]


async def test_an_unreachable_store_makes_the_gateway_not_ready_while_mcp_keeps_serving() -> None:
    name = f"mcpgw_{secrets.token_hex(6)}"
    await pg_admin(f'CREATE DATABASE "{name}"')
    try:
        async with running_gateway(
            {"lab": lab()}, database_url=f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        ) as gw:
            assert (await readyz(gw)).status_code == 200
            await pg_admin(f'DROP DATABASE "{name}" WITH (FORCE)')

            async def unreachable() -> dict[str, Any] | None:
                response = await readyz(gw)
                body: dict[str, Any] = response.json()
                return body if response.status_code == 503 and not body["store"]["reachable"] else None

            body = await until(unreachable, "/readyz reports the store", timeout=15)
            assert any(p.startswith("store unreachable: ") for p in body["problems"]), body["problems"]
            await still_serves(gw)
            async with httpx2.AsyncClient(timeout=10) as http:
                # A key the gateway has not cached cannot be checked now: a retryable 503, not a 500.
                unchecked = await http.post(
                    gw.url,
                    json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                    headers={"x-bf-vk": "sk-mcpgw-not-cached", "Accept": "application/json, text/event-stream"},
                )
            assert unchecked.status_code == 503 and unchecked.headers["retry-after"] == "5"
            assert "database is unavailable" in unchecked.json()["error"]["message"]
    finally:
        await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
