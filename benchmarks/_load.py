"""The load client shared by the benchmarks: the official SDK client driving ``tools/call`` or ``tools/list``.

Why a module of its own: ``proxy_overhead.py`` (mcpgw vs direct) and ``peers.py`` (mcpgw vs other gateways) must
drive their targets with *the same* client, or their ratios could not be compared; ``soak.py`` opens its sessions
the same way. Keeping the one implementation here means a change to how calls are made or timed reaches every
benchmark at once.

The load always runs in a process of its own (``python benchmarks/_load.py …`` or a benchmark's ``--worker``
mode), never inside the orchestrator or next to the server under test, so client CPU never mixes with server CPU.
The worker prints :data:`MARK_START` / :data:`MARK_END` around the measured phase, so the orchestrator can sample
the servers' CPU time exactly over it, and finally one :data:`RESULT_PREFIX` line with a JSON object.

Extra HTTP headers (e.g. a bearer token for a peer gateway) come from the environment variable
:data:`HEADERS_ENV` as a JSON object, never from the command line, where ``ps`` would show them.

A benchmark with a workload of its own (``governance.py``) keeps its own ``--worker`` mode but speaks the same
protocol through :func:`serve_worker` and :func:`latency_summary`. The orchestrator side of the protocol (spawning,
CPU sampling, clean-up) is in ``_runner.py``, the results files in ``_results.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import socket
import statistics
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcp import ClientSession

MARK_START = "@@measure-start"  # worker → orchestrator: the measured phase begins now
MARK_END = "@@measure-end"  # worker → orchestrator: the measured phase is over
RESULT_PREFIX = "@@result "  # worker → orchestrator: one JSON object follows on the same line
HEADERS_ENV = "MCPGW_BENCH_HEADERS"  # orchestrator → worker: extra HTTP headers as a JSON object

CALL_TIMEOUT = 30.0  # per tools/call in the client, so a wedged server fails the run instead of hanging it


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile: always an observed value, which is what a p99 of 2000 samples should be."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_summary(values_s: Sequence[float], prefix: str = "") -> dict[str, float]:
    """p50/p90/p99/max/mean in ms of latencies in seconds, keyed ``<prefix>p50_ms`` …: one shape for every result."""
    ordered = sorted(values_s)
    return {
        f"{prefix}p50_ms": percentile(ordered, 0.50) * 1000,
        f"{prefix}p90_ms": percentile(ordered, 0.90) * 1000,
        f"{prefix}p99_ms": percentile(ordered, 0.99) * 1000,
        f"{prefix}max_ms": ordered[-1] * 1000 if ordered else math.nan,
        f"{prefix}mean_ms": statistics.fmean(ordered) * 1000 if ordered else math.nan,
    }


def free_port() -> int:
    """A port the OS just handed out; good enough on loopback where nothing else races for it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def emit(line: str) -> None:
    """Write a protocol line to stdout immediately: the orchestrator times CPU samples on these markers."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def headers_from_env() -> dict[str, str] | None:
    """Extra request headers handed over by the orchestrator (see :data:`HEADERS_ENV`), or None."""
    raw = os.environ.get(HEADERS_ENV)
    if not raw:
        return None
    parsed = json.loads(raw)
    if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
        raise ValueError(f"{HEADERS_ENV} must be a JSON object of strings")
    return {str(k): v for k, v in parsed.items()}


def silence_sdk_deprecations() -> None:
    """The SDK warns about handshake-era features the benchmarks still use; the noise would bury real errors."""
    with contextlib.suppress(ImportError):
        from mcp.shared.exceptions import MCPDeprecationWarning

        warnings.filterwarnings("ignore", category=MCPDeprecationWarning)


async def open_session(
    stack: contextlib.AsyncExitStack,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    read_timeout: float = CALL_TIMEOUT,
) -> ClientSession:
    """One initialized SDK session over streamable HTTP with its own ``httpx2`` client, closed with ``stack``.

    One HTTP client per session, because one shared pool is itself a bottleneck on these machines (see
    ``/work/shared/reference/mcp-sdk-2x.md``), and a real MCP client has its own connection anyway.
    """
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    http_client = await stack.enter_async_context(create_mcp_http_client(headers=headers))
    read, write = await stack.enter_async_context(streamable_http_client(url, http_client=http_client))
    session = await stack.enter_async_context(ClientSession(read, write, read_timeout_seconds=read_timeout))
    await session.initialize()
    return session


async def run_load(
    url: str,
    *,
    tool: str,
    op: str = "call",
    concurrency: int = 1,
    calls: int = 2000,
    warmup: int = 100,
    payload: int = 64,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Open C sessions, warm up, then make N calls spread dynamically over the sessions and time each one.

    Work is handed out from a shared counter rather than pre-split N/C per session, so a session that happens to
    be slower does not leave the others idle at the end and stretch the wall time. ``op`` is ``call``
    (``tools/call`` of ``tool`` with ``{"text": "x" * payload}``, checked to come back unchanged) or ``list``
    (``tools/list``, checked to be non-empty).
    """
    import anyio

    text = "x" * payload

    async with contextlib.AsyncExitStack() as stack:
        sessions = [await open_session(stack, url, headers=headers) for _ in range(concurrency)]

        async def one_call(session: ClientSession) -> None:
            if op == "list":
                listed = await session.list_tools()
                if not listed.tools:
                    raise RuntimeError("tools/list returned no tools")
                return
            result = await session.call_tool(tool, {"text": text})
            if result.is_error or getattr(result.content[0], "text", None) != text:
                raise RuntimeError(f"unexpected tools/call result: {result!r}"[:500])

        async def drain(session: ClientSession, budget: list[int], latencies: list[float] | None) -> None:
            while budget[0] > 0:
                budget[0] -= 1
                started = time.perf_counter()
                await one_call(session)
                if latencies is not None:
                    latencies.append(time.perf_counter() - started)

        async def phase(total: int, latencies: list[float] | None) -> float:
            budget = [total]
            started = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for session in sessions:
                    tg.start_soon(drain, session, budget, latencies)
            return time.perf_counter() - started

        # Warm-up: one call on every session first (so all C are live), then the rest from the shared budget.
        async with anyio.create_task_group() as tg:
            for session in sessions:
                tg.start_soon(one_call, session)
        await phase(max(0, warmup - concurrency), None)

        latencies: list[float] = []
        cpu_before = time.process_time()
        emit(MARK_START)
        wall = await phase(calls, latencies)
        emit(MARK_END)
        client_cpu = time.process_time() - cpu_before

    return {
        "op": op,
        "concurrency": concurrency,
        "calls": len(latencies),
        "wall_s": wall,
        "calls_per_s": len(latencies) / wall,
        **latency_summary(latencies),
        "client_cpu_ms_per_call": client_cpu * 1000 / len(latencies),
    }


def serve_worker(measure: Callable[[], Awaitable[dict[str, Any]]]) -> int:
    """Body of a worker process: run one measurement and print it as the one :data:`RESULT_PREFIX` line.

    ``measure`` emits :data:`MARK_START` / :data:`MARK_END` itself around its timed phase.
    """
    import anyio

    silence_sdk_deprecations()
    result = anyio.run(measure)
    emit(RESULT_PREFIX + json.dumps(result))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python benchmarks/_load.py --url … --tool …``: one measurement, printed as one ``@@result`` line."""
    parser = argparse.ArgumentParser(description="One load-client measurement (used by the benchmarks).")
    parser.add_argument("--url", required=True)
    parser.add_argument("--tool", default="echo")
    parser.add_argument("--op", choices=("call", "list"), default="call")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--payload", type=int, default=64)
    args = parser.parse_args(argv)
    return serve_worker(
        lambda: run_load(
            args.url,
            tool=args.tool,
            op=args.op,
            concurrency=args.concurrency,
            calls=args.calls,
            warmup=args.warmup,
            payload=args.payload,
            headers=headers_from_env(),
        )
    )


if __name__ == "__main__":
    sys.exit(main())
