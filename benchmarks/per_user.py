"""What per-user credentials cost on ``tools/call``: a per_user_headers upstream (warm pool) vs shared headers.

Both upstream entries point at the *same* server (``tests/upstreams/keyed_server.py``, which wants an
``X-Api-Token`` header): ``shared`` sends one static token from gateway.yaml, ``peruser`` sends the
caller's own token, which the benchmark enrols once through the gateway's real credential form. The load
client (``benchmarks/_load.py``, the official SDK client, its own process) then calls ``shared-echo`` and
``peruser-echo`` as the same caller, interleaved, for ``--rounds`` rounds at each concurrency; the table shows
medians and the per-user/shared ratio of p50 latency (target <= 1.2x).

Run: ``.venv/bin/python benchmarks/per_user.py [--calls 1000] [--rounds 3] [--concurrency 1 8]``.
Results: ``benchmarks/results/per_user-<stamp>.json`` and ``per_user-latest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _load import free_port
from _results import git_info, machine_info, utc_stamp, write_results
from _runner import (
    BenchmarkError,
    Children,
    load_client_argv,
    mcpgw_command,
    run_with_children,
    run_worker,
    wait_for_port,
    wait_for_ready,
    worker_env,
)

KEYED_SERVER = Path(__file__).resolve().parents[1] / "tests" / "upstreams" / "keyed_server.py"
IDENTITY = {"x-bf-mcp-session-id": "per-user-benchmark"}


def start(children: Children, workdir: Path) -> str:
    upstream_port, gateway_port = free_port(), free_port()
    upstream = children.start(
        "keyed",
        [sys.executable, str(KEYED_SERVER), "--port", str(upstream_port)],
        env={**os.environ, "KEYED_OPEN_LISTING": "1"},
    )
    wait_for_port(upstream, upstream_port, 30)
    url = f"http://127.0.0.1:{upstream_port}/mcp"
    config = {
        "server": {"host": "127.0.0.1", "port": gateway_port},
        "auth": {"enforce_auth_on_inference": False},
        "database_url": f"sqlite:///{workdir / 'gateway.db'}",
        "upstreams": {
            "shared": {
                "transport": "http",
                "url": url,
                "headers": {"X-Api-Token": "shared-token"},
                "allow_on_all_virtual_keys": True,
            },
            "peruser": {
                "transport": "http",
                "url": url,
                "auth": {"type": "per_user_headers", "header_keys": ["X-Api-Token"]},
                "allow_on_all_virtual_keys": True,
            },
        },
    }
    path = workdir / "gateway.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    env = {**os.environ, "MCPGW_MASTER_KEY_FILE": str(workdir / "master.key")}
    env.pop("DATABASE_URL", None)
    gateway = children.start(
        "gateway", [mcpgw_command(), "serve", "--config", str(path), "--log-level", "warning"], env=env
    )
    base = f"http://127.0.0.1:{gateway_port}"
    wait_for_ready(gateway, base, 60)
    return base


async def enrol(base: str) -> None:
    """Be the person: get the form link from a first call, fill the form, check the next call works."""
    import httpx2
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def call() -> str:
        async with (
            httpx2.AsyncClient(headers=IDENTITY) as http,
            streamable_http_client(base + "/mcp", http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            result = await session.call_tool("peruser-whoami", {})
            return "".join(getattr(block, "text", "") for block in result.content)

    link = re.search(r"(https?://\S+/forms/credentials/[A-Za-z0-9_-]+)", await call())
    if link is None:
        raise BenchmarkError("the first per-user call did not return a credential form link")
    async with httpx2.AsyncClient() as browser:
        page = await browser.get(link.group(1))
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        if csrf is None:
            raise BenchmarkError("the credential form has no CSRF field")
        await browser.post(link.group(1), data={"csrf_token": csrf.group(1), "header:X-Api-Token": "bench-user-token"})
    if await call() != "bench-user-token":
        raise BenchmarkError("after enrolling, the per-user call did not carry the enrolled token")


def measure(base: str, tool: str, concurrency: int, calls: int, workdir: Path) -> dict[str, Any]:
    """One ``_load.py`` run as the benchmark's caller (its identity header comes through the environment)."""
    argv = load_client_argv(base + "/mcp", tool, concurrency=concurrency, calls=calls, warmup=100)
    run = run_worker(argv, workdir=workdir, what=f"load client {tool} C={concurrency}", env=worker_env(IDENTITY))
    return run.result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    import anyio

    started = time.monotonic()
    rows: dict[str, list[dict[str, Any]]] = {}

    def measure_all(workdir: Path, children: Children) -> None:
        base = start(children, workdir)
        anyio.run(enrol, base)
        for _ in range(args.rounds):
            for concurrency in args.concurrency:
                for tool in ("shared-echo", "peruser-echo"):
                    rows.setdefault(f"{tool}@{concurrency}", []).append(
                        measure(base, tool, concurrency, args.calls, workdir)
                    )

    run_with_children("mcpgw-per-user-", measure_all)

    summary: dict[str, Any] = {}
    print(f"{'C':>3} {'mode':<8} {'calls/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for concurrency in args.concurrency:
        entry: dict[str, Any] = {}
        for tool, mode in (("shared-echo", "shared"), ("peruser-echo", "per_user")):
            runs = rows[f"{tool}@{concurrency}"]
            entry[mode] = {
                key: statistics.median(run[key] for run in runs) for key in ("calls_per_s", "p50_ms", "p99_ms")
            }
            fig = entry[mode]
            print(f"{concurrency:>3} {mode:<8} {fig['calls_per_s']:>9.1f} {fig['p50_ms']:>8.2f} {fig['p99_ms']:>8.2f}")
        per_round = [
            p["p50_ms"] / s["p50_ms"]
            for s, p in zip(rows[f"shared-echo@{concurrency}"], rows[f"peruser-echo@{concurrency}"], strict=True)
        ]
        entry["p50_ratio"] = statistics.median(per_round)
        summary[str(concurrency)] = entry
        print(f"    per_user/shared p50 latency: {entry['p50_ratio']:.3f}x (target <= 1.2x)")
    stamp = utc_stamp()
    payload = {
        "benchmark": "per_user",
        "at": stamp,
        "args": vars(args),
        "summary": summary,
        "runs": rows,
        "machine": machine_info(),
        "git": git_info(),
        "elapsed_s": time.monotonic() - started,
    }
    write_results("per_user", payload, stamp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
