"""LLM overhead: a mock model provider called directly, through mcpgw and through LiteLLM's proxy, in one run.

Why this shape:

* The question is what a hop through an LLM gateway adds to a model call, and how mcpgw's ``/openai`` face compares
  with LiteLLM, the usual proxy for the job. The provider is ``examples/servers/llm_provider.py`` (the same mock the
  tests use: real OpenAI Chat Completions wire format, streaming and not, checks its key), so the model's own time
  is nearly zero and what is left is the gateways' cost.
* Three paths to the same mock, same request, same load client: **direct** (client → mock
  ``/v1/chat/completions``), **mcpgw** (client → ``/openai/v1/chat/completions``, a real virtual key from a throwaway
  store, provider ``openai`` with ``base_url`` = the mock) and **litellm** (``litellm --num_workers 1`` with its
  master key, one ``model_list`` entry ``openai/<model>`` with ``api_base`` = the mock). LiteLLM comes from PyPI into
  its own venv, ``.cache/bench-venvs/litellm``, installed on first use the way ``peers.py`` installs its peers.
* The machines have 2 cores and are noisy, so the three are **interleaved**: for each mode (non-streaming, streaming)
  and concurrency, direct, then mcpgw, then LiteLLM; "added" latency is against the direct run made right before.
* The load client is this script's ``--worker``, one process per measurement (``_runner.run_worker``), so its CPU
  never mixes with a gateway's: ``httpx2`` with one keep-alive connection per concurrent lane (C lanes, each its own
  client, as ``_load.py`` gives each MCP session its own client), N requests handed out from a shared counter.
  Streams are timed to the first body byte (TTFB), to the first complete SSE event, and to the end.
* The CPU time of the mock and of each gateway (process tree) is sampled at the worker's measured-phase markers, so
  each gateway's **CPU ms per request** comes out next to its latency; on 2 cores this is the steadier signal.

Targets of issue 13 (printed with PASS/FAIL, not asserted): mcpgw adds ≤ 1 ms p50 at C=1 non-streaming, ≤ 1 ms to
the time to first byte streaming (C=1), and serves ≥ 10x LiteLLM's requests/s at C=32.

Usage::

    .venv/bin/python benchmarks/llm_overhead.py                       # N=2000, C=1 and 32, all three (~4 min)
    .venv/bin/python benchmarks/llm_overhead.py --requests 300        # smoke run
    .venv/bin/python benchmarks/llm_overhead.py --skip-litellm        # direct and mcpgw only
    .venv/bin/python benchmarks/llm_overhead.py --profile             # + py-spy flame graph of mcpgw

Results go to ``benchmarks/results/llm_overhead-<UTC timestamp>.json`` and ``…/llm_overhead-latest.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _load import MARK_END, MARK_START, emit, free_port, headers_from_env, latency_summary, serve_worker
from _results import RESULTS_DIR, BenchmarkRun, Column, machine_line, print_table
from _runner import (
    REPO_ROOT,
    BenchmarkError,
    Child,
    Children,
    checkout_env,
    mcpgw_command,
    run_with_children,
    run_worker,
    tree_cpu_seconds,
    wait_for_http,
    wait_for_port,
    wait_for_ready,
    worker_env,
)
from peers import PeerSkipped, ensure_venv, venv_versions
from proxy_overhead import find_py_spy, flamegraph_hot_spots, py_spy_attached

MOCK_PROVIDER = REPO_ROOT / "examples" / "servers" / "llm_provider.py"
PROFILE_SVG = "llm-gateway-profile-{mode}.svg"  # under RESULTS_DIR, one per mode

# litellm 1.108.5: the newest release whose `proxy` extra resolves from PyPI as reachable here (1.108.6+ want
# litellm-enterprise / litellm-proxy-extras post-releases, 1.110 a `litellm-proxy` package that is not there).
LITELLM_SPEC = "litellm[proxy]==1.108.5"
LITELLM_STARTUP_TIMEOUT = 120.0  # its first start imports a great deal
STARTUP_TIMEOUT = 30.0
REQUEST_TIMEOUT = 30.0  # per request in the worker: a wedged target fails the run instead of hanging it

MODEL = "gpt-bench"
MOCK_TEXT = b"Hello from the mock."  # what the mock answers (its default turn)
TARGETS: tuple[str, ...] = ("direct", "mcpgw", "litellm")
MODES: tuple[str, ...] = ("json", "stream")  # non-streaming, streaming

TARGET_ADDED_P50_MS = 1.0  # mcpgw p50 - direct p50, C=1, non-streaming
TARGET_ADDED_TTFB_MS = 1.0  # mcpgw TTFB p50 - direct TTFB p50, C=1, streaming
TARGET_THROUGHPUT_X = 10.0  # mcpgw requests/s ÷ LiteLLM requests/s at C=32


# --------------------------------------------------------------------------------------------------------------
# Worker: one measurement process
# --------------------------------------------------------------------------------------------------------------


def request_body(stream: bool) -> bytes:
    """The one request every target gets: a short chat turn, with ``stream`` set for streaming runs."""
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 32}
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


async def measure_requests(url: str, *, mode: str, concurrency: int, requests: int, warmup: int) -> dict[str, Any]:
    """C keep-alive lanes, warm-up, then N requests from a shared counter, each timed (and TTFB for streams).

    Each lane is its own ``httpx2.AsyncClient`` holding one connection: a shared pool is itself a bottleneck on
    these machines, and a gateway's clients each have their own connection anyway. Every answer is checked (status
    200 and the mock's text, or a stream that ends with ``[DONE]``), so a gateway that answers fast but wrong fails.
    """
    import anyio
    import httpx2

    stream = mode == "stream"
    body = request_body(stream)
    headers = {"content-type": "application/json", "accept": "application/json", **(headers_from_env() or {})}
    limits = httpx2.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=300)
    clients = [httpx2.AsyncClient(headers=headers, timeout=REQUEST_TIMEOUT, limits=limits) for _ in range(concurrency)]

    latencies: list[float] = []
    ttfbs: list[float] = []
    first_events: list[float] = []

    def failed(status: int, data: bytes) -> RuntimeError:
        return RuntimeError(f"{mode} request to {url}: HTTP {status}: {data[:400]!r}")

    async def one(client: httpx2.AsyncClient, timed: bool) -> None:
        started = time.perf_counter()
        if not stream:
            response = await client.post(url, content=body)
            data = response.content
            done = time.perf_counter()
            if response.status_code != 200 or MOCK_TEXT not in data:
                raise failed(response.status_code, data)
            if timed:
                latencies.append(done - started)
            return
        first = first_event = math.nan
        buffer = bytearray()
        async with client.stream("POST", url, content=body) as response:
            async for chunk in response.aiter_raw():
                if not buffer:
                    first = time.perf_counter()
                buffer += chunk
                if math.isnan(first_event) and b"\n\n" in buffer:
                    first_event = time.perf_counter()
            done = time.perf_counter()
        if response.status_code != 200 or b"[DONE]" not in buffer:
            raise failed(response.status_code, bytes(buffer))
        if timed:
            latencies.append(done - started)
            ttfbs.append(first - started)
            first_events.append(first_event - started)

    async def drain(client: httpx2.AsyncClient, budget: list[int], timed: bool) -> None:
        while budget[0] > 0:
            budget[0] -= 1
            await one(client, timed)

    async def phase(total: int, timed: bool) -> float:
        budget = [total]
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for client in clients:
                tg.start_soon(drain, client, budget, timed)
        return time.perf_counter() - started

    try:
        # Warm-up: one request on every lane first (so all C connections are open), then the rest.
        async with anyio.create_task_group() as tg:
            for client in clients:
                tg.start_soon(one, client, False)
        await phase(max(0, warmup - concurrency), False)

        cpu_before = time.process_time()
        emit(MARK_START)
        wall = await phase(requests, True)
        emit(MARK_END)
        client_cpu = time.process_time() - cpu_before
    finally:
        for client in clients:
            await client.aclose()

    result: dict[str, Any] = {
        "mode": mode,
        "concurrency": concurrency,
        "calls": len(latencies),  # `calls`: the count _runner.run_worker divides the sampled CPU by
        "wall_s": wall,
        "requests_per_s": len(latencies) / wall,
        **latency_summary(latencies),
        "client_cpu_ms_per_request": client_cpu * 1000 / len(latencies),
    }
    if stream:
        result |= latency_summary(ttfbs, "ttfb_") | latency_summary(first_events, "first_event_")
    return result


def worker_main(args: argparse.Namespace) -> int:
    """Entry point of ``--worker``: one measurement, printed as one ``@@result`` line (see ``_load.py``)."""
    return serve_worker(
        lambda: measure_requests(
            args.url, mode=args.mode, concurrency=args.concurrency[0], requests=args.requests, warmup=args.warmup
        )
    )


# --------------------------------------------------------------------------------------------------------------
# Orchestrator: the processes
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Target:
    """Where the worker sends its requests for one path, with which credentials, and whose CPU is the proxy's."""

    label: str
    url: str
    child: Child | None  # the gateway process (tree); None for direct
    headers: dict[str, str]
    versions: dict[str, str] = field(default_factory=dict)
    notes: str = ""


