"""Idle sessions: what 1,000 open MCP sessions that do nothing cost mcpgw in memory (target: gateway RSS ≤ 300 MB).

Why this shape:

* An MCP host opens a session when it starts (an IDE, a chat app) and then mostly waits. Such sessions cost the
  gateway no CPU but memory: per session the SDK's session manager keeps a transport, a server task and its
  streams, and the gateway remembers the client for ``list_changed`` announcements. So the figure is the gateway's
  ``VmRSS`` (``/proc/<pid>/status``) with **N sessions open and idle**, its **delta per session** over a warm
  gateway, and whether it stays flat while nothing happens.
* Each session does what a handshake-era client does before it waits: ``initialize`` (protocol ``2025-11-25``),
  ``notifications/initialized`` and one ``tools/list``, the request on which the gateway registers the client for
  announcements (2026-era sessions are never registered, so they would measure less). The optional GET stream is
  not opened: the gateway does not need it to keep a session, and it would add one held-open HTTP request per
  session, i.e. a different measurement.
* The client is raw JSON-RPC over a handful of ``httpx2.AsyncClient`` pools with HTTP keep-alive, not 1,000 SDK
  ``ClientSession``\\ s (each with its own HTTP client, task group and streams): idle sessions need no client
  CPU, so the client runs in this orchestrator process, and only the gateway's memory is measured. Sessions are
  opened in batches (``--batch``) with bounded concurrency (``--concurrency``); RSS after each batch shows whether
  the cost is linear in N.
* After all are open, ``--idle`` seconds of nothing (RSS and gateway CPU sampled every second): memory that grows
  while no request arrives would be a leak (timers, buffers) that a short run hides. The SDK reaps sessions idle
  for 30 minutes by default, so ``--idle`` must stay well below that. Then one ``tools/call`` on 10 random
  sessions shows they still work, and ``DELETE /mcp`` closes every session at the end.
* One lab upstream over HTTP and ``mcpgw serve`` in front of it, each its own process (the shared ``_runner``
  helpers), with a throwaway SQLite store and no keys (``enforce_auth_on_inference: false``), as in
  ``proxy_overhead.py`` and ``soak.py``. ``/readyz`` confirms how many sessions the gateway holds (``sessions.open``)
  and how many clients it registered for announcements (``clients``).

Usage::

    .venv/bin/python benchmarks/idle_sessions.py                           # 1,000 sessions, 30 s idle (~1 min)
    .venv/bin/python benchmarks/idle_sessions.py --sessions 20 --idle 2    # smoke run
    .venv/bin/python benchmarks/idle_sessions.py --sessions 2000 --idle 120 --concurrency 32

Results go to ``benchmarks/results/idle_sessions-<UTC timestamp>.json`` and ``…/idle_sessions-latest.json``. Every
child process (upstream, gateway) is stopped on exit, error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _load import free_port, percentile
from _results import BenchmarkRun, Column, machine_line, print_table
from _runner import (
    BenchmarkError,
    Child,
    Children,
    cpu_seconds,
    run_with_children,
    start_gateway_for_lab,
    start_lab,
)

if TYPE_CHECKING:
    import httpx2

UPSTREAM_NAME = "lab"
TOOL = f"{UPSTREAM_NAME}-echo"  # the gateway's default prefix is the upstream name, "-" separated
PROTOCOL_VERSION = "2025-11-25"  # handshake era: the gateway registers these clients for announcements
ACCEPT = "application/json, text/event-stream"

TARGET_RSS_MB = 300.0  # issue 16; MB = 10^6 bytes (VmRSS is in KiB), the stricter reading of "300 MB"
STARTUP_TIMEOUT = 30.0
REQUEST_TIMEOUT = 30.0  # per HTTP request, so a wedged gateway fails the run instead of hanging it
SETTLE = 1.0  # seconds before each RSS reading, so in-flight work (logging, GC of request objects) has finished
CHECK_CALLS = 10  # tools/call on this many random sessions after idling

# --------------------------------------------------------------------------------------------------------------
# Gateway process: memory and state
# --------------------------------------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """``VmRSS``/``VmHWM`` (kB) and ``Threads`` of ``pid`` from /proc/<pid>/status (Linux); empty if it is gone."""
    wanted = {"VmRSS", "VmHWM", "Threads"}
    found: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in wanted:
                found[key] = int(value.split()[0])
    except (OSError, ValueError, IndexError):
        return {}
    return found


def open_fds(pid: int) -> int | None:
    """Open file descriptors of ``pid`` (sockets included); None if unreadable."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def mb(kb: float | None) -> float:
    """KiB (as /proc reports) to MB of 10^6 bytes; NaN if unmeasured."""
    return kb * 1024 / 1e6 if kb is not None else math.nan


