"""Soak: hundreds of client sessions through mcpgw for minutes while upstreams are killed and restarted under it.

Why this shape:

* Short benchmarks miss what only time and churn show: memory that grows with every session or reconnect, a
  session that wedges after an upstream vanished, errors that leak from one upstream's outage to another's callers.
  So this runs **200 concurrent SDK sessions** (streamable HTTP, one ``httpx2`` client each, opened with the same
  ``_load.open_session`` as the other benchmarks) for ``--duration`` seconds against **real upstreams**: three lab
  servers over HTTP (``http1``…``http3``) and one over stdio (``stdio1``, started by the gateway).
* The sessions live in a few **separate load-client processes** (default 4 x 50): one Python process driving 200
  sessions would be CPU-bound itself and the figures would describe the client, not the gateway.
* Every ~30-60 s one HTTP upstream is **SIGKILLed and restarted** on the same port; the gateway must notice and
  reconnect by itself. The orchestrator polls ``/readyz`` to time the outage as the gateway saw it.
* Errors are split: a call to the restarted upstream that overlaps [kill, gateway reconnected + ``--fault-grace``]
  is an **injected-fault error** (expected: that upstream was down); any other error is a real failure. Target:
  **0 errors outside injected faults**.
* Gateway memory: ``VmRSS`` from ``/proc/<pid>/status`` after the warm-up (sessions open, caches full) and at the
  end, still under load, so both readings see the same steady state. Target: **< 10 % growth**.
* Calls mix ``echo`` (result checked) and ``progress`` (notifications relayed back to the caller, counted), each to a
  random upstream, with a think time per session (``--think``) so the offered load stays under the 2-core
  machine's capacity; ``--think 0`` makes it closed-loop at saturation.

Usage::

    .venv/bin/python benchmarks/soak.py                              # 300 s, 200 sessions (~6.5 min in all)
    .venv/bin/python benchmarks/soak.py --duration 60 --sessions 40  # quick run

Results go to ``benchmarks/results/soak-<UTC timestamp>.json`` and ``…/soak-latest.json``. Every child process
(upstreams, gateway, load clients and anything they started) is stopped on exit, error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import signal
import statistics
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _load import CALL_TIMEOUT, free_port, open_session, percentile, silence_sdk_deprecations
from _results import BenchmarkRun
from _runner import (
    LAB_SERVER,
    BenchmarkError,
    Child,
    Children,
    cpu_seconds,
    lab_argv,
    mcpgw_command,
    port_open,
    run_with_children,
    start_lab,
    wait_for_ready,
)

if TYPE_CHECKING:
    from mcp import ClientSession

HTTP_UPSTREAMS: tuple[str, ...] = ("http1", "http2", "http3")
STDIO_UPSTREAM = "stdio1"
UPSTREAMS: tuple[str, ...] = (*HTTP_UPSTREAMS, STDIO_UPSTREAM)
TOOLS: tuple[str, ...] = ("echo", "progress")

STARTUP_TIMEOUT = 60.0
READY_TIMEOUT = 180.0  # all load clients have opened all their sessions
RECONNECT_TIMEOUT = 90.0  # the gateway must be serving a restarted upstream again within this
RSS_SAMPLE_EVERY = 5.0
RSS_GROWTH_TARGET_PCT = 10.0
SHUTDOWN_GRACE = CALL_TIMEOUT + 10  # load clients finish in-flight calls, then close their sessions

# --------------------------------------------------------------------------------------------------------------
# Worker: one load-client process with many sessions
# --------------------------------------------------------------------------------------------------------------


def _describe(exc: BaseException) -> str:
    """One line for an error, unwrapping exception groups (transport failures arrive as groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"[:300]


@dataclass
class WorkerState:
    """Everything one load-client process records; written as JSON for the orchestrator when it stops."""

    worker: int
    sessions: int
    opened: int = 0
    calls: list[tuple[float, float, int, int, int]] = field(default_factory=list)  # start, secs, upstream, tool, ok
    errors: list[dict[str, Any]] = field(default_factory=list)
    session_events: list[dict[str, Any]] = field(default_factory=list)
    progress_expected: int = 0
    progress_received: int = 0


async def _soak_worker(args: argparse.Namespace) -> WorkerState:
    """Keep ``--sessions`` sessions calling tools until SIGUSR1 arrives (or the hard deadline passes).

    Each session: open, then call → think → call … A call that fails with an MCP error (the gateway answered)
    leaves the session in use; anything else (transport trouble) closes it and opens a new one a second later,
    recorded as a session event. On stop, in-flight calls may finish for ``SHUTDOWN_GRACE`` seconds.
    """
    import anyio
    from mcp import MCPError

    state = WorkerState(worker=args.worker_id, sessions=args.sessions)
    stop = anyio.Event()
    upstreams: list[str] = args.upstreams.split(",")
    ready_file = Path(args.ready_file)

    async def watch(scope: anyio.CancelScope) -> None:
        """Stop on SIGUSR1 from the orchestrator (or at the hard deadline), then give calls a grace period."""
        with anyio.open_signal_receiver(signal.SIGUSR1) as signals, anyio.move_on_after(args.hard_stop):
            async for _ in signals:
                break
        stop.set()
        await anyio.sleep(SHUTDOWN_GRACE)
        scope.cancel()

    async def one_call(session: ClientSession, rng: random.Random, tag: str) -> None:
        u = rng.randrange(len(upstreams))
        k = 1 if rng.random() < args.progress_share else 0
        name = f"{upstreams[u]}-{TOOLS[k]}"
        received = [0]

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            received[0] += 1

        started = time.monotonic()
        error: str | None = None
        broken: BaseException | None = None
        try:
            if k == 1:
                result = await session.call_tool(name, {"steps": args.progress_steps}, progress_callback=on_progress)
                expected = "ok"
            else:
                result = await session.call_tool(name, {"text": tag})
                expected = tag
            text = getattr(result.content[0], "text", None) if result.content else None
            if result.is_error:  # how the gateway reports an unavailable upstream
                error = f"isError: {text}"[:300]
            elif text != expected:
                error = f"unexpected result: {result!r}"[:300]
        except MCPError as exc:
            error = _describe(exc)
        except Exception as exc:  # transport trouble: record it, then reopen the session
            error, broken = _describe(exc), exc
        elapsed = time.monotonic() - started
        state.calls.append((started, elapsed, u, k, 0 if error else 1))
        if k == 1 and not error:
            state.progress_expected += args.progress_steps
            state.progress_received += received[0]
        if error:
            state.errors.append(
                {"t": started, "secs": elapsed, "upstream": upstreams[u], "tool": TOOLS[k], "error": error}
            )
        if broken is not None:
            raise broken

    async def session_loop(index: int) -> None:
        rng = random.Random(args.seed * 1_000_003 + args.worker_id * 10_007 + index)
        await anyio.sleep(index * args.stagger)
        counted, n = False, 0
        while not stop.is_set():
            try:
                async with contextlib.AsyncExitStack() as stack:
                    session = await open_session(stack, args.url)
                    if not counted:
                        counted = True
                        state.opened += 1
                        if state.opened == state.sessions:
                            await anyio.Path(ready_file).write_text(str(os.getpid()))
                    while not stop.is_set():
                        n += 1
                        await one_call(session, rng, f"w{args.worker_id}-s{index}-n{n}")
                        if args.think > 0:
                            with anyio.move_on_after(args.think * rng.uniform(0.5, 1.5)):
                                await stop.wait()
            except Exception as exc:
                state.session_events.append({"t": time.monotonic(), "session": index, "error": _describe(exc)})
                with anyio.move_on_after(1.0):
                    await stop.wait()

    async with anyio.create_task_group() as outer:
        sessions_scope = anyio.CancelScope()
        outer.start_soon(watch, sessions_scope)
        with sessions_scope:
            async with anyio.create_task_group() as tg:
                for index in range(args.sessions):
                    tg.start_soon(session_loop, index)
        outer.cancel_scope.cancel()
    return state


def worker_main(args: argparse.Namespace) -> int:
    """Entry point of ``--worker``: run until told to stop, then write the recorded calls to ``--out``."""
    import anyio

    silence_sdk_deprecations()
    state = anyio.run(_soak_worker, args)
    payload = asdict(state)
    payload["cpu_s"] = time.process_time()
    Path(args.out).write_text(json.dumps(payload))
    return 0


# --------------------------------------------------------------------------------------------------------------
# Orchestrator: processes, faults, memory
# --------------------------------------------------------------------------------------------------------------


def vm_rss_kb(pid: int) -> int | None:
    """Resident set size of ``pid`` in kB from /proc/<pid>/status (Linux); None if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def readyz(base_url: str) -> dict[str, Any] | None:
    """``GET /readyz`` body (served with 200 or 503), or None if the gateway did not answer."""
    try:
        with urllib.request.urlopen(base_url + "/readyz", timeout=2) as response:
            body: dict[str, Any] = json.loads(response.read())
            return body
    except urllib.error.HTTPError as exc:
        try:
            parsed: dict[str, Any] = json.loads(exc.read())
            return parsed
        except ValueError:
            return None
    except (OSError, ValueError):
        return None


def upstream_state(base_url: str, name: str) -> str | None:
    """The gateway's view of one upstream (``connected``, ``connecting``, …) from ``/readyz``."""
    body = readyz(base_url)
    for entry in (body or {}).get("upstreams", []):
        if entry.get("name") == name:
            state = entry.get("state")
            return str(state) if state is not None else None
    return None


@dataclass
class Restart:
    """One injected fault: when the upstream was killed, listened again, and the gateway served it again."""

    upstream: str
    killed: float
    listening: float | None = None
    gateway_noticed: float | None = None  # first /readyz poll after the kill showing it not connected
    reconnected: float | None = None  # first poll after that showing it connected again

    def window_end(self, grace: float, run_end: float) -> float:
        """End of the injected-fault window; an outage never seen to end lasts to the end of the run."""
        return (self.reconnected + grace) if self.reconnected is not None else run_end + SHUTDOWN_GRACE


@dataclass
class Stack:
    """The processes under test and their addresses."""

    children: Children
    gateway: Child
    base_url: str
    upstreams: dict[str, Child]
    ports: dict[str, int]
    lab_env: dict[str, dict[str, str]]


def start_stack(children: Children, workdir: Path) -> Stack:
    """Three HTTP lab servers, then mcpgw in front of them plus one stdio lab it starts itself."""
    ports = {name: free_port() for name in HTTP_UPSTREAMS}
    lab_env = {name: {"LAB_NAME": name} for name in HTTP_UPSTREAMS}
    upstreams = {
        name: start_lab(children, name, ports[name], env=lab_env[name], timeout=STARTUP_TIMEOUT)
        for name in HTTP_UPSTREAMS
    }
    lines = [
        "server:",
        "  host: 127.0.0.1",
        "auth:",
        "  enforce_auth_on_inference: false",
        f"database_url: sqlite:///{workdir / 'gateway.db'}",
        "upstreams:",
    ]
    for name in HTTP_UPSTREAMS:
        lines += [
            f"  {name}:",
            "    transport: http",
            f"    url: http://127.0.0.1:{ports[name]}/mcp",
            "    allow_on_all_virtual_keys: true",
        ]
    lines += [
        f"  {STDIO_UPSTREAM}:",
        "    transport: stdio",
        f"    command: {json.dumps(sys.executable)}",
        f"    args: [{json.dumps(str(LAB_SERVER))}]",
        f"    env: {{LAB_NAME: {STDIO_UPSTREAM}}}",
        "    allow_on_all_virtual_keys: true",
    ]
    config = workdir / "gateway.yaml"
    config.write_text("\n".join(lines) + "\n")
    port = free_port()
    gateway = children.start(
        "gateway", [mcpgw_command(), "serve", "--config", str(config), "--port", str(port), "--log-level", "warning"]
    )
    base_url = f"http://127.0.0.1:{port}"
    ready = wait_for_ready(gateway, base_url, STARTUP_TIMEOUT)
    if ready.get("tools", 0) < len(UPSTREAMS):
        raise BenchmarkError(f"gateway is ready but lists too few tools: {ready}")
    return Stack(children, gateway, base_url, upstreams, ports, lab_env)


def inject_restart(stack: Stack, name: str, deadline: float) -> Restart:
    """SIGKILL one HTTP upstream, start it again on the same port, and time the gateway's recovery.

    ``/readyz`` is polled every 0.1 s: the outage as the gateway saw it starts at the first poll showing the
    upstream not connected and ends at the first poll after that showing it connected again.
    """
    old = stack.upstreams[name]
    event = Restart(upstream=name, killed=time.monotonic())
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(old.proc.pid, signal.SIGKILL)
    old.proc.wait(timeout=10)
    stack.upstreams[name] = new = stack.children.start(
        f"{name}-restart{int(event.killed)}",
        lab_argv(stack.ports[name]),
        env={**os.environ, **stack.lab_env[name]},
    )
    limit = min(deadline, event.killed + RECONNECT_TIMEOUT)
    while time.monotonic() < limit:
        now = time.monotonic()
        if event.listening is None and port_open(stack.ports[name], timeout=0.3):
            event.listening = now
        state = upstream_state(stack.base_url, name)
        if event.gateway_noticed is None and state is not None and state != "connected":
            event.gateway_noticed = now
        elif event.gateway_noticed is not None and state == "connected":
            event.reconnected = now
            break
        if new.proc.poll() is not None:
            raise BenchmarkError(f"restarted upstream {name} exited:\n{new.stderr_tail()}")
        time.sleep(0.1)
    return event


# --------------------------------------------------------------------------------------------------------------
# Analysis
# --------------------------------------------------------------------------------------------------------------


def analyse(
    workers: Sequence[dict[str, Any]],
    restarts: Sequence[Restart],
    t0: float,
    t_end: float,
    grace: float,
) -> dict[str, Any]:
    """Calls started in [t0, t_end]: counts, latency, and errors split into injected-fault vs outside."""
    windows: dict[str, list[tuple[float, float]]] = {}
    for r in restarts:
        windows.setdefault(r.upstream, []).append((r.killed, r.window_end(grace, t_end)))

    def in_fault(upstream: str, start: float, secs: float) -> bool:
        return any(start <= end and start + secs >= begin for begin, end in windows.get(upstream, []))

    latencies: list[float] = []
    latencies_by_tool: dict[str, list[float]] = {tool: [] for tool in TOOLS}
    per_upstream: Counter[str] = Counter()
    total = ok = 0
    for w in workers:
        for start, secs, u, k, success in w["calls"]:
            if not t0 <= start <= t_end:
                continue
            total += 1
            per_upstream[UPSTREAMS[u]] += 1
            if success:
                ok += 1
                latencies.append(secs)
                latencies_by_tool[TOOLS[k]].append(secs)
    fault_errors: list[dict[str, Any]] = []
    outside_errors: list[dict[str, Any]] = []
    for w in workers:
        for e in w["errors"]:
            if not t0 <= e["t"] <= t_end:
                continue
            (fault_errors if in_fault(e["upstream"], e["t"], e["secs"]) else outside_errors).append(
                {**e, "t_rel": round(e["t"] - t0, 3)}
            )
    session_events = [
        {**ev, "worker": w["worker"], "t_rel": round(ev["t"] - t0, 3)}
        for w in workers
        for ev in w["session_events"]
        if t0 <= ev["t"] <= t_end
    ]
    latencies.sort()
    for values in latencies_by_tool.values():
        values.sort()

    def ms(values: Sequence[float], q: float) -> float:
        return percentile(values, q) * 1000

    def kinds(errors: Sequence[dict[str, Any]]) -> dict[str, int]:
        return dict(Counter(f"{e['tool']}: {e['error'][:120]}" for e in errors).most_common(10))

    expected = sum(w["progress_expected"] for w in workers)
    received = sum(w["progress_received"] for w in workers)
    wall = t_end - t0
    return {
        "window_s": wall,
        "calls": total,
        "ok": ok,
        "calls_per_s": total / wall if wall > 0 else math.nan,
        "per_upstream": dict(per_upstream),
        "errors_total": len(fault_errors) + len(outside_errors),
        "errors_during_faults": len(fault_errors),
        "errors_outside_faults": len(outside_errors),
        "error_kinds_during_faults": kinds(fault_errors),
        "error_kinds_outside_faults": kinds(outside_errors),
        "errors_outside_faults_sample": outside_errors[:20],
        "session_reopens": len(session_events),
        "session_events_sample": session_events[:20],
        "latency_ms": {
            "p50": ms(latencies, 0.50),
            "p90": ms(latencies, 0.90),
            "p99": ms(latencies, 0.99),
            "max": latencies[-1] * 1000 if latencies else math.nan,
            "mean": statistics.fmean(latencies) * 1000 if latencies else math.nan,
            **{f"{tool}_p50": ms(v, 0.50) for tool, v in latencies_by_tool.items()},
            **{f"{tool}_p99": ms(v, 0.99) for tool, v in latencies_by_tool.items()},
        },
        "progress_notifications": {
            "expected": expected,
            "received": received,
            "ratio": received / expected if expected else math.nan,
        },
    }


# --------------------------------------------------------------------------------------------------------------
# Orchestrator: main
# --------------------------------------------------------------------------------------------------------------


def start_workers(children: Children, workdir: Path, base_url: str, args: argparse.Namespace) -> list[Child]:
    """The load clients: ``--processes`` copies of this script in ``--worker`` mode, sessions split evenly."""
    per = [
        args.sessions // args.processes + (1 if i < args.sessions % args.processes else 0)
        for i in range(args.processes)
    ]
    hard_stop = args.warmup + args.duration + READY_TIMEOUT + 60
    workers = []
    for i, sessions in enumerate(per):
        if sessions == 0:
            continue
        argv = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            "--worker-id",
            str(i),
            "--url",
            base_url + "/mcp",
            "--sessions",
            str(sessions),
            "--upstreams",
            ",".join(UPSTREAMS),
            "--think",
            str(args.think),
            "--progress-share",
            str(args.progress_share),
            "--progress-steps",
            str(args.progress_steps),
            "--stagger",
            str(args.stagger),
            "--seed",
            str(args.seed),
            "--hard-stop",
            str(hard_stop),
            "--ready-file",
            str(workdir / f"ready-{i}"),
            "--out",
            str(workdir / f"worker-{i}.json"),
        ]
        workers.append(children.start(f"worker-{i}", argv))
    return workers


