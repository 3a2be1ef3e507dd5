"""Revisions: the same tools/call load through mcpgw at several git revisions, side by side in one run.

Why this shape: on these noisy 2-core machines the same gateway measures ±25 % (and more) from one run to the next,
so "before" and "after" figures from different runs cannot show a 20 % change. Here every revision's gateway runs at
once in front of one upstream, and the measurements are interleaved (rev A C=1, rev B C=1, …, rev A C=32, …) for
``--rounds`` rounds: drift hits every revision alike, and each figure is the median over rounds.

* Each revision is exported with ``git archive`` into a temp dir and run with the project's venv and that dir first
  on ``PYTHONPATH`` (so its ``mcp_gateway`` is imported; dependencies are today's — fine for hot-path comparisons,
  wrong for revisions that needed other packages).
* Upstream: ``tests/upstreams/lab_server.py`` over streamable HTTP. Load client: ``_load.py`` (the official SDK
  client, its own process per measurement), as in ``proxy_overhead.py``; the gateway's CPU time is sampled over the
  measured phase only (CPU ms per call), and the upstream's too, as a yardstick: it does the same work per call
  whichever revision is in front of it.

Usage::

    .venv/bin/python benchmarks/revisions.py dbb1f10 c0e81a8 HEAD             # N=2000, C=1 and 32, 3 rounds
    .venv/bin/python benchmarks/revisions.py HEAD~1 HEAD --calls 1000 --rounds 2 --concurrency 1

Results go to ``benchmarks/results/revisions-<UTC timestamp>.json`` and ``…/revisions-latest.json``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _load import free_port
from _results import BenchmarkRun, Column, machine_line, median_of, print_table
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

STARTUP_TIMEOUT = 30.0


def export(rev: str, workdir: Path) -> tuple[str, Path]:
    """`rev`'s tree in a directory of its own; returns its short commit id and the directory."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", rev], cwd=REPO_ROOT, check=True, capture_output=True, text=True
        ).stdout.strip()
    except subprocess.CalledProcessError as exc:
        raise BenchmarkError(f"unknown revision {rev!r}: {exc.stderr.strip()}") from None
    target = workdir / f"rev-{sha}"
    target.mkdir()
    archive = subprocess.run(["git", "archive", sha], cwd=REPO_ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return sha, target


def orchestrate(args: argparse.Namespace) -> int:
    run = BenchmarkRun("revisions")

    def measure(workdir: Path, children: Children) -> list[dict[str, Any]]:
        upstream_port = free_port()
        upstream = start_lab(children, "upstream", upstream_port, timeout=STARTUP_TIMEOUT)
        upstream_url = f"http://127.0.0.1:{upstream_port}/mcp"
        gateways: list[tuple[str, str, Child, str]] = []
        for rev in args.revisions:
            sha, tree = export(rev, workdir)
            child, base = start_gateway_for_lab(
                children,
                workdir,
                upstream_url,
                name=f"gateway-{sha}",
                env={**os.environ, "PYTHONPATH": str(tree)},  # that revision's code
                timeout=STARTUP_TIMEOUT,
            )
            url = base + "/mcp"
            gateways.append((rev, sha, child, url))
            print(f"{rev} = {sha}: gateway {url} (pid {child.proc.pid})", flush=True)
        measurements: list[dict[str, Any]] = []
        for round_no in range(1, args.rounds + 1):
            for c in args.concurrency:
                for rev, sha, child, url in gateways:
                    worker = run_worker(
                        load_client_argv(url, "lab-echo", concurrency=c, calls=args.calls, warmup=args.warmup),
                        workdir=workdir,
                        what=f"{sha} C={c}",
                        sample=lambda child=child: (cpu_seconds(child.proc.pid), cpu_seconds(upstream.proc.pid)),
                        watch=(upstream, child),
                        show_output_of=child,
                    )
                    gw_cpu, up_cpu = worker.cpu_ms_per_call
                    result = worker.result
                    measurements.append(
                        {
                            "rev": rev,
                            "sha": sha,
                            "round": round_no,
                            "concurrency": c,
                            "calls_per_s": result["calls_per_s"],
                            "p50_ms": result["p50_ms"],
                            "p99_ms": result["p99_ms"],
                            "gateway_cpu_ms_per_call": gw_cpu,
                            "upstream_cpu_ms_per_call": up_cpu,
                        }
                    )
                    print(
                        f"  round {round_no} {sha} C={c:<3} {result['calls_per_s']:8.1f} calls/s  "
                        f"p50 {result['p50_ms']:6.2f} ms  gw CPU {gw_cpu:5.2f} ms/call  up CPU {up_cpu:5.2f}",
                        flush=True,
                    )
        return measurements

    measurements = run_with_children("mcpgw-revisions-", measure)
    rows = summarise(measurements, args)
    print()
    print(machine_line(run.machine, ("mcp", "httpx2")))
    print(f"N={args.calls} per run, warm-up {args.warmup}, {args.rounds} interleaved rounds; medians")
    print_table(
        [
            Column("revision", "rev", "<10"),
            Column("commit", "sha", "<9"),
            Column("C", "concurrency", ">3"),
            Column("calls/s", "calls_per_s", "9.1f"),
            Column("p50 ms", "p50_ms", "8.2f"),
            Column("gw CPU ms/call", "gateway_cpu_ms_per_call", "15.2f"),
            Column("up CPU ms/call", "upstream_cpu_ms_per_call", "15.2f"),
            Column("gw/up CPU", "gateway_per_upstream_cpu", "10.2f"),
            Column("calls/s vs first", "throughput_vs_first", "17.2f"),
        ],
        rows,
    )
    run.save(
        run.record(
            settings={
                "revisions": args.revisions,
                "calls": args.calls,
                "rounds": args.rounds,
                "concurrency": args.concurrency,
                "warmup": args.warmup,
            },
            summary={"rows": rows},
            runs=measurements,
        )
    )
    return 0


def summarise(measurements: Sequence[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for c in args.concurrency:
        first_rate: float | None = None
        for rev in args.revisions:
            runs = [m for m in measurements if m["rev"] == rev and m["concurrency"] == c]
            if not runs:
                continue
            row = {
                "rev": rev,
                "sha": runs[0]["sha"],
                "concurrency": c,
                **{
                    key: median_of([m[key] for m in runs])
                    for key in (
                        "calls_per_s",
                        "p50_ms",
                        "p99_ms",
                        "gateway_cpu_ms_per_call",
                        "upstream_cpu_ms_per_call",
                    )
                },
            }
            row["gateway_per_upstream_cpu"] = row["gateway_cpu_ms_per_call"] / row["upstream_cpu_ms_per_call"]
            first_rate = first_rate or row["calls_per_s"]
            row["throughput_vs_first"] = row["calls_per_s"] / first_rate
            rows.append(row)
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("revisions", nargs="+", help="git revisions to compare (the first is the reference)")
    parser.add_argument("--calls", type=int, default=2000, help="measured tools/call per run (default 2000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32], help="client sessions (default 1 32)")
    parser.add_argument("--warmup", type=int, default=100, help="warm-up calls per run (default 100)")
    args = parser.parse_args(argv)
    if args.calls < 1 or args.rounds < 1 or any(c < 1 for c in args.concurrency):
        parser.error("--calls, --rounds and --concurrency must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return orchestrate(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
