"""Governance at scale: ``tools/list`` per virtual key on a large gateway, and start time with 100,000 keys.

(a) **tools/list latency.** A gateway with 50 upstreams x 100 generated tools (each upstream is
``tests/upstreams/lab_server.py`` as its own **stdio** process with ``LAB_TOOL_COUNT=100``, so ~5,500 tools in the
catalog) and 1,000 virtual keys with different allowlists (each key grants ~5 pseudo-random upstreams, each with
``*``, a few exact names, or globs), enforcement on. For a handful of keys with different shapes the load client
makes sequential ``tools/list`` calls (every page, as a client does) and times each; for comparison the same runs
against a gateway with a single such upstream and one key. A "cold" run opens one session for each of 50 keys
never used before and times ``initialize`` (key lookup in the store) and the first and second ``tools/list``
(the first builds the key's filtered view; the second is served from the view cache).

(b) **start time.** Process start → ``GET /readyz`` 200 for ``mcpgw serve`` on a store with 0 virtual keys and on
one with 100,000 (``Store.create_virtual_keys_bulk``), same small upstream set (one HTTP lab process behind three
upstream names), interleaved rounds. After each start one key is added and the first authenticated
``initialize`` with it is timed (a cold lookup among 0 / 100,000 keys), then the key is removed again.

Why this shape: as in ``proxy_overhead.py`` the gateway, its upstreams and each load client are separate
processes (their CPU must not mix on a 2-core machine), the load client is the official SDK client, and the
runs that are compared are interleaved round by round so drift hits both sides alike. The load client has a
workload of its own here (every page of ``tools/list`` per key, cold sessions), so it is this script's ``--worker``
mode, speaking the marker protocol of ``_load.py``; processes, CPU sampling and results files come from
``_runner.py``.

Usage::

    .venv/bin/python benchmarks/governance.py                 # 3 rounds of 200 lists per key, 5 start rounds
    .venv/bin/python benchmarks/governance.py --quick         # smoke run: 1 round of 50, 2 start rounds
    .venv/bin/python benchmarks/governance.py --only a        # only the tools/list part (or --only b)

Results go to ``benchmarks/results/governance-<UTC timestamp>.json`` and ``…/governance-latest.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _load import MARK_END, MARK_START, emit, free_port, latency_summary, serve_worker
from _results import BenchmarkRun, Column, machine_line, median_of, print_table
from _runner import (
    LAB_SERVER,
    BenchmarkError,
    Child,
    Children,
    cpu_seconds,
    mcpgw_command,
    run_with_children,
    run_worker,
    start_lab,
    wait_for_ready,
    worker_env,
)

KEYS_ENV = "MCPGW_BENCH_KEYS"  # orchestrator → worker: virtual keys, one per line (never on a command line)
LARGE_STARTUP_TIMEOUT = 600.0  # 50 Python upstreams starting at once on 2 cores take a while
STARTUP_TIMEOUT = 60.0
READY_POLL_SECONDS = 0.01  # resolution of the start-time measurement
SEED = 20261126

# --------------------------------------------------------------------------------------------------------------
# Worker: the load client, run in its own process
# --------------------------------------------------------------------------------------------------------------


async def _run_worker(args: argparse.Namespace) -> dict[str, Any]:
    import httpx2
    import mcp_types as types
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    keys = os.environ[KEYS_ENV].split()

    @contextlib.asynccontextmanager
    async def session_for(key: str) -> Any:
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http,
            streamable_http_client(args.url, http_client=http) as (read, write),
            ClientSession(read, write, read_timeout_seconds=30) as session,
        ):
            yield session

    async def list_all(session: ClientSession) -> tuple[int, int]:
        """Every page, as a client does; returns (tools, pages)."""
        cursor: str | None = None
        tools = pages = 0
        while True:
            params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await session.list_tools(params=params)
            tools += len(page.tools)
            pages += 1
            cursor = page.next_cursor
            if not cursor:
                return tools, pages

    if args.op == "list":
        async with session_for(keys[0]) as session:
            await session.initialize()
            tools, pages = await list_all(session)
            if tools == 0:
                raise RuntimeError("tools/list returned no tools: the key grants nothing the gateway has")
            for _ in range(args.warmup):
                await list_all(session)
            latencies: list[float] = []
            cpu_before = time.process_time()
            emit(MARK_START)
            for _ in range(args.calls):
                started = time.perf_counter()
                await list_all(session)
                latencies.append(time.perf_counter() - started)
            emit(MARK_END)
            client_cpu = time.process_time() - cpu_before
        return {
            "op": "list",
            "calls": len(latencies),
            "tools": tools,
            "pages": pages,
            **latency_summary(latencies),
            "client_cpu_ms_per_call": client_cpu * 1000 / len(latencies),
        }

    # op == "cold": one new session per key never used before
    init_s: list[float] = []
    first_s: list[float] = []
    second_s: list[float] = []
    tool_counts: list[int] = []
    emit(MARK_START)
    for key in keys:
        async with session_for(key) as session:
            started = time.perf_counter()
            await session.initialize()
            init_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            tools, _ = await list_all(session)
            first_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            await list_all(session)
            second_s.append(time.perf_counter() - started)
            tool_counts.append(tools)
    emit(MARK_END)
    return {
        "op": "cold",
        "calls": len(keys),
        "tools_median": statistics.median(tool_counts),
        **latency_summary(init_s, "initialize_"),
        **latency_summary(first_s, "first_list_"),
        **latency_summary(second_s, "second_list_"),
    }


def worker_main(args: argparse.Namespace) -> int:
    """Entry point of ``--worker``: one measurement, printed as one ``@@result`` line (see ``_load.py``)."""
    return serve_worker(lambda: _run_worker(args))


# --------------------------------------------------------------------------------------------------------------
# Orchestrator: store seeding (in this process, before any gateway starts)
# --------------------------------------------------------------------------------------------------------------

Allowlist = dict[str, list[str]]


def random_allowlist(rng: random.Random, upstreams: Sequence[str], tool_count: int, width: int = 5) -> Allowlist:
    """~`width` upstreams, each granted `*`, three exact tool names plus echo, or a glob over ten tools plus one."""
    configs: Allowlist = {}
    for upstream in rng.sample(list(upstreams), min(width, len(upstreams))):
        kind = rng.randrange(3)
        if kind == 0:
            configs[upstream] = ["*"]
        elif kind == 1:
            configs[upstream] = [f"tool_{n:03d}" for n in sorted(rng.sample(range(tool_count), 3))] + ["echo"]
        else:
            configs[upstream] = [f"tool_0{rng.randrange(10)}?", "ech?"]
    return configs


def measured_allowlists(upstreams: Sequence[str], rng: random.Random, tool_count: int) -> dict[str, Allowlist]:
    """The keys whose tools/list is timed: one shape each, so the table shows what the shape costs."""
    five = list(upstreams[:5])
    return {
        "1 upstream: *": {upstreams[0]: ["*"]},
        "5 upstreams: *": {u: ["*"] for u in five},
        "5 upstreams: 3 names + echo": {u: ["tool_001", "tool_042", "tool_099", "echo"] for u in five},
        "5 upstreams: globs": {u: ["tool_01?", "ech?"] for u in five},
        "5 upstreams: random mix": random_allowlist(rng, upstreams, tool_count),
    }


@dataclass
class SeededKeys:
    measured: dict[str, str]  # label → plaintext key
    cold: list[str]  # keys nobody has used yet, for the cold run
    allowlists: dict[str, Allowlist]
    total: int
    seconds: float


async def seed_keys(
    url: str, upstreams: Sequence[str], tool_count: int, total: int, cold: int, seed: int
) -> SeededKeys:
    """`total` keys with different allowlists, made one by one (the plaintexts are needed to call with them)."""
    from mcp_gateway.store import open_store

    rng = random.Random(seed)
    measured = measured_allowlists(upstreams, rng, tool_count)
    started = time.perf_counter()
    measured_keys: dict[str, str] = {}
    others: list[str] = []
    async with await open_store(url) as store:
        for label, configs in measured.items():
            _, measured_keys[label] = await store.create_virtual_key(f"bench-{label}", mcp_configs=configs)
        for n in range(max(0, total - len(measured))):
            _, key = await store.create_virtual_key(
                f"bench-{n}", mcp_configs=random_allowlist(rng, upstreams, tool_count)
            )
            others.append(key)
        count = await store.count_virtual_keys()
    return SeededKeys(measured_keys, others[:cold], measured, count, time.perf_counter() - started)


async def seed_bulk(url: str, count: int, configs: Allowlist) -> float:
    from mcp_gateway.store import open_store

    started = time.perf_counter()
    async with await open_store(url) as store:
        await store.create_virtual_keys_bulk(count, mcp_configs=configs)
    return time.perf_counter() - started


async def add_probe_key(url: str, configs: Allowlist) -> tuple[str, str]:
    from mcp_gateway.store import open_store

    async with await open_store(url) as store:
        record, key = await store.create_virtual_key("bench-probe", mcp_configs=configs)
    return record.id, key


async def remove_key(url: str, key_id: str) -> None:
    from mcp_gateway.store import open_store

    async with await open_store(url) as store:
        await store.delete_virtual_key(key_id)


# --------------------------------------------------------------------------------------------------------------
# Orchestrator: processes
# --------------------------------------------------------------------------------------------------------------


def lab_stdio(name: str, tool_count: int) -> dict[str, Any]:
    return {
        "transport": "stdio",
        "command": sys.executable,
        "args": [str(LAB_SERVER)],
        "env": {"LAB_TOOL_COUNT": str(tool_count), "LAB_NAME": name},
        "connect_timeout": LARGE_STARTUP_TIMEOUT,
    }


def write_config(path: Path, port: int, upstreams: Mapping[str, Mapping[str, Any]]) -> Path:
    # JSON is YAML: no dependency on a YAML writer in this script.
    path.write_text(json.dumps({"server": {"host": "127.0.0.1", "port": port}, "upstreams": upstreams}, indent=1))
    return path


def start_gateway(children: Children, name: str, config: Path, port: int, database_url: str) -> Child:
    env = {**os.environ, "DATABASE_URL": database_url}
    env.pop("MCPGW_CONFIG", None)
    argv = [mcpgw_command(), "serve", "--config", str(config), "--port", str(port), "--log-level", "warning"]
    return children.start(name, argv, env=env)


def measure_gateway(
    gateway: Child, url: str, op: str, keys: Sequence[str], calls: int, warmup: int, workdir: Path, deadline: float
) -> dict[str, Any]:
    """One load-client process (this script's ``--worker``); the gateway's CPU is sampled at its markers."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--worker", "--url", url, "--op", op]
    argv += ["--calls", str(calls), "--warmup", str(warmup)]
    measured = run_worker(
        argv,
        workdir=workdir,
        what=f"worker {op} against {gateway.name}",
        # Only the gateway's own process: its stdio upstreams are idle during tools/list (the catalog answers).
        sample=lambda: (cpu_seconds(gateway.proc.pid),),
        env=worker_env(extra={KEYS_ENV: "\n".join(keys)}),
        deadline=deadline,
        watch=(gateway,),
        show_output_of=gateway,
    )
    (measured.result["gateway_cpu_ms_per_call"],) = measured.cpu_ms_per_call
    return measured.result


