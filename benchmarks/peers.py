"""Peers: mcpgw next to other MCP gateways, same upstream, same load client, same run.

Why this shape:

* A number for mcpgw alone says little; "as fast as X" is what a reader wants to know. Absolute calls/s on these
  2-core, shared machines drift ±25 % between runs, so every target is compared with the **direct** path
  (client → upstream) measured right next to it: each target's runs are interleaved with direct runs (direct C=1,
  target C=1, direct C=32, target C=32, direct list, target list) and its ratio uses those neighbours.
* One upstream for all: ``tests/upstreams/lab_server.py`` over streamable HTTP (tool ``echo``), started once.
* One load client for all: ``_load.run_load`` (the same code ``proxy_overhead.py`` uses), in its own process per
  measurement (``_runner.run_worker``), so client CPU never mixes with a gateway's. Credentials reach it through
  the environment.
* Peers come from PyPI into their **own venvs** under ``.cache/bench-venvs/`` (git-ignored), installed on first
  use: ContextForge pins mcp 1.x, FastMCP moves fast, and neither may disturb the project's venv. A peer that
  fails to install, start or answer is skipped with the reason printed; the run goes on with the others.
* Each peer runs alone: it is started just before its measurements and stopped right after, so an idle peer's
  background work (health checks, pollers) never steals CPU from another's measurement.
* While each measured phase runs, the CPU time of the peer's process tree and of the upstream is sampled, giving
  CPU ms per call for the hop: on 2 cores, where client, peer and upstream compete, this is the steadier signal.

Targets (labels as in the table; see ``/work/shared/reference/peer-gateways-for-benchmarks.md``):

* ``mcpgw``: this project, ``mcpgw serve`` with the upstream as ``lab`` (tool ``lab-echo``).
* ``fastmcp-reused``: FastMCP ``create_proxy(client)`` with an already-connected ``Client``: one upstream session
  shared by all callers (FastMCP warns about "context mixing").
* ``fastmcp-default``: FastMCP ``create_proxy(url)``, its default: a fresh upstream session per request.
* ``contextforge``: IBM ContextForge (``mcp-contextforge-gateway``) defaults: a new upstream session per call.
* ``contextforge-stateful``: the same with ``USE_STATEFUL_SESSIONS=true`` (upstream sessions reused).

Usage::

    .venv/bin/python benchmarks/peers.py                   # all targets, N=2000, C=1 and 32 (~15-20 min)
    .venv/bin/python benchmarks/peers.py --quick           # N=300 smoke run
    .venv/bin/python benchmarks/peers.py --peers mcpgw fastmcp-reused --calls 1000

Results go to ``benchmarks/results/peers-<UTC timestamp>.json`` and ``…/peers-latest.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _load import free_port
from _results import BenchmarkRun, Column, machine_line, median_of, print_table
from _runner import (
    REPO_ROOT,
    BenchmarkError,
    Child,
    Children,
    load_client_argv,
    mcpgw_command,
    run_with_children,
    run_worker,
    start_lab,
    tree_cpu_seconds,
    wait_for_http,
    wait_for_port,
    wait_for_ready,
    worker_env,
)

VENVS_DIR = REPO_ROOT / ".cache" / "bench-venvs"
INSTALLED_MARKER = ".bench-installed"  # written into a peer venv once its spec installed; holds the spec

DIRECT = "direct"
PEERS: tuple[str, ...] = ("mcpgw", "fastmcp-reused", "fastmcp-default", "contextforge", "contextforge-stateful")
FASTMCP_SPEC = "fastmcp>=4.2,<5"
CONTEXTFORGE_SPEC = "mcp-contextforge-gateway>=1.0.7,<1.1"

STARTUP_TIMEOUT = 60.0
CONTEXTFORGE_STARTUP_TIMEOUT = 180.0  # first start runs its migrations on a new SQLite file
INSTALL_TIMEOUT = 1200.0

# The FastMCP proxy, run by the FastMCP venv's python: argv = upstream URL, port, "reused" | "default".
FASTMCP_PROXY = '''\
"""FastMCP proxy for benchmarks/peers.py (generated; runs in the FastMCP venv)."""
import asyncio
import sys

from fastmcp import Client
from fastmcp.server import create_proxy


async def main() -> None:
    url, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    run = {"show_banner": False, "host": "127.0.0.1", "port": port, "log_level": "warning"}
    if mode == "reused":
        async with Client(url) as client:  # connected: every request reuses this one upstream session
            await create_proxy(client, name="bench").run_http_async(**run)
    else:
        await create_proxy(url, name="bench").run_http_async(**run)


asyncio.run(main())
'''


class PeerSkipped(Exception):
    """A peer could not be installed, started or registered; the reason is printed and the run goes on."""


# --------------------------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------------------------


def _log_tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log, minus pip's noise about local index folders that do not hold a package."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    kept = [line for line in text.splitlines() if not line.startswith("WARNING: Location ")]
    return "\n".join(kept[-lines:]) or "(empty)"


def ensure_venv(name: str, spec: str) -> Path:
    """The python of ``.cache/bench-venvs/<name>`` with ``spec`` installed; creates or updates it on first use.

    A marker file records the installed spec, so later runs start at once and a changed spec reinstalls.
    """
    venv = VENVS_DIR / name
    python = venv / "bin" / "python"
    marker = venv / INSTALLED_MARKER
    if python.exists() and marker.exists() and marker.read_text().strip() == spec:
        return python
    VENVS_DIR.mkdir(parents=True, exist_ok=True)
    log = VENVS_DIR / f"{name}-install.log"
    base_python = getattr(sys, "_base_executable", None) or sys.executable
    print(f"  installing {spec!r} into {venv.relative_to(REPO_ROOT)} (first use; log {log.relative_to(REPO_ROOT)})")
    steps: list[list[str]] = []
    if not python.exists():
        steps.append([base_python, "-m", "venv", str(venv)])
    steps.append([str(python), "-m", "pip", "install", "--quiet", spec])
    with log.open("wb") as out:
        for argv in steps:
            try:
                done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise PeerSkipped(f"install of {spec} failed: {exc!r}") from None
            if done.returncode != 0:
                raise PeerSkipped(f"install of {spec} failed (exit {done.returncode}):\n{_log_tail(log)}")
    marker.write_text(spec + "\n")
    return python


def venv_versions(python: Path, dists: Sequence[str]) -> dict[str, str]:
    """Installed versions of ``dists`` in another venv (asked of its own python)."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for d in sys.argv[1:]:\n"
        "    try: out[d] = m.version(d)\n"
        "    except m.PackageNotFoundError: out[d] = 'not installed'\n"
        "print(json.dumps(out))\n"
    )
    try:
        done = subprocess.run([str(python), "-c", code, *dists], capture_output=True, text=True, timeout=60)
        parsed: dict[str, str] = json.loads(done.stdout)
        return parsed
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return {}


