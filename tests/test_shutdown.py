"""`mcpgw serve` as a real process: SIGTERM and Ctrl-C end in-flight calls, the process and its stdio children.

An operator stopping the gateway must not leave a client waiting on a call that can no longer finish, a process
that ignores the signal, or an orphaned upstream server.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import LAB_SERVER, ROOT, free_port, text_of

MCPGW = ROOT / ".venv" / "bin" / "mcpgw"
CALL_ENDS_WITHIN = 10.0
EXIT_WITHIN = 10.0

pytestmark = pytest.mark.anyio


@dataclass
class ServedGateway:
    process: anyio.abc.Process
    url: str
    lab_pid: int
    log: Path


@contextlib.asynccontextmanager
async def served_gateway(tmp_path: Path) -> AsyncIterator[ServedGateway]:
    """`mcpgw serve` in its own process, fronting a lab server over stdio; yields once /readyz is 200."""
    events = tmp_path / "lab-events.log"
    config = tmp_path / "gateway.yaml"
    # JSON is valid YAML and needs no quoting rules for paths.
    upstream = {
        "transport": "stdio",
        "command": sys.executable,
        "args": [str(LAB_SERVER)],
        "env": {"LAB_EVENT_LOG": str(events)},
        "allow_on_all_virtual_keys": True,
    }
    settings = {
        "auth": {"enforce_auth_on_inference": False},
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'mcpgw.db'}",
        "upstreams": {"lab": upstream},
    }
    config.write_text(json.dumps(settings), encoding="utf-8")
    port = free_port()
    log = tmp_path / "mcpgw.log"
    with log.open("wb") as sink:
        process = await anyio.open_process(
            [MCPGW, "serve", "--config", config, "--port", str(port), "--log-level", "info", "--insecure-admin"],
            stdout=sink,
            stderr=sink,
            cwd=tmp_path,
        )
    base = f"http://127.0.0.1:{port}"
    lab_pid: int | None = None
    try:
        async with httpx2.AsyncClient(timeout=5) as http:
            with anyio.fail_after(30):
                while True:
                    if process.returncode is not None:
                        pytest.fail(f"mcpgw exited with {process.returncode}:\n{log.read_text()}")
                    try:
                        if (await http.get(f"{base}/readyz")).status_code == 200:
                            break
                    except httpx2.TransportError:
                        pass
                    await anyio.sleep(0.05)
        started = [line.split() for line in events.read_text().splitlines() if line.startswith("started ")]
        assert len(started) == 1, events.read_text()
        lab_pid = int(started[0][1])
        yield ServedGateway(process=process, url=f"{base}/mcp", lab_pid=lab_pid, log=log)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await process.aclose()
        if lab_pid is not None and is_running(lab_pid):  # an orphan the test has already failed on
            os.kill(lab_pid, signal.SIGKILL)


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead but still answers signal 0 until reaped; a container's PID 1 may be slow to reap.
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def innermost(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


async def stop_during_slow_call(tmp_path: Path, signum: signal.Signals) -> None:
    async with served_gateway(tmp_path) as gw:
        call_accepted = anyio.Event()
        call_ended = anyio.Event()
        outcome: dict[str, Any] = {}

        async def on_response(response: httpx2.Response) -> None:
            # The gateway answers a POST with an SSE stream as soon as it dispatches the request, so the headers
            # of the tools/call response mean the call is in flight inside the gateway.
            if response.request.method == "POST" and b'"lab-slow"' in response.request.content:
                call_accepted.set()

        async def slow_call() -> None:
            try:
                async with (
                    httpx2.AsyncClient(
                        timeout=httpx2.Timeout(30, read=300), event_hooks={"response": [on_response]}
                    ) as http,
                    streamable_http_client(gw.url, http_client=http) as (read, write),
                    ClientSession(read, write) as session,
                ):
                    await session.initialize()
                    outcome["warm-up"] = text_of(await session.call_tool("lab-echo", {"text": "warm"}))
                    outcome["result"] = await session.call_tool("lab-slow", {"seconds": 30})
            except Exception as exc:  # what the client sees is the point of the test: record it
                outcome["exception"] = innermost(exc)
            finally:
                call_ended.set()
                call_accepted.set()  # unblock the test if the call never got going

        async with anyio.create_task_group() as tg:
            tg.start_soon(slow_call)
            with anyio.fail_after(20):
                await call_accepted.wait()
            if call_ended.is_set():
                pytest.fail(f"the call ended before the gateway was signalled: {outcome}")
            gw.process.send_signal(signum)
            with anyio.fail_after(CALL_ENDS_WITHIN):
                await call_ended.wait()

        assert outcome["warm-up"] == "warm"
        if "result" in outcome:
            result = outcome["result"]
            assert result.is_error, f"lab-slow finished normally after {signum.name}: {result}"
            seen = f"isError result: {text_of(result)!r}"
        else:
            seen = f"exception: {outcome['exception']!r}"
        # Either outcome is acceptable here; `-s` shows which one this run saw.
        print(f"{signum.name}: in-flight call ended with {seen}")

        with anyio.move_on_after(EXIT_WITHIN):
            await gw.process.wait()
        assert gw.process.returncode is not None, f"mcpgw still running {EXIT_WITHIN:g}s after {signum.name}"
        print(f"{signum.name}: mcpgw exited with {gw.process.returncode}")
        with anyio.move_on_after(5):
            while is_running(gw.lab_pid):
                await anyio.sleep(0.05)
        assert not is_running(gw.lab_pid), f"lab upstream (pid {gw.lab_pid}) outlived the gateway"


async def test_sigterm_ends_in_flight_call_process_and_stdio_child(tmp_path: Path) -> None:
    await stop_during_slow_call(tmp_path, signal.SIGTERM)


async def test_sigint_ends_in_flight_call_process_and_stdio_child(tmp_path: Path) -> None:
    await stop_during_slow_call(tmp_path, signal.SIGINT)