def check_alive(stack: Stack, workers: Sequence[Child]) -> None:
    for child in (stack.gateway, *workers):
        if child.proc.poll() is not None:
            raise BenchmarkError(f"{child.name} exited with {child.proc.returncode}:\n{child.stderr_tail()}")


def run_soak(args: argparse.Namespace, workdir: Path, children: Children) -> dict[str, Any]:
    """Start everything, warm up, soak with injected restarts, stop the load, and collect the records."""
    rng = random.Random(args.seed)
    hard_deadline = time.monotonic() + args.max_seconds
    stack = start_stack(children, workdir)
    gw_pid = stack.gateway.proc.pid
    print(f"gateway {stack.base_url}/mcp (pid {gw_pid}); upstreams {', '.join(UPSTREAMS)}", flush=True)
    workers = start_workers(children, workdir, stack.base_url, args)
    ready_by = time.monotonic() + READY_TIMEOUT
    while not all((workdir / f"ready-{w.name.split('-')[1]}").exists() for w in workers):
        check_alive(stack, workers)
        if time.monotonic() > ready_by:
            raise BenchmarkError(f"load clients did not open all sessions within {READY_TIMEOUT:.0f}s")
        time.sleep(0.2)
    rss_open = vm_rss_kb(gw_pid)
    print(
        f"{args.sessions} sessions open in {len(workers)} load-client processes; warming up {args.warmup:.0f}s",
        flush=True,
    )
    warm_end = time.monotonic() + args.warmup
    while time.monotonic() < warm_end:
        check_alive(stack, workers)
        time.sleep(0.5)

    t0 = time.monotonic()
    rss_start = vm_rss_kb(gw_pid)
    gw_cpu_start = cpu_seconds(gw_pid)
    worker_cpu_start = {w.name: cpu_seconds(w.proc.pid) for w in workers}
    print(f"soaking {args.duration:.0f}s; gateway RSS at start {rss_start} kB", flush=True)
    t_end = min(t0 + args.duration, hard_deadline - SHUTDOWN_GRACE - 30)
    samples: list[tuple[float, int | None]] = [(0.0, rss_start)]
    restarts: list[Restart] = []
    next_restart = t0 + rng.uniform(args.restart_min, args.restart_max)
    next_sample = t0 + RSS_SAMPLE_EVERY
    while (now := time.monotonic()) < t_end:
        check_alive(stack, workers)
        if args.restart_max > 0 and now >= next_restart and t_end - now > args.fault_grace + 10:
            victim = rng.choice(HTTP_UPSTREAMS)
            event = inject_restart(stack, victim, t_end)
            restarts.append(event)
            outage = f"{event.reconnected - event.killed:.1f}s" if event.reconnected else "NOT reconnected"
            print(
                f"  t={event.killed - t0:6.1f}s killed+restarted {victim}: gateway serving it again after {outage}",
                flush=True,
            )
            next_restart = event.killed + rng.uniform(args.restart_min, args.restart_max)
        if now >= next_sample:
            samples.append((round(now - t0, 1), vm_rss_kb(gw_pid)))
            next_sample += RSS_SAMPLE_EVERY
        time.sleep(0.2)
    t_end = time.monotonic()
    rss_end = vm_rss_kb(gw_pid)
    gw_cpu = cpu_seconds(gw_pid) - gw_cpu_start
    worker_cpu = {w.name: cpu_seconds(w.proc.pid) - worker_cpu_start[w.name] for w in workers}
    samples.append((round(t_end - t0, 1), rss_end))
    print(f"stopping the load; gateway RSS at end {rss_end} kB", flush=True)

    for w in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(w.proc.pid, signal.SIGUSR1)
    stop_by = time.monotonic() + SHUTDOWN_GRACE + 20
    while any(w.proc.poll() is None for w in workers) and time.monotonic() < stop_by:
        time.sleep(0.2)
    records: list[dict[str, Any]] = []
    for w in workers:
        out = workdir / f"{w.name}.json"
        if w.proc.poll() is None or not out.exists():
            raise BenchmarkError(f"{w.name} did not stop and report (exit {w.proc.poll()}):\n{w.stderr_tail()}")
        records.append(json.loads(out.read_text()))
    time.sleep(2.0)  # let the gateway drop the closed sessions
    rss_idle = vm_rss_kb(gw_pid)
    after = readyz(stack.base_url) or {}

    summary = analyse(records, restarts, t0, t_end, args.fault_grace)
    growth = (rss_end - rss_start) * 100 / rss_start if rss_start and rss_end else math.nan
    summary["restarts"] = [
        {
            "upstream": r.upstream,
            "killed_at_s": round(r.killed - t0, 2),
            "listening_after_s": round(r.listening - r.killed, 2) if r.listening else None,
            "gateway_noticed_after_s": round(r.gateway_noticed - r.killed, 2) if r.gateway_noticed else None,
            "reconnected_after_s": round(r.reconnected - r.killed, 2) if r.reconnected else None,
        }
        for r in restarts
    ]
    summary["gateway"] = {
        "rss_kb_sessions_open": rss_open,
        "rss_kb_start": rss_start,
        "rss_kb_end": rss_end,
        "rss_kb_idle_after": rss_idle,
        "rss_growth_pct": growth,
        "rss_samples": samples,
        "cpu_utilisation": gw_cpu / (t_end - t0),
        "cpu_ms_per_call": gw_cpu * 1000 / summary["calls"] if summary["calls"] else math.nan,
        "readyz_after": {k: after.get(k) for k in ("status", "tools", "clients")},
    }
    summary["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]  # other jobs on the box inflate latency
    summary["load_clients"] = {
        "processes": len(workers),
        "cpu_utilisation": {name: round(cpu / (t_end - t0), 3) for name, cpu in worker_cpu.items()},
        "sessions_opened": sum(r["opened"] for r in records),
    }
    reconnected_all = all(r.reconnected is not None for r in restarts)
    summary["targets"] = {
        "zero_errors_outside_faults": summary["errors_outside_faults"] == 0,
        "rss_growth_below_10pct": not math.isnan(growth) and growth < RSS_GROWTH_TARGET_PCT,
        "reconnected_after_every_restart": reconnected_all,
    }
    return summary


def print_report(summary: dict[str, Any], args: argparse.Namespace, machine: dict[str, Any]) -> None:
    """The figures that matter, plus PASS/FAIL for each target."""
    lat, gw, targets = summary["latency_ms"], summary["gateway"], summary["targets"]
    print()
    print(
        f"machine: {machine['cpu_count']} CPUs, load average at start {machine['loadavg_start']}, "
        f"at end {summary['loadavg_end']} (other jobs on the machine inflate latency, not the targets)"
    )
    print(
        f"{args.sessions} sessions, {summary['window_s']:.0f}s measured: {summary['calls']} calls "
        f"({summary['calls_per_s']:.1f}/s), {summary['ok']} ok"
    )
    print(
        f"latency (ok calls): p50 {lat['p50']:.1f} ms, p90 {lat['p90']:.1f} ms, p99 {lat['p99']:.1f} ms, "
        f"max {lat['max']:.0f} ms (echo p50 {lat['echo_p50']:.1f}, progress p50 {lat['progress_p50']:.1f})"
    )
    print(
        f"errors: {summary['errors_during_faults']} during injected faults, "
        f"{summary['errors_outside_faults']} outside; session reopens {summary['session_reopens']}"
    )
    for kind, count in summary["error_kinds_outside_faults"].items():
        print(f"  outside: {count} x {kind}")
    for r in summary["restarts"]:
        print(
            f"  restart {r['upstream']} at {r['killed_at_s']:.0f}s: listening +{r['listening_after_s']}s, "
            f"gateway noticed +{r['gateway_noticed_after_s']}s, serving again +{r['reconnected_after_s']}s"
        )
    progress = summary["progress_notifications"]
    print(f"progress notifications relayed: {progress['received']}/{progress['expected']}")
    print(
        f"gateway RSS: {gw['rss_kb_start']} kB after warm-up → {gw['rss_kb_end']} kB at end "
        f"({gw['rss_growth_pct']:+.1f} %); {gw['rss_kb_idle_after']} kB after the sessions closed; "
        f"gateway CPU {gw['cpu_utilisation'] * 100:.0f} % of a core, {gw['cpu_ms_per_call']:.2f} ms/call"
    )
    clients = ", ".join(f"{v * 100:.0f} %" for v in summary["load_clients"]["cpu_utilisation"].values())
    print(f"load-client processes CPU (of one core each): {clients}")
    labels = {
        "zero_errors_outside_faults": "0 errors outside injected faults",
        "rss_growth_below_10pct": "gateway RSS growth < 10 %",
        "reconnected_after_every_restart": "gateway reconnected after every restart",
    }
    for key, passed in targets.items():
        print(f"{'PASS' if passed else 'FAIL'}  {labels[key]}")


def orchestrate(args: argparse.Namespace) -> int:
    run = BenchmarkRun("soak")
    summary = run_with_children(
        "mcpgw-soak-", lambda workdir, children: run_soak(args, workdir, children), failure="soak failed"
    )
    print_report(summary, args, run.machine)
    print(f"total runtime {run.elapsed():.0f} s")
    settings = {
        k: getattr(args, k)
        for k in (
            "duration",
            "sessions",
            "processes",
            "warmup",
            "think",
            "progress_share",
            "progress_steps",
            "restart_min",
            "restart_max",
            "fault_grace",
            "seed",
        )
    }
    settings["upstreams"] = {"http": list(HTTP_UPSTREAMS), "stdio": [STDIO_UPSTREAM]}
    run.save(run.record(settings=settings, summary=summary))
    return 0 if all(summary["targets"].values()) else 2


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=300, help="measured seconds of soak (default 300)")
    parser.add_argument("--sessions", type=int, default=200, help="concurrent client sessions (default 200)")
    parser.add_argument("--processes", type=int, default=4, help="load-client processes sharing them (default 4)")
    parser.add_argument("--warmup", type=float, default=30, help="seconds of load before RSS start (default 30)")
    parser.add_argument("--think", type=float, default=2.0, help="mean pause between a session's calls (default 2)")
    parser.add_argument("--progress-share", type=float, default=0.2, help="share of progress calls (default 0.2)")
    parser.add_argument("--progress-steps", type=int, default=3, help="notifications per progress call (default 3)")
    parser.add_argument("--restart-min", type=float, default=30, help="min seconds between restarts (default 30)")
    parser.add_argument("--restart-max", type=float, default=60, help="max seconds between restarts; 0: none")
    parser.add_argument("--fault-grace", type=float, default=5, help="fault window after reconnect (default 5 s)")
    parser.add_argument("--seed", type=int, default=1, help="random seed for restarts and call mix (default 1)")
    parser.add_argument("--max-seconds", type=float, default=None, help="hard budget (default duration+warmup+300)")
    worker = parser.add_argument_group("worker mode (internal: one load-client process)")
    worker.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    worker.add_argument("--worker-id", type=int, default=0, help=argparse.SUPPRESS)
    worker.add_argument("--url", help=argparse.SUPPRESS)
    worker.add_argument("--upstreams", default=",".join(UPSTREAMS), help=argparse.SUPPRESS)
    worker.add_argument("--stagger", type=float, default=0.02, help=argparse.SUPPRESS)
    worker.add_argument("--hard-stop", type=float, default=900, help=argparse.SUPPRESS)
    worker.add_argument("--ready-file", help=argparse.SUPPRESS)
    worker.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sessions < 1 or args.processes < 1 or args.duration <= 0:
        parser.error("--sessions, --processes and --duration must be positive")
    if args.restart_max and args.restart_min > args.restart_max:
        parser.error("--restart-min must not exceed --restart-max")
    if args.max_seconds is None:
        args.max_seconds = args.duration + args.warmup + 300
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args)
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