def http_json(method: str, url: str, token: str | None = None, body: Any = None, timeout: float = 30) -> Any:
    """A small JSON request with urllib (no extra dependency in the orchestrator)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise PeerSkipped(f"{method} {url} → HTTP {exc.code}: {exc.read()[:400]!r}") from None
    except (OSError, ValueError) as exc:
        raise PeerSkipped(f"{method} {url} failed: {exc!r}") from None


# --------------------------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Target:
    """Where the load client points for one peer, and whose CPU counts as the peer's."""

    label: str
    url: str
    tool: str
    proxy_pid: int | None  # root of the peer's process tree; None for direct
    headers: dict[str, str] | None = None
    versions: dict[str, str] = field(default_factory=dict)
    notes: str = ""


def start_mcpgw(children: Children, workdir: Path, upstream_url: str) -> Target:
    """mcpgw with the upstream as ``lab``: no virtual keys (auth off for inference), a throwaway SQLite store."""
    port = free_port()
    config = workdir / "mcpgw.yaml"
    config.write_text(
        "server:\n  host: 127.0.0.1\n"
        "auth:\n  enforce_auth_on_inference: false\n"
        f"database_url: sqlite:///{workdir / 'mcpgw.db'}\n"
        f"upstreams:\n  lab:\n    transport: http\n    url: {upstream_url}\n    allow_on_all_virtual_keys: true\n"
    )
    child = children.start(
        "mcpgw", [mcpgw_command(), "serve", "--config", str(config), "--port", str(port), "--log-level", "warning"]
    )
    base = f"http://127.0.0.1:{port}"
    wait_for_ready(child, base, STARTUP_TIMEOUT)
    from importlib.metadata import version

    return Target(
        "mcpgw",
        base + "/mcp",
        "lab-echo",
        child.proc.pid,
        versions={"mcpgw": version("mcpgw"), "mcp": version("mcp")},
        notes="one upstream session, calls multiplexed on it",
    )