def start_mock(
    children: Children, name: str = "mock", *, program: Sequence[str] = (), extra: Sequence[str] = ()
) -> tuple[Child, str, str]:
    """The mock provider with a fresh key; returns it, its ``/v1`` base URL and the key.

    ``program``: what runs the mock instead of ``python llm_provider.py`` (it gets the same options); ``extra``: more
    of the mock's options (``--record FILE``).
    """
    port, key = free_port(), "sk-mock-" + secrets.token_urlsafe(18)
    # One write per event, as real providers stream (the tests' default cuts streams every 7 bytes).
    options = ["--port", str(port), "--key", key, "--write-events", *extra]
    mock = children.start(name, [*(program or (sys.executable, str(MOCK_PROVIDER))), *options])
    wait_for_port(mock, port, STARTUP_TIMEOUT)
    return mock, f"http://127.0.0.1:{port}/v1", key


def start_mcpgw(
    children: Children,
    workdir: Path,
    mock_base: str,
    mock_key: str,
    *,
    upstreams: dict[str, Any] | None = None,
    providers: dict[str, Any] | None = None,
) -> Target:
    """``mcpgw serve`` with only the ``llm:`` face (provider ``openai`` = the mock) and one virtual key.

    ``upstreams`` (MCP servers) and ``providers`` (more model providers) go into its config as given.

    The key is made with ``mcpgw vk create`` against a throwaway SQLite store before the gateway starts, and
    inference requires a key (``enforce_auth_on_inference: true``): the measured path includes the key lookup, as
    in production. ``DATABASE_URL`` is set to the same store for both commands, so an inherited one cannot win.
    """
    port = free_port()
    database_url = f"sqlite:///{workdir / 'mcpgw.db'}"
    config = workdir / "mcpgw.yaml"
    openai = {"base_url": mock_base, "api_key": mock_key}
    settings = {
        "server": {"host": "127.0.0.1"},
        "auth": {"enforce_auth_on_inference": True},
        "database_url": database_url,
        "upstreams": upstreams or {},
        "llm": {"providers": {"openai": openai, **(providers or {})}},
    }
    config.write_text(json.dumps(settings, indent=2))  # JSON is YAML
    env = {**checkout_env(), "DATABASE_URL": database_url}
    mcpgw = mcpgw_command()
    try:
        created = subprocess.run(
            [mcpgw, "vk", "create", "--name", "bench", "--json", "--config", str(config)],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO_ROOT,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchmarkError(f"mcpgw vk create failed: {exc!r}") from None
    try:
        key = str(json.loads(created.stdout)["key"])
    except (ValueError, KeyError, TypeError):
        output = (created.stderr or created.stdout)[-800:]
        raise BenchmarkError(f"mcpgw vk create failed (exit {created.returncode}):\n{output}") from None
    child = children.start(
        "mcpgw", [mcpgw, "serve", "--config", str(config), "--port", str(port), "--log-level", "warning"], env=env
    )
    base = f"http://127.0.0.1:{port}"
    wait_for_ready(child, base, STARTUP_TIMEOUT)
    from importlib.metadata import version

    return Target(
        "mcpgw",
        base + "/openai/v1/chat/completions",
        child,
        {"Authorization": f"Bearer {key}"},
        versions={"mcpgw": version("mcpgw")},
        notes="virtual key (enforce_auth_on_inference), provider openai → mock",
    )


def start_litellm(children: Children, workdir: Path, mock_base: str, mock_key: str) -> Target:
    """LiteLLM's proxy from its own venv: one worker, a master key, ``<MODEL>`` → ``openai/<MODEL>`` at the mock.

    No database (LiteLLM's virtual keys need Postgres), so the master key is its credential check; the model cost
    map is the one shipped in the package (no fetch at start-up), telemetry off, logs at ERROR.
    """
    try:
        python = ensure_venv("litellm", LITELLM_SPEC)
    except PeerSkipped as exc:
        raise BenchmarkError(
            f"LiteLLM could not be installed ({exc}); run with --skip-litellm to leave it out"
        ) from None
    port, master_key = free_port(), "sk-litellm-" + secrets.token_urlsafe(24)
    config = workdir / "litellm.yaml"
    config.write_text(  # JSON is YAML
        json.dumps(
            {
                "model_list": [
                    {
                        "model_name": MODEL,
                        "litellm_params": {"model": f"openai/{MODEL}", "api_base": mock_base, "api_key": mock_key},
                    }
                ],
                "general_settings": {"master_key": master_key},
                "litellm_settings": {"telemetry": False},
            },
            indent=2,
        )
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DATABASE_URL")}
    env |= {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"}
    argv = [str(python.parent / "litellm"), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    child = children.start("litellm", [*argv, "--num_workers", "1"], env=env)
    base = f"http://127.0.0.1:{port}"
    wait_for_http(child, base + "/health/liveliness", LITELLM_STARTUP_TIMEOUT, interval=0.5)
    return Target(
        "litellm",
        base + "/v1/chat/completions",
        child,
        {"Authorization": f"Bearer {master_key}"},
        versions=venv_versions(python, ["litellm"]),
        notes="--num_workers 1, master key, no database",
    )


# --------------------------------------------------------------------------------------------------------------
# Orchestrator: measurements
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One worker process against one target, and the CPU ms per request of every sampled process meanwhile."""

    target: str
    mode: str
    concurrency: int
    result: dict[str, Any]
    cpu_ms_per_request: dict[str, float]  # "mock", "mcpgw", "litellm" (the idle ones too)
    profiled: bool = False

    @property
    def proxy_cpu_ms_per_request(self) -> float:
        return self.cpu_ms_per_request.get(self.target, math.nan)

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "mode": self.mode,
            "concurrency": self.concurrency,
            **self.result,
            "proxy_cpu_ms_per_request": self.proxy_cpu_ms_per_request,
            "cpu_ms_per_request": self.cpu_ms_per_request,
            "profiled": self.profiled,
        }


@dataclass
class Bench:
    """The running processes and settings of one invocation; ``measure`` runs one worker."""

    mock: Child
    targets: dict[str, Target]
    workdir: Path
    deadline: float
    warmup: int
    runs: list[Run] = field(default_factory=list)

    def measure(self, label: str, mode: str, concurrency: int, requests: int, *, profiled: bool = False) -> Run:
        target = self.targets[label]
        argv = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            "--url",
            target.url,
            "--mode",
            mode,
            "--concurrency",
            str(concurrency),
            "--requests",
            str(requests),
            "--warmup",
            str(self.warmup),
        ]
        sampled = {"mock": self.mock} | {t.label: t.child for t in self.targets.values() if t.child is not None}
        measured = run_worker(
            argv,
            workdir=self.workdir,
            what=f"worker {label} {mode} C={concurrency}",
            sample=lambda: tuple(tree_cpu_seconds(child.proc.pid) for child in sampled.values()),
            env=worker_env(target.headers),
            deadline=self.deadline,
            watch=tuple(sampled.values()),
            show_output_of=target.child or self.mock,
        )
        result = measured.result
        run = Run(label, mode, concurrency, result, dict(zip(sampled, measured.cpu_ms_per_call, strict=True)), profiled)
        self.runs.append(run)
        ttfb = f"  TTFB p50 {result['ttfb_p50_ms']:7.2f} ms" if mode == "stream" else ""
        print(
            f"  {label:<8} {mode:<6} C={concurrency:<3} {result['requests_per_s']:8.1f} req/s  "
            f"p50 {result['p50_ms']:7.2f} ms  p99 {result['p99_ms']:7.2f} ms{ttfb}  "
            f"proxy CPU {run.proxy_cpu_ms_per_request:6.2f} ms/req" + ("  (profiled)" if profiled else ""),
            flush=True,
        )
        return run


# --------------------------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------------------------


def summarise(runs: Sequence[Run], order: Sequence[str], concurrencies: Sequence[int]) -> list[dict[str, Any]]:
    """One row per (mode, C, target); "added" and "x direct" are against the direct run of the same (mode, C)."""
    rows: list[dict[str, Any]] = []
    measured = [r for r in runs if not r.profiled]
    for mode in MODES:
        for c in concurrencies:
            by_target = {r.target: r for r in measured if r.mode == mode and r.concurrency == c}
            direct = by_target.get("direct")
            for label in order:
                run = by_target.get(label)
                if run is None:
                    continue
                res, base = run.result, direct.result if direct else None

                def added(key: str, res: dict[str, Any] = res, base: dict[str, Any] | None = base) -> float:
                    return res.get(key, math.nan) - base.get(key, math.nan) if base else math.nan

                rows.append(
                    {
                        "mode": mode,
                        "concurrency": c,
                        "target": label,
                        "requests": res["calls"],
                        "requests_per_s": res["requests_per_s"],
                        "throughput_vs_direct": res["requests_per_s"] / base["requests_per_s"] if base else math.nan,
                        "p50_ms": res["p50_ms"],
                        "p99_ms": res["p99_ms"],
                        "added_p50_ms": added("p50_ms") if label != "direct" else math.nan,
                        "added_p99_ms": added("p99_ms") if label != "direct" else math.nan,
                        "ttfb_p50_ms": res.get("ttfb_p50_ms", math.nan),
                        "ttfb_p99_ms": res.get("ttfb_p99_ms", math.nan),
                        "added_ttfb_p50_ms": added("ttfb_p50_ms") if label != "direct" else math.nan,
                        "added_ttfb_p99_ms": added("ttfb_p99_ms") if label != "direct" else math.nan,
                        "first_event_p50_ms": res.get("first_event_p50_ms", math.nan),
                        "proxy_cpu_ms_per_request": run.proxy_cpu_ms_per_request,
                        "mock_cpu_ms_per_request": run.cpu_ms_per_request.get("mock", math.nan),
                        "client_cpu_ms_per_request": res["client_cpu_ms_per_request"],
                    }
                )
    return rows


def verdict(value: float, limit: float, at_most: bool) -> str:
    """PASS/FAIL of a figure against its target (at most or at least ``limit``); n/a when it was not measured."""
    if math.isnan(value):
        return "n/a"
    return "PASS" if (value <= limit if at_most else value >= limit) else "FAIL"


def verdicts(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The issue's figures: mcpgw/LiteLLM throughput at C=32, mcpgw's added p50 and TTFB at C=1, PASS/FAIL."""

    def row(mode: str, c: int, target: str) -> dict[str, Any] | None:
        return next((r for r in rows if (r["mode"], r["concurrency"], r["target"]) == (mode, c, target)), None)

    out: dict[str, Any] = {}
    for mode in MODES:
        mine, theirs = row(mode, 32, "mcpgw"), row(mode, 32, "litellm")
        ratio = mine["requests_per_s"] / theirs["requests_per_s"] if mine and theirs else math.nan
        out[f"throughput_mcpgw_over_litellm_c32_{mode}"] = {
            "value": ratio,
            "target": f">= {TARGET_THROUGHPUT_X:g}x",
            "verdict": verdict(ratio, TARGET_THROUGHPUT_X, at_most=False),
        }
    json1, stream1 = row("json", 1, "mcpgw"), row("stream", 1, "mcpgw")
    value = json1["added_p50_ms"] if json1 else math.nan
    out["mcpgw_added_p50_ms_c1_json"] = {
        "value": value,
        "target": f"<= {TARGET_ADDED_P50_MS:g} ms",
        "verdict": verdict(value, TARGET_ADDED_P50_MS, at_most=True),
    }
    value = stream1["added_ttfb_p50_ms"] if stream1 else math.nan
    out["mcpgw_added_ttfb_p50_ms_c1_stream"] = {
        "value": value,
        "target": f"<= {TARGET_ADDED_TTFB_MS:g} ms",
        "verdict": verdict(value, TARGET_ADDED_TTFB_MS, at_most=True),
    }
    direct1 = row("stream", 1, "direct")  # for context: to the first complete SSE event
    value = stream1["first_event_p50_ms"] - direct1["first_event_p50_ms"] if stream1 and direct1 else math.nan
    out["mcpgw_added_first_event_p50_ms_c1_stream"] = {"value": value}
    for mode in MODES:  # for context: what LiteLLM adds at C=1
        theirs = row(mode, 1, "litellm")
        key = "added_p50_ms" if mode == "json" else "added_ttfb_p50_ms"
        out[f"litellm_{key}_c1_{mode}"] = {"value": theirs[key] if theirs else math.nan}
    return out


def print_check(check: dict[str, Any], title: str, unit: str) -> None:
    """One target line: the figure (``unit`` ``ms`` or ``x``), the target and its PASS/FAIL."""
    value = check["value"]
    text = "n/a" if math.isnan(value) else f"{value:+.2f} ms" if unit == "ms" else f"{value:.2f}x"
    print(f"  {title:<52} {text:>10}   target {check['target']:<9} {check['verdict']}")


def print_report(
    rows: Sequence[dict[str, Any]], checks: dict[str, Any], targets: dict[str, Target], machine: dict[str, Any]
) -> None:
    print()
    print(machine_line(machine, ("httpx2", "uvicorn")))
    for target in targets.values():
        versions = ", ".join(f"{k} {v}" for k, v in target.versions.items())
        print(f"  {target.label:<8} {target.url}  {versions}  {target.notes}".rstrip())
    print_table(
        [
            Column("mode", "mode", "<6"),
            Column("C", "concurrency", ">3"),
            Column("target", "target", "<8"),
            Column("req/s", "requests_per_s", "8.1f"),
            Column("x direct", "throughput_vs_direct", "8.2f", suffix="x"),
            Column("p50 ms", "p50_ms", "8.2f"),
            Column("p99 ms", "p99_ms", "8.2f"),
            Column("+p50 ms", "added_p50_ms", "+8.2f"),
            Column("+p99 ms", "added_p99_ms", "+8.2f"),
            Column("TTFB p50", "ttfb_p50_ms", "8.2f"),
            Column("+TTFB p50", "added_ttfb_p50_ms", "+9.2f"),
            Column("proxy CPU ms/req", "proxy_cpu_ms_per_request", "16.2f"),
            Column("mock CPU ms/req", "mock_cpu_ms_per_request", "15.2f"),
        ],
        rows,
    )
    print("(+ = added over the direct run of the same mode and C; TTFB = time to the first body byte of a stream)")
    print()

    def show(key: str, title: str, unit: str) -> None:
        print_check(checks[key], title, unit)

    print("issue 13 targets:")
    show("throughput_mcpgw_over_litellm_c32_json", "mcpgw/LiteLLM throughput, C=32, non-streaming", "x")
    show("throughput_mcpgw_over_litellm_c32_stream", "mcpgw/LiteLLM throughput, C=32, streaming", "x")
    show("mcpgw_added_p50_ms_c1_json", "mcpgw added p50, C=1, non-streaming", "ms")
    show("mcpgw_added_ttfb_p50_ms_c1_stream", "mcpgw added time to first byte p50, C=1, streaming", "ms")
    value = checks["mcpgw_added_first_event_p50_ms_c1_stream"]["value"]
    if not math.isnan(value):
        print(f"  {'(mcpgw added time to first SSE event p50, C=1, stream)':<52} {value:+8.2f} ms")
    for mode, what in (("json", "added p50"), ("stream", "added TTFB p50")):
        key = f"litellm_{'added_p50_ms' if mode == 'json' else 'added_ttfb_p50_ms'}_c1_{mode}"
        value = checks[key]["value"]
        if not math.isnan(value):
            print(f"  {'(LiteLLM ' + what + ', C=1, ' + mode + ')':<52} {value:+8.2f} ms")


def profile_hot_spots(svg: Path, top: int = 12) -> dict[str, Any]:
    """``proxy_overhead.flamegraph_hot_spots`` plus the top functions (by total time) in mcpgw's own packages."""
    everything = flamegraph_hot_spots(svg, top=10**6)
    ours = [f for f in everything["total"] if "(llm_gateway/" in f["function"] or "(mcp_gateway/" in f["function"]]
    return {
        "total_samples": everything["total_samples"],
        "self": everything["self"][:top],
        "total": everything["total"][:top],
        "mcpgw_code_total": ours[:top],
    }


def print_hot_spots(hot: dict[str, Any], what: str) -> None:
    titles = {
        "self": "self time",
        "total": "total time (off the event-loop trunk)",
        "mcpgw_code_total": "total time, llm_gateway / mcp_gateway code only",
    }
    print(
        f"py-spy, {what}: {hot.get('total_samples', 0)} samples of the mcpgw process ({hot['svg']}); top functions by"
    )
    for kind, title in titles.items():
        print(f"  {title}:")
        for item in hot.get(kind, []):
            print(f"    {item['pct']:5.1f}%  {item['function']}")


# --------------------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------------------


def orchestrate(args: argparse.Namespace) -> int:
    run = BenchmarkRun("llm_overhead")
    order = [t for t in TARGETS if not (t == "litellm" and args.skip_litellm)]
    py_spy = find_py_spy() if args.profile else None
    if args.profile and py_spy is None:
        print("--profile: py-spy not found (pip install py-spy into the venv); continuing without it", file=sys.stderr)
    state: dict[str, Any] = {}

    def measure(workdir: Path, children: Children) -> Bench:
        mock, mock_base, mock_key = start_mock(children)
        targets = {
            "direct": Target("direct", mock_base + "/chat/completions", None, {"Authorization": f"Bearer {mock_key}"})
        }
        targets["mcpgw"] = start_mcpgw(children, workdir, mock_base, mock_key)
        if "litellm" in order:
            print(f"starting LiteLLM ({LITELLM_SPEC}) …", flush=True)
            targets["litellm"] = start_litellm(children, workdir, mock_base, mock_key)
        for target in targets.values():
            pid = f" (pid {target.child.proc.pid})" if target.child else f" (mock pid {mock.proc.pid})"
            print(f"{target.label:<8} {target.url}{pid}", flush=True)
        bench = Bench(mock, targets, workdir, run.started + args.max_seconds, args.warmup)
        state["targets"] = targets
        for mode in MODES:
            for c in args.concurrency:
                for label in order:
                    bench.measure(label, mode, c, args.requests)
        gateway = targets["mcpgw"].child
        if py_spy is not None and gateway is not None:
            c = max(args.concurrency)
            for mode in MODES:
                svg = RESULTS_DIR / PROFILE_SVG.format(mode=mode)
                print(f"profiling mcpgw with py-spy during an extra {mode} C={c} run → {svg}", flush=True)
                svg.unlink(missing_ok=True)
                # --gil: the store's aiosqlite threads wait in C, which py-spy would count as busy otherwise
                with py_spy_attached(py_spy, gateway.proc.pid, svg, workdir / "py-spy.log", options=("--gil",)):
                    bench.measure("mcpgw", mode, c, args.requests, profiled=True)
                if svg.exists():
                    state.setdefault("hot", {})[mode] = {
                        "svg": str(svg.relative_to(REPO_ROOT)),
                        **profile_hot_spots(svg),
                    }
                else:
                    print(f"py-spy wrote no SVG:\n{(workdir / 'py-spy.log').read_text(errors='replace')[-2000:]}")
        return bench

    bench = run_with_children("mcpgw-llm-bench-", measure)
    rows = summarise(bench.runs, order, args.concurrency)
    checks = verdicts(rows)
    print_report(rows, checks, state["targets"], run.machine)
    hot = state.get("hot")
    for mode, spots in (hot or {}).items():
        print_hot_spots(spots, f"{mode} C={max(args.concurrency)}")
    print(f"total runtime {run.elapsed():.0f} s")
    run.save(
        run.record(
            settings={
                "requests": args.requests,
                "warmup": args.warmup,
                "concurrency": args.concurrency,
                "modes": list(MODES),
                "targets": order,
                "model": MODEL,
                "request_body": json.loads(request_body(False)),
                "litellm_spec": None if args.skip_litellm else LITELLM_SPEC,
            },
            targets={
                t.label: {"url": t.url, "versions": t.versions, "notes": t.notes} for t in state["targets"].values()
            },
            checks=checks,
            summary=rows,
            runs=[r.as_dict() for r in bench.runs],
            profile=hot,
        )
    )
    return 0


def add_load_options(parser: argparse.ArgumentParser) -> None:
    """``--requests``, ``--warmup`` and ``--concurrency``: the size of every measurement (the worker's too)."""
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per run (default 2000)")
    parser.add_argument("--warmup", type=int, default=100, help="warm-up requests per run, not measured (default 100)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32], help="lanes (default 1 32)")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_load_options(parser)
    parser.add_argument("--skip-litellm", action="store_true", help="measure direct and mcpgw only")
    parser.add_argument("--profile", action="store_true", help="py-spy flame graphs of mcpgw (extra run per mode)")
    parser.add_argument("--max-seconds", type=float, default=1800, help="overall time budget (default 1800)")
    worker = parser.add_argument_group("worker mode (internal: one measurement process)")
    worker.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    worker.add_argument("--url", help=argparse.SUPPRESS)
    worker.add_argument("--mode", choices=MODES, default="json", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.requests < 1 or args.warmup < 0 or any(c < 1 for c in args.concurrency):
        parser.error("--requests and --concurrency must be positive, --warmup not negative")
    if args.worker and not args.url:
        parser.error("--worker needs --url")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return worker_main(args) if args.worker else orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