@dataclass
class Reading:
    """The gateway at one point of the run: memory, threads, sockets, and what ``/readyz`` says it holds."""

    stage: str
    t_s: float
    rss_kb: int | None
    hwm_kb: int | None
    threads: int | None
    fds: int | None
    sessions_open: int | None
    clients_registered: int | None


class Gateway:
    """The gateway under test: its process, URLs, and readings of it over time."""

    def __init__(self, child: Child, base_url: str, t0: float) -> None:
        self.child = child
        self.pid = child.proc.pid
        self.base_url = base_url
        self.mcp_url = base_url + "/mcp"
        self.t0 = t0
        self.readings: list[Reading] = []

    async def read(self, control: httpx2.AsyncClient, stage: str, *, settle: float = SETTLE) -> Reading:
        """Wait ``settle`` seconds, then take and keep one reading (``/readyz`` first, so it does not count)."""
        import anyio

        await anyio.sleep(settle)
        self.child.check_alive()
        sessions_open = clients = None
        try:
            response = await control.get(self.base_url + "/readyz")
            body = response.json()
            sessions_open = (body.get("sessions") or {}).get("open")
            clients = body.get("clients")
        except Exception:  # /readyz is a cross-check; the RSS reading matters more than its failure
            pass
        status = proc_status(self.pid)
        reading = Reading(
            stage=stage,
            t_s=round(time.monotonic() - self.t0, 2),
            rss_kb=status.get("VmRSS"),
            hwm_kb=status.get("VmHWM"),
            threads=status.get("Threads"),
            fds=open_fds(self.pid),
            sessions_open=sessions_open,
            clients_registered=clients,
        )
        self.readings.append(reading)
        return reading


def start_stack(children: Children, workdir: Path) -> tuple[Child, Child, str]:
    """The lab upstream over HTTP and a gateway in front of it; returns both and the gateway's base URL."""
    upstream_port = free_port()
    upstream = start_lab(children, "upstream", upstream_port, timeout=STARTUP_TIMEOUT)
    gateway, base = start_gateway_for_lab(
        children, workdir, f"http://127.0.0.1:{upstream_port}/mcp", timeout=STARTUP_TIMEOUT
    )
    return upstream, gateway, base


# --------------------------------------------------------------------------------------------------------------
# Client: raw JSON-RPC sessions over a few keep-alive pools
# --------------------------------------------------------------------------------------------------------------


class RpcError(RuntimeError):
    """The gateway answered, but not with what a session needs (HTTP status, JSON-RPC error, missing header)."""


@dataclass
class Session:
    """One open MCP session: its id and the HTTP pool it talks over."""

    sid: str
    client: httpx2.AsyncClient
    next_id: int = 3  # 1 and 2 went to initialize and tools/list

    def headers(self) -> dict[str, str]:
        return {"accept": ACCEPT, "mcp-session-id": self.sid, "mcp-protocol-version": PROTOCOL_VERSION}