def start_fastmcp(children: Children, workdir: Path, upstream_url: str, mode: str) -> Target:
    """FastMCP's proxy in its own venv; ``mode`` is ``reused`` (connected client) or ``default`` (URL)."""
    python = ensure_venv("fastmcp", FASTMCP_SPEC)
    script = workdir / "fastmcp_proxy.py"
    script.write_text(FASTMCP_PROXY)
    port = free_port()
    label = f"fastmcp-{mode}"
    env = {**os.environ, "FASTMCP_LOG_LEVEL": "WARNING"}
    env.pop("PYTHONPATH", None)  # the peer's venv only
    child = children.start(label, [str(python), str(script), upstream_url, str(port), mode], env=env)
    wait_for_port(child, port, STARTUP_TIMEOUT)
    notes = (
        "create_proxy(connected Client): one shared upstream session"
        if mode == "reused"
        else "create_proxy(url) default: fresh upstream session per request"
    )
    versions = venv_versions(python, ["fastmcp", "mcp"])
    return Target(label, f"http://127.0.0.1:{port}/mcp", "echo", child.proc.pid, versions=versions, notes=notes)


def start_contextforge(children: Children, workdir: Path, upstream_url: str, stateful: bool) -> Target:
    """ContextForge in its own venv: SQLite, no UI/admin UI/plugins, loopback upstreams allowed, no rate limit.

    Then, as its docs describe: an admin JWT from its own tool, the upstream registered with ``POST /gateways``,
    a virtual server with just the echo tool via ``POST /servers``; clients call ``/servers/<id>/mcp``.
    """
    python = ensure_venv("contextforge", CONTEXTFORGE_SPEC)
    label = "contextforge-stateful" if stateful else "contextforge"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{workdir / f'{label}.db'}",
            "JWT_SECRET_KEY": secrets.token_urlsafe(48),  # it rejects low-entropy secrets
            "AUTH_ENCRYPTION_SECRET": secrets.token_urlsafe(48),
            "MCPGATEWAY_UI_ENABLED": "false",
            "MCPGATEWAY_ADMIN_API_ENABLED": "false",
            "PLUGINS_ENABLED": "false",
            "SSRF_ALLOW_LOCALHOST": "true",  # the upstream is on loopback
            "RATE_LIMITING_ENABLED": "false",  # default 100 requests/min per endpoint would answer 429
            "USE_STATEFUL_SESSIONS": "true" if stateful else "false",
            "LOG_LEVEL": "ERROR",
        }
    )
    child = children.start(
        label, [str(python.parent / "mcpgateway"), "--host", "127.0.0.1", "--port", str(port)], env=env
    )
    base = f"http://127.0.0.1:{port}"
    wait_for_http(child, base + "/health", CONTEXTFORGE_STARTUP_TIMEOUT, interval=0.3)
    try:
        minted = subprocess.run(
            [str(python), "-m", "mcpgateway.utils.create_jwt_token", "--username", "admin@example.com", "--admin"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PeerSkipped(f"could not mint a ContextForge token: {exc!r}") from None
    token = minted.stdout.strip().splitlines()[-1] if minted.stdout.strip() else ""
    if minted.returncode != 0 or token.count(".") != 2:
        raise PeerSkipped(f"could not mint a ContextForge token (exit {minted.returncode}): {minted.stderr[-800:]}")
    gateway = http_json(
        "POST", base + "/gateways", token, {"name": "lab", "url": upstream_url, "transport": "STREAMABLEHTTP"}
    )
    tools = http_json("GET", base + "/tools", token)
    items = tools if isinstance(tools, list) else (tools or {}).get("items", [])
    echo = [
        t
        for t in items
        if t.get("originalName") == "echo" and t.get("gatewayId", gateway.get("id")) == gateway.get("id")
    ]
    if not echo:
        raise PeerSkipped(f"ContextForge registered the upstream but lists no echo tool: {str(tools)[:400]}")
    server = http_json(
        "POST", base + "/servers", token, {"server": {"name": "bench", "associated_tools": [echo[0]["id"]]}}
    )
    notes = (
        "USE_STATEFUL_SESSIONS=true: upstream sessions reused" if stateful else "default: new upstream session per call"
    )
    return Target(
        label,
        f"{base}/servers/{server['id']}/mcp",
        echo[0]["name"],
        child.proc.pid,
        headers={"Authorization": f"Bearer {token}"},
        versions=venv_versions(python, ["mcp-contextforge-gateway", "mcp"]),
        notes=notes,
    )


def start_peer(label: str, children: Children, workdir: Path, upstream_url: str) -> Target:
    """Dispatch on the label (see :data:`PEERS`); a peer that does not start or get ready is skipped, not fatal."""
    starters: dict[str, Callable[[], Target]] = {
        "mcpgw": lambda: start_mcpgw(children, workdir, upstream_url),
        "fastmcp-reused": lambda: start_fastmcp(children, workdir, upstream_url, "reused"),
        "fastmcp-default": lambda: start_fastmcp(children, workdir, upstream_url, "default"),
        "contextforge": lambda: start_contextforge(children, workdir, upstream_url, stateful=False),
        "contextforge-stateful": lambda: start_contextforge(children, workdir, upstream_url, stateful=True),
    }
    try:
        return starters[label]()
    except BenchmarkError as exc:
        raise PeerSkipped(str(exc)) from None


# --------------------------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One load-client process: its result plus the CPU the peer and the upstream used in its measured phase."""

    target: str
    paired_with: str  # for direct runs: the peer they are the neighbours of
    op: str
    concurrency: int
    result: dict[str, Any]
    proxy_cpu_ms_per_call: float
    upstream_cpu_ms_per_call: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "paired_with": self.paired_with,
            "op": self.op,
            "concurrency": self.concurrency,
            **self.result,
            "proxy_cpu_ms_per_call": self.proxy_cpu_ms_per_call,
            "upstream_cpu_ms_per_call": self.upstream_cpu_ms_per_call,
        }


@dataclass
class Session:
    """Settings and state of one invocation."""

    upstream: Child
    workdir: Path
    deadline: float
    warmup: int
    payload: int
    runs: list[Run] = field(default_factory=list)

    def measure(self, target: Target, paired_with: str, op: str, concurrency: int, calls: int) -> Run:
        """One ``_load.py`` process against ``target``; CPU of the peer tree and upstream sampled at its markers."""
        argv = load_client_argv(
            target.url,
            target.tool,
            op=op,
            concurrency=concurrency,
            calls=calls,
            warmup=self.warmup,
            payload=self.payload,
        )

        def sample() -> tuple[float, float]:
            proxy = tree_cpu_seconds(target.proxy_pid) if target.proxy_pid is not None else math.nan
            return proxy, tree_cpu_seconds(self.upstream.proc.pid)

        measured = run_worker(
            argv,
            workdir=self.workdir,
            what=f"load client for {target.label} {op} C={concurrency}",
            sample=sample,
            env=worker_env(target.headers),
            deadline=self.deadline,
            watch=(self.upstream,),
        )
        result = measured.result
        proxy_ms, up_ms = measured.cpu_ms_per_call
        run = Run(target.label, paired_with, op, concurrency, result, proxy_ms, up_ms)
        self.runs.append(run)
        print(
            f"  {target.label:<22} {op:<4} C={concurrency:<3} {result['calls_per_s']:8.1f} calls/s  "
            f"p50 {result['p50_ms']:8.2f} ms  p99 {result['p99_ms']:8.2f} ms",
            flush=True,
        )
        return run


# --------------------------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------------------------


def summarise(runs: Sequence[Run], order: Sequence[str], concurrencies: Sequence[int]) -> list[dict[str, Any]]:
    """One row per (target, op, C); a peer's ratio is against the direct run made right next to it."""
    rows: list[dict[str, Any]] = []
    keys = [("call", c) for c in concurrencies] + [("list", 1)]
    for op, c in keys:
        direct = [r for r in runs if r.target == DIRECT and r.op == op and r.concurrency == c]
        if direct:
            rows.append(
                {
                    "target": DIRECT,
                    "op": op,
                    "concurrency": c,
                    "runs": len(direct),
                    "calls_per_s": median_of([r.result["calls_per_s"] for r in direct]),
                    "p50_ms": median_of([r.result["p50_ms"] for r in direct]),
                    "p99_ms": median_of([r.result["p99_ms"] for r in direct]),
                    "proxy_cpu_ms_per_call": math.nan,
                    "upstream_cpu_ms_per_call": median_of([r.upstream_cpu_ms_per_call for r in direct]),
                    "client_cpu_ms_per_call": median_of([r.result["client_cpu_ms_per_call"] for r in direct]),
                    "throughput_ratio": 1.0,
                    "p50_ratio": 1.0,
                }
            )
        for label in order:
            mine = [r for r in runs if r.target == label and r.op == op and r.concurrency == c]
            if not mine:
                continue
            run = mine[-1]
            neighbour = [r for r in direct if r.paired_with == label]
            base = neighbour[-1].result if neighbour else None
            rows.append(
                {
                    "target": label,
                    "op": op,
                    "concurrency": c,
                    "runs": 1,
                    "calls_per_s": run.result["calls_per_s"],
                    "p50_ms": run.result["p50_ms"],
                    "p99_ms": run.result["p99_ms"],
                    "proxy_cpu_ms_per_call": run.proxy_cpu_ms_per_call,
                    "upstream_cpu_ms_per_call": run.upstream_cpu_ms_per_call,
                    "client_cpu_ms_per_call": run.result["client_cpu_ms_per_call"],
                    "throughput_ratio": run.result["calls_per_s"] / base["calls_per_s"] if base else math.nan,
                    "p50_ratio": run.result["p50_ms"] / base["p50_ms"] if base else math.nan,
                    "direct_calls_per_s_next_to_it": base["calls_per_s"] if base else math.nan,
                }
            )
    return rows


def print_report(rows: Sequence[dict[str, Any]], status: dict[str, dict[str, Any]], machine: dict[str, Any]) -> None:
    """Side-by-side table: tools/call per C with ratios to the direct run next to it, then tools/list."""
    print()
    print(machine_line(machine))
    print_table(
        [
            Column("target", "target", "<22"),
            Column("op", "op", "<5"),
            Column("C", "concurrency", ">3"),
            Column("calls/s", "calls_per_s", "9.1f"),
            Column("x direct", "throughput_ratio", "8.2f", suffix="x"),
            Column("p50 ms", "p50_ms", "9.2f"),
            Column("p99 ms", "p99_ms", "9.2f"),
            Column("proxy CPU ms/call", "proxy_cpu_ms_per_call", "18.2f"),
            Column("upstream CPU ms/call", "upstream_cpu_ms_per_call", "21.2f"),
        ],
        rows,
    )
    print()
    for label, info in status.items():
        detail = info.get("notes") or ""
        if info["status"] != "ok":
            detail = (info.get("reason") or "").splitlines()[0][:200] if info.get("reason") else ""
        versions = ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items())
        print(f"  {label:<22} {info['status']:<8} {versions}  {detail}")


