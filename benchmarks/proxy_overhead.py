"""Proxy overhead: what a ``tools/call`` costs through mcpgw compared with calling the upstream directly.

Why this shape:

* The machines this runs on have 2 cores and are noisy (±25 % run to run), so absolute calls/s mean little.
  What counts is the **ratio gateway/direct measured in the same run**, with the two modes interleaved
  (direct C=1, gateway C=1, direct C=32, gateway C=32, …) so that drift hits both sides alike.
* Upstream, gateway and load client are three separate processes. If the client ran inside the gateway's process
  (or the gateway inside the benchmark's), their CPU would be mixed and the overhead figure meaningless.
* The load client is the official SDK client (``ClientSession`` over ``streamable_http_client``) with one
  ``httpx2.AsyncClient`` per session, i.e. what a real MCP client does. Concurrency C means C independent sessions,
  each with its own connection pool, because one shared pool is itself a bottleneck on these machines.
* Each load-client process (``_load.py``, run through ``_runner.run_worker``) reports markers on stdout when its
  measured phase starts and ends; the orchestrator samples the CPU time of the gateway and upstream processes at
  those markers, which gives CPU milliseconds per call for each hop -- a sharper signal than wall-clock
  throughput on a shared 2-core box.

Usage::

    .venv/bin/python benchmarks/proxy_overhead.py                      # N=2000, C=1 and 32, one round
    .venv/bin/python benchmarks/proxy_overhead.py --repeat 3           # median of 3 interleaved rounds
    .venv/bin/python benchmarks/proxy_overhead.py --quick              # N=300 smoke run
    .venv/bin/python benchmarks/proxy_overhead.py --profile            # + py-spy flame graph of the gateway at max C

Results go to ``benchmarks/results/proxy_overhead-<UTC timestamp>.json`` and ``…/proxy_overhead-latest.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _load import free_port
from _results import RESULTS_DIR, BenchmarkRun, Column, machine_line, median_of, print_table
from _runner import (
    REPO_ROOT,
    BenchmarkError,
    Child,
    Children,
    cpu_seconds,
    load_client_argv,
    run_with_children,
    run_worker,
    start_gateway_for_lab,
    start_lab,
)

PROFILE_SVG = RESULTS_DIR / "gateway-profile.svg"

UPSTREAM_NAME = "lab"
DIRECT_TOOL = "echo"
GATEWAY_TOOL = f"{UPSTREAM_NAME}-echo"  # the gateway's default prefix is the upstream name, "-" separated
MODES: tuple[str, ...] = ("direct", "gateway")

STARTUP_TIMEOUT = 30.0  # seconds for upstream/gateway to become ready

# --------------------------------------------------------------------------------------------------------------
# Orchestrator: child processes
# --------------------------------------------------------------------------------------------------------------


def start_stack(children: Children, workdir: Path, list_tools: int) -> tuple[Child, Child, str, str]:
    """Start the lab upstream (with `list_tools` generated tools besides its own) and a gateway in front of it;
    return both and their /mcp URLs."""
    upstream_port = free_port()
    upstream = start_lab(
        children, "upstream", upstream_port, env={"LAB_TOOL_COUNT": str(list_tools)}, timeout=STARTUP_TIMEOUT
    )
    direct_url = f"http://127.0.0.1:{upstream_port}/mcp"
    # page_size above the listing, so tools/list is one page on both paths
    gateway, base = start_gateway_for_lab(
        children, workdir, direct_url, server={"page_size": list_tools + 100}, timeout=STARTUP_TIMEOUT
    )
    return upstream, gateway, direct_url, base + "/mcp"


# --------------------------------------------------------------------------------------------------------------
# Orchestrator: one measurement
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Measurement:
    """One worker run plus the CPU the gateway and upstream burned during its measured phase."""

    mode: str
    op: str
    concurrency: int
    result: dict[str, Any]
    gateway_cpu_ms_per_call: float
    upstream_cpu_ms_per_call: float
    round: int
    profiled: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "op": self.op,
            "concurrency": self.concurrency,
            "round": self.round,
            "profiled": self.profiled,
            **self.result,
            "gateway_cpu_ms_per_call": self.gateway_cpu_ms_per_call,
            "upstream_cpu_ms_per_call": self.upstream_cpu_ms_per_call,
        }


@dataclass
class Runner:
    """Runs load clients against a started stack, enforcing per-run and overall deadlines."""

    upstream: Child
    gateway: Child
    urls: dict[str, str]
    deadline: float
    workdir: Path
    payload: int
    warmup: int
    measurements: list[Measurement] = field(default_factory=list)

    def run(
        self, mode: str, op: str, concurrency: int, calls: int, round_no: int, profiled: bool = False
    ) -> Measurement:
        """Run one load-client process and sample gateway/upstream CPU at its start/end markers."""
        tool = GATEWAY_TOOL if mode == "gateway" else DIRECT_TOOL
        argv = load_client_argv(
            self.urls[mode], tool, op=op, concurrency=concurrency, calls=calls, warmup=self.warmup, payload=self.payload
        )
        run = run_worker(
            argv,
            workdir=self.workdir,
            what=f"worker {mode} {op} C={concurrency}",
            sample=lambda: (cpu_seconds(self.gateway.proc.pid), cpu_seconds(self.upstream.proc.pid)),
            deadline=self.deadline,
            watch=(self.upstream, self.gateway),
            show_output_of=self.gateway,
        )
        result = run.result
        gateway_cpu, upstream_cpu = run.cpu_ms_per_call
        m = Measurement(mode, op, concurrency, result, gateway_cpu, upstream_cpu, round_no, profiled)
        self.measurements.append(m)
        print(
            f"  round {round_no} {mode:<7} {op:<4} C={concurrency:<3} {result['calls_per_s']:8.1f} calls/s  "
            f"p50 {result['p50_ms']:7.2f} ms  p99 {result['p99_ms']:7.2f} ms" + ("  (profiled)" if profiled else ""),
            flush=True,
        )
        return m


# --------------------------------------------------------------------------------------------------------------
# Profiling (optional)
# --------------------------------------------------------------------------------------------------------------


def find_py_spy() -> str | None:
    """py-spy next to this python (a venv install) or on PATH."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def py_spy_attached(py_spy: str, pid: int, output: Path, log: Path, options: Sequence[str] = ()) -> Iterator[None]:
    """Record a flame graph of ``pid`` for the duration of the block; SIGINT makes py-spy write the SVG.

    Attaching by pid (rather than starting the gateway under py-spy) keeps start-up and the unprofiled runs out
    of the profile, so the flame graph shows only the steady-state hot path. ``options`` are extra ``py-spy
    record`` flags (``--gil``: only samples holding the GIL, which leaves out idle helper threads).
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(pid),
                "--rate",
                "200",
                "--function",
                "--format",
                "flamegraph",
                "-o",
                str(output),
                *options,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        time.sleep(1.0)  # let it attach before load starts
        if proc.poll() is not None:
            raise BenchmarkError(f"py-spy exited early:\n{log.read_text(errors='replace')[-2000:]}")
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


_FRAME_TITLE = re.compile(r"<title>(?P<name>.*?) \((?P<samples>[\d,]+) samples?, [\d.]+%\)</title>")
_FRAME_GEOM = re.compile(r'fg:x="(?P<x>\d+)" fg:w="(?P<w>\d+)"')
_FRAME_Y = re.compile(r'<rect [^>]*?y="(?P<y>[\d.]+)"')


def flamegraph_hot_spots(svg: Path, top: int = 15) -> dict[str, Any]:
    """Self and total sample shares per function, read back from py-spy's (inferno) SVG.

    Why parse the SVG: it is the one artefact py-spy writes, and each frame carries its sample offset/width
    (``fg:x``/``fg:w``) and depth (``y``), which is enough to rebuild the tree: self = width - children's widths.
    Total time counts a function once per stack even when it recurses (nested frames are not double counted).
    """
    text = svg.read_text(errors="replace")
    frames: list[tuple[float, int, int, str]] = []  # (y, x, w, name)
    for chunk in text.split("<g>")[1:]:
        title, geom, ymatch = _FRAME_TITLE.search(chunk), _FRAME_GEOM.search(chunk), _FRAME_Y.search(chunk)
        if not (title and geom and ymatch):
            continue
        frames.append((float(ymatch["y"]), int(geom["x"]), int(geom["w"]), html.unescape(title["name"])))
    if not frames:
        return {"self": [], "total": [], "total_samples": 0}
    # py-spy draws an icicle graph (root on top, smallest y); order rows from the root's row outwards either way.
    root_y = next((y for y, _, _, name in frames if name == "all"), min(f[0] for f in frames))
    rows = sorted({f[0] for f in frames}, key=lambda y: abs(y - root_y))
    depth = {y: i for i, y in enumerate(rows)}
    by_depth: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
    for y, x, w, name in frames:
        by_depth[depth[y]].append((x, w, name))
    root_samples = max((w for _, w, _ in by_depth[0]), default=1)
    self_samples: dict[str, int] = defaultdict(int)
    total_spans: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for d, items in by_depth.items():
        children = sorted(by_depth.get(d + 1, []))
        for x, w, name in items:
            covered = sum(cw for cx, cw, _ in children if x <= cx < x + w)
            self_samples[name] += w - covered
            total_spans[name].append((x, x + w))
    totals: dict[str, int] = {}
    for name, spans in total_spans.items():  # union of intervals = samples with the function anywhere on the stack
        spans.sort()
        covered, end = 0, -1
        for start, stop in spans:
            if stop <= end:
                continue
            covered += stop - max(start, end)
            end = stop
        totals[name] = covered

    def ranked(values: dict[str, int], keep: Callable[[str, int], bool] = lambda n, s: True) -> list[dict[str, Any]]:
        best = sorted(values.items(), key=lambda kv: kv[1], reverse=True)
        chosen = [(n, s) for n, s in best if n != "all" and keep(n, s)][:top]
        return [{"function": n, "samples": s, "pct": 100 * s / root_samples} for n, s in chosen]

    # The trunk (entry point → uvicorn → event loop) is ~100 % of every profile and says nothing: drop it.
    def off_trunk(name: str, samples: int) -> bool:
        return samples < 0.95 * root_samples

    return {
        "total_samples": root_samples,
        "self": ranked(self_samples),
        "total": ranked(totals, off_trunk),
        "gateway_code_total": ranked(
            totals, lambda name, samples: "(mcp_gateway/" in name and off_trunk(name, samples)
        ),
    }


# --------------------------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------------------------


def summarise(measurements: Sequence[Measurement], concurrencies: Sequence[int]) -> dict[str, Any]:
    """Median per (mode, C) over rounds, plus per-round gateway/direct ratios and their median.

    Ratios are computed within a round first (gateway run next to its direct run) and only then medianed,
    because drift between rounds is larger than the difference we want to see.
    """
    calls = [m for m in measurements if m.op == "call" and not m.profiled]
    rows: list[dict[str, Any]] = []
    ratios: list[dict[str, Any]] = []
    for c in concurrencies:
        per_mode = {}
        for mode in MODES:
            runs = [m for m in calls if m.mode == mode and m.concurrency == c]
            if not runs:
                continue
            row: dict[str, Any] = {"mode": mode, "concurrency": c, "rounds": len(runs)}
            for key in ("calls_per_s", "p50_ms", "p99_ms", "client_cpu_ms_per_call"):
                row[key] = median_of([m.result[key] for m in runs])
            for key in ("gateway_cpu_ms_per_call", "upstream_cpu_ms_per_call"):
                row[key] = median_of([getattr(m, key) for m in runs])
            rows.append(row)
            per_mode[mode] = {m.round: m for m in runs}
        if len(per_mode) < 2:
            continue
        rounds = sorted(set(per_mode["direct"]) & set(per_mode["gateway"]))
        per_round = []
        for r in rounds:
            d, g = per_mode["direct"][r].result, per_mode["gateway"][r].result
            per_round.append(
                {
                    "round": r,
                    "throughput_ratio": g["calls_per_s"] / d["calls_per_s"],
                    "p50_overhead_ms": g["p50_ms"] - d["p50_ms"],
                    "p99_overhead_ms": g["p99_ms"] - d["p99_ms"],
                }
            )
        ratios.append(
            {
                "concurrency": c,
                "throughput_ratio": median_of([p["throughput_ratio"] for p in per_round]),
                "p50_overhead_ms": median_of([p["p50_overhead_ms"] for p in per_round]),
                "p99_overhead_ms": median_of([p["p99_overhead_ms"] for p in per_round]),
                "per_round": per_round,
            }
        )
    lists = [m for m in measurements if m.op == "list"]
    list_summary: dict[str, Any] = {}
    for mode in MODES:
        runs = [m for m in lists if m.mode == mode]
        if runs:
            list_summary[mode] = {
                "p50_ms": median_of([m.result["p50_ms"] for m in runs]),
                "p99_ms": median_of([m.result["p99_ms"] for m in runs]),
                "calls": runs[0].result["calls"],
                "rounds": len(runs),
            }
    if len(list_summary) == 2:
        list_summary["p50_overhead_ms"] = list_summary["gateway"]["p50_ms"] - list_summary["direct"]["p50_ms"]
    return {"rows": rows, "ratios": ratios, "tools_list": list_summary}


def print_report(summary: dict[str, Any], machine: dict[str, Any], args: argparse.Namespace, elapsed: float) -> None:
    """The human-readable table; the JSON file has every figure, this shows the ones that matter."""
    print()
    print(machine_line(machine, ("mcp", "httpx2")))
    print(f"calls per run N={args.calls}, warm-up {args.warmup}, payload {args.payload} B, rounds {args.repeat}")
    print_table(
        [
            Column("mode", "mode", "<8"),
            Column("C", "concurrency", ">3"),
            Column("calls/s", "calls_per_s", "9.1f"),
            Column("p50 ms", "p50_ms", "8.2f"),
            Column("p99 ms", "p99_ms", "8.2f"),
            Column("gw CPU ms/call", "gateway_cpu_ms_per_call", "15.2f"),
            Column("up CPU ms/call", "upstream_cpu_ms_per_call", "15.2f"),
            Column("client CPU ms/call", "client_cpu_ms_per_call", "19.2f"),
        ],
        summary["rows"],
    )
    print()
    for ratio in summary["ratios"]:
        per_round = ", ".join(f"{p['throughput_ratio']:.2f}" for p in ratio["per_round"])
        print(
            f"C={ratio['concurrency']:<3} gateway/direct throughput {ratio['throughput_ratio']:.2f}x "
            f"(per round: {per_round}); latency overhead p50 {ratio['p50_overhead_ms']:+.2f} ms, "
            f"p99 {ratio['p99_overhead_ms']:+.2f} ms"
        )
    tl = summary["tools_list"]
    if "direct" in tl and "gateway" in tl:
        print(
            f"tools/list of {args.list_tools}+ tools, p50 ({tl['direct']['calls']} sequential): "
            f"direct {tl['direct']['p50_ms']:.2f} ms, "
            f"gateway {tl['gateway']['p50_ms']:.2f} ms ({tl['p50_overhead_ms']:+.2f} ms)"
        )
    print(f"total runtime {elapsed:.0f} s")


def print_hot_spots(hot: dict[str, Any], top: int = 12) -> None:
    """Top self-time and total-time functions of the gateway process."""
    titles = {
        "self": "self time",
        "total": "total time (off the event-loop trunk)",
        "gateway_code_total": "total time, mcp_gateway code only",
    }
    print(f"py-spy: {hot.get('total_samples', 0)} samples of the gateway process; top functions by")
    for kind, title in titles.items():
        print(f"  {title}:")
        for item in hot.get(kind, [])[:top]:
            print(f"    {item['pct']:5.1f}%  {item['function']}")


# --------------------------------------------------------------------------------------------------------------
# Orchestrator: main
# --------------------------------------------------------------------------------------------------------------


def orchestrate(args: argparse.Namespace) -> int:
    run = BenchmarkRun("proxy_overhead")
    py_spy = find_py_spy() if args.profile else None
    if args.profile and py_spy is None:
        print("--profile: py-spy not found (pip install py-spy into the venv); continuing without it", file=sys.stderr)

    def measure(workdir: Path, children: Children) -> tuple[Runner, dict[str, Any] | None]:
        upstream, gateway, direct_url, gateway_url = start_stack(children, workdir, args.list_tools)
        print(f"upstream {direct_url} (pid {upstream.proc.pid}), gateway {gateway_url} (pid {gateway.proc.pid})")
        runner = Runner(
            upstream=upstream,
            gateway=gateway,
            urls={"direct": direct_url, "gateway": gateway_url},
            deadline=run.started + args.max_seconds,
            workdir=workdir,
            payload=args.payload,
            warmup=args.warmup,
        )
        for round_no in range(1, args.repeat + 1):
            for c in args.concurrency:
                for mode in MODES:
                    runner.run(mode, "call", c, args.calls, round_no)
            for mode in MODES:
                runner.run(mode, "list", 1, args.list_calls, round_no)

        hot: dict[str, Any] | None = None
        if py_spy is not None:
            c = max(args.concurrency)
            print(f"profiling the gateway with py-spy during an extra gateway C={c} run → {PROFILE_SVG}")
            with py_spy_attached(py_spy, gateway.proc.pid, PROFILE_SVG, workdir / "py-spy.log"):
                runner.run("gateway", "call", c, args.calls, 0, profiled=True)
            if PROFILE_SVG.exists():
                hot = flamegraph_hot_spots(PROFILE_SVG)
            else:
                print(f"py-spy wrote no SVG:\n{(workdir / 'py-spy.log').read_text(errors='replace')[-2000:]}")
        return runner, hot

    runner, hot = run_with_children("mcpgw-bench-", measure)
    summary = summarise(runner.measurements, args.concurrency)
    print_report(summary, run.machine, args, run.elapsed())
    if hot:
        print_hot_spots(hot)
    run.save(
        run.record(
            settings={
                "calls": args.calls,
                "concurrency": args.concurrency,
                "repeat": args.repeat,
                "warmup": args.warmup,
                "payload_bytes": args.payload,
                "tools_list_calls": args.list_calls,
                "tools_listed": args.list_tools,
                "direct_tool": DIRECT_TOOL,
                "gateway_tool": GATEWAY_TOOL,
            },
            summary=summary,
            runs=[m.as_dict() for m in runner.measurements],
            profile={"svg": str(PROFILE_SVG.relative_to(REPO_ROOT)), "hot_spots": hot} if hot else None,
        )
    )
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000, help="measured tools/call per run (default 2000)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32], help="client sessions (default 1 32)")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved rounds; the median is reported")
    parser.add_argument("--quick", action="store_true", help="smoke run: N=300, fewer warm-up and tools/list calls")
    parser.add_argument("--warmup", type=int, default=100, help="warm-up calls per run, not measured (default 100)")
    parser.add_argument("--list-calls", type=int, default=200, help="sequential tools/list calls per mode")
    parser.add_argument(
        "--list-tools", type=int, default=500, help="generated tools the upstream lists, besides its own (default 500)"
    )
    parser.add_argument("--payload", type=int, default=64, help="bytes of text sent to echo (default 64)")
    parser.add_argument("--profile", action="store_true", help="py-spy flame graph of the gateway at max C")
    parser.add_argument("--max-seconds", type=float, default=1800, help="overall time budget (default 1800)")
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.warmup, args.list_calls = 300, 50, 50
    if args.calls < 1 or args.repeat < 1 or any(c < 1 for c in args.concurrency):
        parser.error("--calls, --repeat and --concurrency must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return orchestrate(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