def _answer(response: httpx2.Response, request_id: int) -> dict[str, Any]:
    """The JSON-RPC result for ``request_id`` from a plain JSON or an event-stream answer."""
    if response.status_code != 200:
        raise RpcError(f"HTTP {response.status_code}: {response.text[:300]}")
    content_type = response.headers.get("content-type", "")
    messages: list[Any] = []
    if content_type.startswith("application/json"):
        messages = [response.json()]
    elif content_type.startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data:") and line[5:].strip():
                messages.append(json.loads(line[5:]))
    else:
        raise RpcError(f"unexpected content-type {content_type!r}: {response.text[:300]}")
    for message in messages:
        if isinstance(message, dict) and message.get("id") == request_id:
            if "error" in message:
                raise RpcError(f"JSON-RPC error: {message['error']}"[:300])
            result: dict[str, Any] = message.get("result") or {}
            return result
    raise RpcError(f"no answer to request {request_id} in {response.text[:300]!r}")


async def open_session(client: httpx2.AsyncClient, url: str) -> Session:
    """initialize → notifications/initialized → tools/list, as a handshake-era client does before it waits."""
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "mcpgw-idle-sessions-bench", "version": "1"},
        },
    }
    response = await client.post(url, json=init, headers={"accept": ACCEPT})
    _answer(response, 1)
    sid = response.headers.get("mcp-session-id")
    if not sid:
        raise RpcError("initialize answered without an mcp-session-id header")
    session = Session(sid, client)
    response = await client.post(
        url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session.headers()
    )
    if response.status_code != 202:
        raise RpcError(f"notifications/initialized: HTTP {response.status_code}: {response.text[:300]}")
    response = await client.post(
        url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}, headers=session.headers()
    )
    if not _answer(response, 2).get("tools"):
        raise RpcError("tools/list returned no tools")
    return session


async def call_echo(session: Session, url: str, text: str) -> None:
    """One ``tools/call`` of the upstream's echo through the gateway, checked to come back unchanged."""
    request_id = session.next_id
    session.next_id += 1
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": TOOL, "arguments": {"text": text}},
    }
    result = _answer(await session.client.post(url, json=body, headers=session.headers()), request_id)
    content = result.get("content") or [{}]
    if result.get("isError") or content[0].get("text") != text:
        raise RpcError(f"unexpected tools/call result: {result!r}"[:300])


async def close_session(session: Session, url: str) -> bool:
    """``DELETE /mcp`` for the session; True if the gateway confirmed it."""
    response = await session.client.delete(url, headers=session.headers())
    return response.status_code in (200, 202, 204)


def _describe(exc: BaseException) -> str:
    """One line for an error, unwrapping exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"[:300]


# --------------------------------------------------------------------------------------------------------------
# The measurement
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What the async part measured besides the readings."""

    opened: int = 0
    open_failures: list[str] = field(default_factory=list)
    open_wall_s: float = math.nan
    open_latencies_s: list[float] = field(default_factory=list)
    open_gateway_cpu_s: float = math.nan
    batches: list[dict[str, Any]] = field(default_factory=list)
    idle_samples: list[tuple[float, int | None]] = field(default_factory=list)
    idle_gateway_cpu_s: float = math.nan
    idle_wall_s: float = math.nan
    check_calls_ok: int = 0
    check_failures: list[str] = field(default_factory=list)
    closed: int = 0
    close_failures: int = 0