# --------------------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def peer_processes(workdir: Path) -> Iterator[Children]:
    """A peer's own children, stopped as soon as its measurements are done (or on any error)."""
    children = Children(workdir)
    try:
        yield children
    finally:
        children.close()


def measure_peer(session: Session, label: str, upstream_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Start one peer, run its interleaved measurements, stop it; never raises for a peer-specific failure."""
    direct = Target(DIRECT, upstream_url, "echo", None)
    print(f"{label}:", flush=True)
    started = time.monotonic()
    with peer_processes(session.workdir) as children:
        try:
            target = start_peer(label, children, session.workdir, upstream_url)
        except PeerSkipped as exc:
            print(f"  SKIPPED {label}: {exc}", flush=True)
            return {"status": "skipped", "reason": str(exc)}
        info: dict[str, Any] = {"status": "ok", "versions": target.versions, "notes": target.notes, "url": target.url}
        try:
            for c in args.concurrency:
                session.measure(direct, label, "call", c, args.calls)
                session.measure(target, label, "call", c, args.calls)
            session.measure(direct, label, "list", 1, args.list_calls)
            session.measure(target, label, "list", 1, args.list_calls)
        except BenchmarkError as exc:
            print(f"  FAILED {label}: {exc}", flush=True)
            info.update(status="failed", reason=str(exc))
            if children.items:
                info["log_tail"] = children.items[0].stderr_tail(20)
    info["seconds"] = round(time.monotonic() - started, 1)
    return info


def orchestrate(args: argparse.Namespace) -> int:
    run = BenchmarkRun("peers")
    status: dict[str, dict[str, Any]] = {}

    def measure(workdir: Path, shared: Children) -> Session:
        port = free_port()
        upstream = start_lab(shared, "upstream", port, timeout=STARTUP_TIMEOUT)
        upstream_url = f"http://127.0.0.1:{port}/mcp"
        print(f"upstream {upstream_url} (pid {upstream.proc.pid})")
        session = Session(upstream, workdir, run.started + args.max_seconds, args.warmup, args.payload)
        for label in args.peers:
            status[label] = measure_peer(session, label, upstream_url, args)
        return session

    session = run_with_children("mcpgw-peers-", measure)
    rows = summarise(session.runs, args.peers, args.concurrency)
    print_report(rows, status, run.machine)
    print(f"total runtime {run.elapsed():.0f} s")
    run.save(
        run.record(
            settings={
                "calls": args.calls,
                "concurrency": args.concurrency,
                "warmup": args.warmup,
                "payload_bytes": args.payload,
                "tools_list_calls": args.list_calls,
                "peers": args.peers,
            },
            peers=status,
            summary=rows,
            runs=[r.as_dict() for r in session.runs],
        )
    )
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000, help="measured tools/call per run (default 2000)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32], help="client sessions (default 1 32)")
    parser.add_argument("--warmup", type=int, default=100, help="warm-up calls per run, not measured (default 100)")
    parser.add_argument("--list-calls", type=int, default=200, help="sequential tools/list calls per target")
    parser.add_argument("--payload", type=int, default=64, help="bytes of text sent to echo (default 64)")
    parser.add_argument("--peers", nargs="+", choices=PEERS, default=list(PEERS), help="targets besides direct")
    parser.add_argument("--quick", action="store_true", help="smoke run: N=300, fewer warm-up and tools/list calls")
    parser.add_argument("--max-seconds", type=float, default=3600, help="overall time budget (default 3600)")
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.warmup, args.list_calls = 300, 30, 50
    if args.calls < 1 or any(c < 1 for c in args.concurrency):
        parser.error("--calls and --concurrency must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    return orchestrate(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