def timed_initialize(base_url: str, key: str) -> float:
    """Milliseconds for one `initialize` POST with a key the gateway has not seen (a cold key lookup)."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "bench", "version": "0"},
        },
    }
    request = urllib.request.Request(
        base_url + "/mcp",
        data=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
        },
        method="POST",
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
        if response.status != 200:
            raise BenchmarkError(f"initialize with the probe key answered HTTP {response.status}")
    return (time.perf_counter() - started) * 1000


# --------------------------------------------------------------------------------------------------------------
# The two parts
# --------------------------------------------------------------------------------------------------------------


def part_a(children: Children, workdir: Path, args: argparse.Namespace, deadline: float) -> dict[str, Any]:
    import anyio

    names = [f"up_{n:02d}" for n in range(args.upstreams)]
    large_db = f"sqlite+aiosqlite:///{workdir / 'a-large.db'}"
    small_db = f"sqlite+aiosqlite:///{workdir / 'a-small.db'}"
    print(f"(a) seeding {args.keys} virtual keys with different allowlists …", flush=True)
    seeded = anyio.run(seed_keys, large_db, names, args.tools, args.keys, args.cold, SEED)
    small_id, small_key = anyio.run(add_probe_key, small_db, {"lab": ["*"]})
    print(f"    {seeded.total} keys in {seeded.seconds:.1f} s", flush=True)

    large_port, small_port = free_port(), free_port()
    large_cfg = write_config(workdir / "large.yaml", large_port, {name: lab_stdio(name, args.tools) for name in names})
    small_cfg = write_config(workdir / "small.yaml", small_port, {"lab": lab_stdio("lab", args.tools)})
    print(f"(a) starting a gateway with {args.upstreams} stdio upstreams x {args.tools} tools …", flush=True)
    started = time.monotonic()
    large = start_gateway(children, "gateway-large", large_cfg, large_port, large_db)
    large_ready = wait_for_ready(large, f"http://127.0.0.1:{large_port}", LARGE_STARTUP_TIMEOUT)
    large_start_s = time.monotonic() - started
    print(f"    ready in {large_start_s:.1f} s with {large_ready['tools']} tools in the catalog", flush=True)
    small = start_gateway(children, "gateway-small", small_cfg, small_port, small_db)
    small_ready = wait_for_ready(small, f"http://127.0.0.1:{small_port}", STARTUP_TIMEOUT)

    large_url, small_url = f"http://127.0.0.1:{large_port}/mcp", f"http://127.0.0.1:{small_port}/mcp"
    cases: list[tuple[str, Child, str, str]] = [("1 upstream (comparison)", small, small_url, small_key)]
    cases += [(label, large, large_url, key) for label, key in seeded.measured.items()]
    runs: list[dict[str, Any]] = []
    for round_no in range(1, args.rounds + 1):
        for label, gateway, url, key in cases:
            result = measure_gateway(gateway, url, "list", [key], args.calls, args.warmup, workdir, deadline)
            result |= {"case": label, "gateway": gateway.name, "round": round_no}
            runs.append(result)
            print(
                f"  round {round_no} {gateway.name:<13} {label:<28} {result['tools']:>4} tools "
                f"{result['pages']} page(s)  p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms",
                flush=True,
            )
    cold = measure_gateway(large, large_url, "cold", seeded.cold, len(seeded.cold), 0, workdir, deadline)
    print(
        f"  cold: {cold['calls']} new keys, initialize p50 {cold['initialize_p50_ms']:.2f} ms, first list p50 "
        f"{cold['first_list_p50_ms']:.2f} ms, second list p50 {cold['second_list_p50_ms']:.2f} ms",
        flush=True,
    )
    large.stop()
    small.stop()

    rows = []
    for label, gateway, _, _ in cases:
        mine = [r for r in runs if r["case"] == label]
        rows.append(
            {
                "case": label,
                "gateway": gateway.name,
                "tools": mine[0]["tools"],
                "pages": mine[0]["pages"],
                "rounds": len(mine),
                **{
                    k: median_of([r[k] for r in mine])
                    for k in ("p50_ms", "p99_ms", "mean_ms", "gateway_cpu_ms_per_call", "client_cpu_ms_per_call")
                },
            }
        )
    return {
        "upstreams": args.upstreams,
        "upstream_transport": "stdio (one lab_server.py process per upstream)",
        "tools_per_upstream_generated": args.tools,
        "catalog_tools_large": large_ready["tools"],
        "catalog_tools_small": small_ready["tools"],
        "virtual_keys": seeded.total,
        "seed_seconds": seeded.seconds,
        "large_gateway_start_s": large_start_s,
        "calls_per_run": args.calls,
        "allowlists": seeded.allowlists,
        "rows": rows,
        "cold": cold,
        "runs": runs,
        "small_key_id": small_id,
    }


def part_b(children: Children, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    import anyio

    upstream_port = free_port()
    upstream = start_lab(
        children, "b-upstream", upstream_port, env={"LAB_TOOL_COUNT": str(args.tools)}, timeout=STARTUP_TIMEOUT
    )
    names = [f"lab_{n}" for n in range(3)]
    upstream_url = f"http://127.0.0.1:{upstream_port}/mcp"
    grants = {names[0]: ["*"]}
    stores = {0: f"sqlite+aiosqlite:///{workdir / 'b-0.db'}", args.bulk: f"sqlite+aiosqlite:///{workdir / 'b-bulk.db'}"}
    print(f"(b) seeding {args.bulk:,} virtual keys with create_virtual_keys_bulk …", flush=True)
    bulk_seconds = anyio.run(seed_bulk, stores[args.bulk], args.bulk, grants)
    anyio.run(seed_bulk, stores[0], 0, grants)  # migrated, empty
    print(f"    {bulk_seconds:.1f} s", flush=True)

    def one_start(count: int, tag: str) -> dict[str, Any]:
        port = free_port()
        config = write_config(
            workdir / f"b-{tag}.yaml", port, {name: {"transport": "http", "url": upstream_url} for name in names}
        )
        started = time.monotonic()
        gateway = start_gateway(children, f"gateway-b-{tag}", config, port, stores[count])
        wait_for_ready(gateway, f"http://127.0.0.1:{port}", STARTUP_TIMEOUT, interval=READY_POLL_SECONDS)
        ready_at = time.monotonic()
        key_id, key = anyio.run(add_probe_key, stores[count], grants)
        try:
            first_ms = timed_initialize(f"http://127.0.0.1:{port}", key)
        finally:
            anyio.run(remove_key, stores[count], key_id)
            gateway.stop()
            children.items.remove(gateway)
        return {"virtual_keys": count, "start_s": ready_at - started, "first_auth_initialize_ms": first_ms}

    for count in stores:  # first start on each store mirrors the config: not measured
        one_start(count, f"warmup-{count}")
    starts = []
    for round_no in range(1, args.start_rounds + 1):
        for count in stores:
            result = one_start(count, f"{count}-{round_no}") | {"round": round_no}
            starts.append(result)
            print(
                f"  round {round_no} {count:>7,} keys: ready in {result['start_s']:.3f} s, first authenticated "
                f"initialize {result['first_auth_initialize_ms']:.1f} ms",
                flush=True,
            )
    upstream.stop()
    summary = []
    for count in stores:
        mine = [s for s in starts if s["virtual_keys"] == count]
        summary.append(
            {
                "virtual_keys": count,
                "rounds": len(mine),
                "start_s_median": median_of([s["start_s"] for s in mine]),
                "start_s_min": min(s["start_s"] for s in mine),
                "start_s_max": max(s["start_s"] for s in mine),
                "first_auth_initialize_ms_median": median_of([s["first_auth_initialize_ms"] for s in mine]),
            }
        )
    return {
        "upstreams": names,
        "upstream_transport": "http (one lab_server.py process behind all three names)",
        "bulk_seed_seconds": bulk_seconds,
        "summary": summary,
        "runs": starts,
    }


# --------------------------------------------------------------------------------------------------------------
# Reporting and main
# --------------------------------------------------------------------------------------------------------------


def print_report(results: dict[str, Any]) -> None:
    machine = results["machine"]
    print()
    print(machine_line(machine))
    if (a := results.get("a")) is not None:
        print(
            f"(a) tools/list: {a['upstreams']} stdio upstreams, {a['catalog_tools_large']} tools in the catalog, "
            f"{a['virtual_keys']} virtual keys, enforcement on; {a['calls_per_run']} sequential lists (all pages) "
            f"per key, median of {a['rows'][0]['rounds']} round(s)"
        )
        print_table(
            [
                Column("gateway", "gateway", "<14"),
                Column("key grants", "case", "<28"),
                Column("tools", "tools", ">5"),
                Column("pages", "pages", ">5"),
                Column("p50 ms", "p50_ms", "8.2f"),
                Column("p99 ms", "p99_ms", "8.2f"),
                Column("gw CPU ms", "gateway_cpu_ms_per_call", "9.2f"),
            ],
            a["rows"],
        )
        cold = a["cold"]
        print(
            f"cold, {cold['calls']} keys never used before (median {cold['tools_median']:.0f} tools): "
            f"initialize p50 {cold['initialize_p50_ms']:.2f} / p99 {cold['initialize_p99_ms']:.2f} ms; "
            f"first list p50 {cold['first_list_p50_ms']:.2f} / p99 {cold['first_list_p99_ms']:.2f} ms; "
            f"second list p50 {cold['second_list_p50_ms']:.2f} / p99 {cold['second_list_p99_ms']:.2f} ms"
        )
        print(f"large gateway start ({a['upstreams']} stdio upstreams): {a['large_gateway_start_s']:.1f} s")
    if (b := results.get("b")) is not None:
        print(f"(b) start → /readyz 200, {len(b['upstreams'])} http upstreams, {b['summary'][0]['rounds']} rounds")
        print_table(
            [
                Column("virtual keys", "virtual_keys", ">12,"),
                Column("median s", "start_s_median", ">9.3f"),
                Column("min s", "start_s_min", ">7.3f"),
                Column("max s", "start_s_max", ">7.3f"),
                Column("1st auth init ms", "first_auth_initialize_ms_median", ">17.1f"),
            ],
            b["summary"],
        )
        print(f"seeding {b['summary'][-1]['virtual_keys']:,} keys in bulk: {b['bulk_seed_seconds']:.1f} s")
    print(f"total runtime {results['total_runtime_s']:.0f} s")


def orchestrate(args: argparse.Namespace) -> int:
    run = BenchmarkRun("governance")
    results: dict[str, Any] = {"settings": {k: v for k, v in vars(args).items() if k not in ("worker", "url", "op")}}

    def measure(workdir: Path, children: Children) -> None:
        if args.only in (None, "a"):
            results["a"] = part_a(children, workdir, args, run.started + args.max_seconds)
            children.close()
        if args.only in (None, "b"):
            results["b"] = part_b(children, workdir, args)

    run_with_children("mcpgw-bench-gov-", measure)
    record = run.record(**results)
    print_report(record)
    run.save(record)
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--only", choices=("a", "b"), help="run one part: a (tools/list) or b (start time)")
    parser.add_argument("--upstreams", type=int, default=50, help="stdio upstreams in the large gateway (default 50)")
    parser.add_argument("--tools", type=int, default=100, help="generated tools per upstream (default 100)")
    parser.add_argument("--keys", type=int, default=1000, help="virtual keys in the large gateway (default 1000)")
    parser.add_argument("--calls", type=int, default=200, help="timed tools/list per key and round (default 200)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed tools/list before each run (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of (a); medians reported")
    parser.add_argument("--cold", type=int, default=50, help="never-used keys in the cold run (default 50)")
    parser.add_argument("--bulk", type=int, default=100_000, help="virtual keys for (b) (default 100000)")
    parser.add_argument("--start-rounds", type=int, default=5, help="gateway starts per store in (b) (default 5)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round of 50 lists, 2 start rounds")
    parser.add_argument("--max-seconds", type=float, default=1800, help="time budget for (a) (default 1800)")
    worker = parser.add_argument_group("worker mode (internal: one measurement process)")
    worker.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    worker.add_argument("--url", help=argparse.SUPPRESS)
    worker.add_argument("--op", choices=("list", "cold"), default="list", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.warmup, args.rounds, args.start_rounds, args.cold = 50, 5, 1, 2, 10
    if min(args.upstreams, args.tools, args.calls, args.rounds, args.start_rounds) < 1:
        parser.error("--upstreams, --tools, --calls, --rounds and --start-rounds must be positive")
    if args.upstreams < 5:
        parser.error("--upstreams must be at least 5 (the measured keys grant five upstreams)")
    if args.tools < 100:
        parser.error("--tools must be at least 100 (the measured keys name tool_099)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args)
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