async def measure(gw: Gateway, args: argparse.Namespace) -> Outcome:
    """Warm up, open the sessions in batches, idle, check, close; readings of the gateway at every step."""
    import anyio
    import httpx2

    out = Outcome()
    timeout = httpx2.Timeout(REQUEST_TIMEOUT)
    per_pool = max(1, math.ceil(args.concurrency / args.pools))
    limits = httpx2.Limits(max_connections=per_pool, max_keepalive_connections=per_pool)
    async with httpx2.AsyncClient(timeout=timeout) as control:
        pools = [httpx2.AsyncClient(timeout=timeout, limits=limits) for _ in range(args.pools)]
        try:
            await gw.read(control, "started", settle=0)
            warm = await open_session(pools[0], gw.mcp_url)
            await call_echo(warm, gw.mcp_url, "warm")
            await close_session(warm, gw.mcp_url)
            await gw.read(control, "warm (1 call)")

            sessions: list[Session] = []
            cpu_before, started = cpu_seconds(gw.pid), time.perf_counter()
            next_index = 0

            async def opener(batch_end: int) -> None:
                nonlocal next_index
                while next_index < batch_end:
                    index = next_index
                    next_index += 1
                    t = time.perf_counter()
                    try:
                        session = await open_session(pools[index % len(pools)], gw.mcp_url)
                    except Exception as exc:
                        out.open_failures.append(_describe(exc))
                        continue
                    out.open_latencies_s.append(time.perf_counter() - t)
                    sessions.append(session)

            while next_index < args.sessions:
                batch_end = min(args.sessions, next_index + args.batch)
                async with anyio.create_task_group() as tg:
                    for _ in range(min(args.concurrency, batch_end - next_index)):
                        tg.start_soon(opener, batch_end)
                gw.child.check_alive()
                status = proc_status(gw.pid)
                out.batches.append(
                    {
                        "sessions": len(sessions),
                        "t_s": round(time.perf_counter() - started, 2),
                        "rss_kb": status.get("VmRSS"),
                    }
                )
                if len(out.open_failures) > max(10, args.sessions // 100):
                    raise BenchmarkError(
                        f"{len(out.open_failures)} sessions failed to open; first: {out.open_failures[0]}\n"
                        f"--- gateway output ---\n{gw.child.stderr_tail(15)}"
                    )
            out.open_wall_s = time.perf_counter() - started
            out.open_gateway_cpu_s = cpu_seconds(gw.pid) - cpu_before
            out.opened = len(sessions)
            print(
                f"{out.opened} sessions open in {out.open_wall_s:.1f} s "
                f"({len(out.open_failures)} failed); idling {args.idle:.0f} s",
                flush=True,
            )
            await gw.read(control, "sessions open")

            idle_start = time.monotonic()
            cpu_before = cpu_seconds(gw.pid)
            out.idle_samples.append((0.0, proc_status(gw.pid).get("VmRSS")))
            while (elapsed := time.monotonic() - idle_start) < args.idle:
                await anyio.sleep(min(1.0, args.idle - elapsed))
                gw.child.check_alive()
                out.idle_samples.append((round(time.monotonic() - idle_start, 1), proc_status(gw.pid).get("VmRSS")))
            out.idle_wall_s = time.monotonic() - idle_start
            out.idle_gateway_cpu_s = cpu_seconds(gw.pid) - cpu_before
            await gw.read(control, f"after {args.idle:.0f} s idle", settle=0)

            rng = random.Random(args.seed)
            for session in rng.sample(sessions, min(CHECK_CALLS, len(sessions))):
                try:
                    await call_echo(session, gw.mcp_url, f"still-there-{session.sid[:8]}")
                    out.check_calls_ok += 1
                except Exception as exc:
                    out.check_failures.append(_describe(exc))
            await gw.read(control, f"after {CHECK_CALLS} calls")

            async def closer(queue: list[Session]) -> None:
                while queue:
                    session = queue.pop()
                    try:
                        ok = await close_session(session, gw.mcp_url)
                    except Exception:
                        ok = False
                    out.closed += ok
                    out.close_failures += not ok

            queue = list(sessions)
            async with anyio.create_task_group() as tg:
                for _ in range(args.concurrency):
                    tg.start_soon(closer, queue)
            await gw.read(control, "sessions closed", settle=2 * SETTLE)
        finally:
            for pool in pools:
                await pool.aclose()
    return out


def run(args: argparse.Namespace, workdir: Path, children: Children) -> tuple[Gateway, Outcome]:
    """Start the upstream and gateway, then run the async measurement against them."""
    import anyio

    t0 = time.monotonic()
    _, child, base = start_stack(children, workdir)
    gw = Gateway(child, base, t0)
    print(f"gateway {gw.mcp_url} (pid {gw.pid}); opening {args.sessions} sessions", flush=True)
    try:
        outcome = anyio.run(measure, gw, args)
    except BaseExceptionGroup as group:  # a failure inside a task group: report its first cause
        raise BenchmarkError(f"{_describe(group)}\n--- gateway output ---\n{child.stderr_tail(15)}") from None
    except (RpcError, OSError) as exc:
        raise BenchmarkError(f"{_describe(exc)}\n--- gateway output ---\n{child.stderr_tail(15)}") from None
    return gw, outcome


# --------------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------------


def summarise(gw: Gateway, out: Outcome, args: argparse.Namespace) -> dict[str, Any]:
    by_stage = {r.stage: r for r in gw.readings}
    warm = by_stage["warm (1 call)"].rss_kb
    opened = by_stage["sessions open"].rss_kb
    idle = by_stage[f"after {args.idle:.0f} s idle"].rss_kb
    n = out.opened

    def per_session(kb: int | None) -> float:
        return (kb - warm) / n if kb is not None and warm is not None and n else math.nan

    idle_rss = [kb for _, kb in out.idle_samples if kb is not None]
    latencies = sorted(out.open_latencies_s)
    rss_ok = idle is not None and mb(idle) <= TARGET_RSS_MB
    sessions_ok = n == args.sessions and out.check_calls_ok == min(CHECK_CALLS, n)
    return {
        "sessions_requested": args.sessions,
        "sessions_opened": n,
        "open_failures": len(out.open_failures),
        "open_failures_sample": out.open_failures[:10],
        "open_wall_s": out.open_wall_s,
        "open_sessions_per_s": n / out.open_wall_s if out.open_wall_s else math.nan,
        "open_latency_ms": {
            "p50": percentile(latencies, 0.50) * 1000,
            "p99": percentile(latencies, 0.99) * 1000,
            "max": latencies[-1] * 1000 if latencies else math.nan,
            "mean": statistics.fmean(latencies) * 1000 if latencies else math.nan,
        },
        "open_gateway_cpu_ms_per_session": out.open_gateway_cpu_s * 1000 / n if n else math.nan,
        "rss_kb": {"started": by_stage["started"].rss_kb, "warm": warm, "sessions_open": opened, "idle": idle},
        "rss_kb_per_session_open": per_session(opened),
        "rss_kb_per_session_idle": per_session(idle),
        "rss_idle_growth_kb": idle_rss[-1] - idle_rss[0] if idle_rss else math.nan,
        "rss_idle_min_max_kb": [min(idle_rss), max(idle_rss)] if idle_rss else None,
        "idle_gateway_cpu_pct": out.idle_gateway_cpu_s * 100 / out.idle_wall_s if out.idle_wall_s else math.nan,
        "rss_per_batch": out.batches,
        "rss_idle_samples": out.idle_samples,
        "readings": [r.__dict__ for r in gw.readings],
        "check_calls_ok": out.check_calls_ok,
        "check_failures": out.check_failures,
        "closed": out.closed,
        "close_failures": out.close_failures,
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        "targets": {
            "rss_after_idle_le_300mb": rss_ok,
            "all_sessions_opened_and_working": sessions_ok,
        },
    }


def print_report(summary: dict[str, Any], gw: Gateway, args: argparse.Namespace, machine: dict[str, Any]) -> None:
    print()
    print(machine_line(machine, ("mcp", "httpx2", "uvicorn")))
    rows = [
        {
            **r.__dict__,
            "rss_mb": mb(r.rss_kb),
            "delta_mb": mb(r.rss_kb - summary["rss_kb"]["warm"])
            if r.rss_kb is not None and summary["rss_kb"]["warm"] is not None
            else math.nan,
        }
        for r in gw.readings
    ]
    print_table(
        [
            Column("stage", "stage", "<16"),
            Column("t s", "t_s", "7.1f"),
            Column("VmRSS kB", "rss_kb", "10,"),
            Column("MB", "rss_mb", "7.1f"),
            Column("vs warm MB", "delta_mb", "+10.1f"),
            Column("VmHWM kB", "hwm_kb", "10,"),
            Column("threads", "threads", "7"),
            Column("fds", "fds", "5"),
            Column("sessions", "sessions_open", "8"),
            Column("registered", "clients_registered", "10"),
        ],
        rows,
    )
    lat = summary["open_latency_ms"]
    print()
    print(
        f"opening {summary['sessions_opened']}/{summary['sessions_requested']} sessions "
        f"({summary['open_failures']} failed): {summary['open_wall_s']:.1f} s, "
        f"{summary['open_sessions_per_s']:.0f} sessions/s at concurrency {args.concurrency}; per session "
        f"p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms; gateway CPU "
        f"{summary['open_gateway_cpu_ms_per_session']:.1f} ms per session opened"
    )
    print(
        f"RSS per session (over the warm gateway): {summary['rss_kb_per_session_open']:.1f} kB when opened, "
        f"{summary['rss_kb_per_session_idle']:.1f} kB after idling"
    )
    low, high = summary["rss_idle_min_max_kb"] or (math.nan, math.nan)
    print(
        f"while idle {args.idle:.0f} s: RSS {summary['rss_idle_growth_kb']:+,} kB first→last sample "
        f"(min {low:,}, max {high:,} kB); gateway CPU {summary['idle_gateway_cpu_pct']:.1f} % of a core"
    )
    print(
        f"after idling: {summary['check_calls_ok']}/{min(CHECK_CALLS, summary['sessions_opened'])} tools/call ok"
        + (f" (first failure: {summary['check_failures'][0]})" if summary["check_failures"] else "")
        + f"; closed {summary['closed']} sessions ({summary['close_failures']} DELETE failures)"
    )
    idle_mb = mb(summary["rss_kb"]["idle"])
    labels = {
        "rss_after_idle_le_300mb": f"gateway RSS after idling ≤ {TARGET_RSS_MB:.0f} MB ({idle_mb:.1f} MB)",
        "all_sessions_opened_and_working": "every session opened, and the calls after idling succeeded",
    }
    for key, passed in summary["targets"].items():
        print(f"{'PASS' if passed else 'FAIL'}  {labels[key]}")


def orchestrate(args: argparse.Namespace) -> int:
    bench = BenchmarkRun("idle_sessions")
    gw, outcome = run_with_children(
        "mcpgw-idle-sessions-",
        lambda workdir, children: run(args, workdir, children),
        failure="idle_sessions failed",
    )
    summary = summarise(gw, outcome, args)
    print_report(summary, gw, args, bench.machine)
    print(f"total runtime {bench.elapsed():.0f} s")
    settings = {k: getattr(args, k) for k in ("sessions", "idle", "batch", "concurrency", "pools", "seed")}
    settings |= {"protocol_version": PROTOCOL_VERSION, "target_rss_mb": TARGET_RSS_MB, "get_streams": False}
    bench.save(bench.record(settings=settings, summary=summary))
    return 0 if all(summary["targets"].values()) else 2


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sessions", type=int, default=1000, help="sessions to open and keep idle (default 1000)")
    parser.add_argument("--idle", type=float, default=30, help="seconds to leave them idle (default 30)")
    parser.add_argument("--batch", type=int, default=100, help="sessions per batch, RSS read after each (100)")
    parser.add_argument("--concurrency", type=int, default=16, help="sessions opened at once (default 16)")
    parser.add_argument("--pools", type=int, default=4, help="httpx2 clients the sessions share (default 4)")
    parser.add_argument("--seed", type=int, default=1, help="random seed for the sessions checked (default 1)")
    args = parser.parse_args(argv)
    if min(args.sessions, args.batch, args.concurrency, args.pools) < 1 or args.idle < 0:
        parser.error("--sessions, --batch, --concurrency and --pools must be positive, --idle not negative")
    if args.idle > 1500:
        parser.error("--idle must stay well below the SDK's 1800 s session idle timeout")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return orchestrate(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
