"""LLM tool injection: what adding a caller's 100 MCP tools to every model request costs, on vs off, one gateway.

Why this shape:

* The question is what mcpgw's MCP tool injection (``llm.auto_inject_mcp_tools``, on by default) adds to a model
  request when the caller's ``/mcp`` view holds 100 tools: the gateway looks up the view, adds 100 tool definitions
  to the body and sends a ~56 KB request instead of a ~0.1 KB one, and the request runs in agent mode (a streamed
  answer is parsed and re-encoded event by event, to hold back tool calls). Target: **≤ 0.5 ms added p50 at C=1**,
  non-streaming and streaming, and the requests/s ratio at C=32 shown next to it.
* **One gateway process** (``mcpgw serve`` set up as ``llm_overhead.start_mcpgw`` does: provider ``openai`` = the
  mock, a real virtual key, ``enforce_auth_on_inference``) with one stdio MCP upstream, ``_many_tools_server.py``
  (``tool_000`` … ``tool_099``, ~100-character descriptions, three typed properties each;
  ``allow_on_all_virtual_keys`` so the key sees all of them). **on** = plain requests; **off** = the same requests
  with ``x-mcpgw-inject-tools: off``, so both go through the same process, caches and connections and the
  difference is injection alone. **direct** (client → mock) is the baseline, as in ``llm_overhead.py``.
* The mock model (``examples/servers/llm_provider.py``) answers with text, never a tool call, so this measures the
  cost of injection on a one-round request only, not agent rounds (tool runs and further model requests).
  "Added" latency is end to end: it includes the mock receiving and parsing the bigger body (a real provider must
  too); the gateway's and the mock's CPU ms per request, sampled per run, say who spent what.
* Before measuring, one request per mode with and without the header goes through the same gateway and key to a
  second, **recording** mock (provider ``probe``, model ``probe/<model>``, its ``--record`` file): it must have
  received 100 tools with injection on and none with it off, or the run fails. The measured mock does not record
  (a file write per request would be measured too) and keeps only its last request (it keeps all of them
  otherwise: ~220 KB of Python objects per injected request, whose garbage-collector passes would show as latency).
* 2 noisy cores: the targets are **interleaved** (direct, on, off; direct, off, on in the next round), ``--rounds``
  times; the table shows medians per (mode, C, target) and "added" figures are medians of the per-round
  differences. Load client, CPU sampling and results files are ``llm_overhead.py``'s (its ``--worker``).

Usage::

    .venv/bin/python benchmarks/llm_injection.py                     # N=2000, C=1 and 32, both modes, 3 rounds
    .venv/bin/python benchmarks/llm_injection.py --requests 300 --rounds 1   # smoke run

Results go to ``benchmarks/results/llm_injection-<UTC timestamp>.json`` and ``…/llm_injection-latest.json``.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _results import BenchmarkRun, Column, machine_line, median_of, print_table
from _runner import BenchmarkError, Children, run_with_children
from llm_overhead import (
    MOCK_PROVIDER,
    MOCK_TEXT,
    MODEL,
    MODES,
    REQUEST_TIMEOUT,
    Bench,
    Run,
    Target,
    add_load_options,
    print_check,
    request_body,
    start_mcpgw,
    start_mock,
    verdict,
)

MANY_TOOLS_SERVER = Path(__file__).resolve().with_name("_many_tools_server.py")
TOOL_COUNT = 100  # tools the upstream lists (its MANY_TOOLS_COUNT)
UPSTREAM = "many"
PROBE_PROVIDER = "probe"  # the recording mock, only for the check before measuring
INJECT_HEADER = "x-mcpgw-inject-tools"  # llm_gateway.tools.injection.INJECT_HEADER
TARGETS: tuple[str, ...] = ("direct", "on", "off")

TARGET_ADDED_P50_MS = 0.5  # on p50 - off p50, C=1, non-streaming and streaming


def mock_main(argv: Sequence[str]) -> None:
    """``--mock …``: the mock provider with the same options, keeping only its last request (see the docstring)."""
    sys.path.insert(0, str(MOCK_PROVIDER.parent))
    import llm_provider

    class LastRequestOnly(llm_provider.MockProvider):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.requests = collections.deque(maxlen=1)  # type: ignore[assignment]  # append and [-1] are all it uses

    llm_provider.MockProvider = LastRequestOnly  # type: ignore[misc]  # main() looks the class up when called
    sys.argv = [str(MOCK_PROVIDER), *argv]
    llm_provider.main()


def verify_injection(target: Target, record: Path) -> dict[str, Any]:
    """Per mode, one request with injection on and one off, to the recording mock: 100 tools arrive, then none."""
    sent = [(mode, inject) for mode in MODES for inject in (True, False)]
    for mode, inject in sent:
        body = json.loads(request_body(mode == "stream")) | {"model": f"{PROBE_PROVIDER}/{MODEL}"}
        headers = {**target.headers, "content-type": "application/json"} | ({} if inject else {INJECT_HEADER: "off"})
        request = urllib.request.Request(target.url, data=json.dumps(body).encode(), headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
                answer = response.read()
        except urllib.error.HTTPError as exc:
            error = f"check request ({mode}, inject {inject}): HTTP {exc.code}: {exc.read()[:400]!r}"
            raise BenchmarkError(error) from None
        except OSError as exc:
            raise BenchmarkError(f"check request ({mode}, inject {inject}) failed: {exc!r}") from None
        if (b"[DONE]" if mode == "stream" else MOCK_TEXT) not in answer:
            raise BenchmarkError(f"check request ({mode}, inject {inject}): unexpected answer {answer[:400]!r}")
    received = [json.loads(line)["body"] for line in record.read_text().splitlines()]
    if len(received) != len(sent):
        raise BenchmarkError(f"the recording mock got {len(received)} requests, expected {len(sent)}")
    found: dict[str, Any] = {}
    for (mode, inject), body in zip(sent, received, strict=True):
        names = [tool.get("function", {}).get("name") for tool in body.get("tools") or []]
        expected = TOOL_COUNT if inject else 0
        if sorted(str(name)[-8:] for name in names) != [f"tool_{i:03d}" for i in range(expected)]:
            raise BenchmarkError(
                f"injection check failed ({mode}, inject {'on' if inject else 'off'}): the provider received "
                f"{len(names)} tools, expected {expected} ({names[:5]} …)"
            )
        key = f"{mode}_{'on' if inject else 'off'}"
        found[key] = {"tools": len(names), "body_bytes": len(json.dumps(body)), "first_tools": names[:3]}
    print("injection check: " + ", ".join(f"{k} {v['tools']} tools ({v['body_bytes']:,} B)" for k, v in found.items()))
    return found


Rounds = list[dict[tuple[str, int, str], Run]]
"""Per round, the run of every (mode, C, target)."""


def median_result(runs: Sequence[Run], key: str) -> float:
    return median_of([r.result.get(key, math.nan) for r in runs])


def median_added(runs: Sequence[Run], bases: Sequence[Run], key: str) -> float:
    """Median over the rounds of (run - base run of the same round), for one result figure."""
    pairs = zip(runs, bases, strict=True)
    return median_of([a.result.get(key, math.nan) - b.result.get(key, math.nan) for a, b in pairs])


def summarise(rounds: Rounds, concurrencies: Sequence[int]) -> list[dict[str, Any]]:
    """One row per (mode, C, target): medians over the rounds; "added"/"x" figures are medians of per-round ones."""
    rows: list[dict[str, Any]] = []
    for mode in MODES:
        for c in concurrencies:
            runs = {label: [done[mode, c, label] for done in rounds] for label in TARGETS}
            for label, mine in runs.items():
                on, off, direct = label == "on", runs["off"], runs["direct"]
                ratios = [
                    a.result["requests_per_s"] / b.result["requests_per_s"] for a, b in zip(mine, off, strict=True)
                ]
                rows.append(
                    {
                        "mode": mode,
                        "concurrency": c,
                        "target": label,
                        "requests_per_s": median_result(mine, "requests_per_s"),
                        "throughput_vs_off": median_of(ratios),
                        "p50_ms": median_result(mine, "p50_ms"),
                        "p90_ms": median_result(mine, "p90_ms"),
                        "p99_ms": median_result(mine, "p99_ms"),
                        "added_p50_vs_off_ms": median_added(mine, off, "p50_ms") if on else math.nan,
                        "added_p90_vs_off_ms": median_added(mine, off, "p90_ms") if on else math.nan,
                        "added_p50_vs_direct_ms": median_added(mine, direct, "p50_ms")
                        if label != "direct"
                        else math.nan,
                        "ttfb_p50_ms": median_result(mine, "ttfb_p50_ms"),
                        "added_ttfb_p50_vs_off_ms": median_added(mine, off, "ttfb_p50_ms") if on else math.nan,
                        # the gateway's CPU: NaN for direct (none sampled under that label)
                        "gateway_cpu_ms_per_request": median_of([r.proxy_cpu_ms_per_request for r in mine]),
                        "mock_cpu_ms_per_request": median_of([r.cpu_ms_per_request["mock"] for r in mine]),
                        "client_cpu_ms_per_request": median_result(mine, "client_cpu_ms_per_request"),
                    }
                )
    return rows


def checks_of(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The target (added p50 at C=1, both modes) with PASS/FAIL, and the C=32 throughput and CPU figures."""

    def row(mode: str, c: int, target: str) -> dict[str, Any]:
        return next((r for r in rows if (r["mode"], r["concurrency"], r["target"]) == (mode, c, target)), {})

    out: dict[str, Any] = {}
    for mode in MODES:
        value = row(mode, 1, "on").get("added_p50_vs_off_ms", math.nan)
        out[f"added_p50_ms_c1_{mode}"] = {
            "value": value,
            "target": f"<= {TARGET_ADDED_P50_MS:g} ms",
            "verdict": verdict(value, TARGET_ADDED_P50_MS, at_most=True),
        }
    out["added_ttfb_p50_ms_c1_stream"] = {"value": row("stream", 1, "on").get("added_ttfb_p50_vs_off_ms", math.nan)}
    for mode in MODES:
        out[f"throughput_on_over_off_c32_{mode}"] = {"value": row(mode, 32, "on").get("throughput_vs_off", math.nan)}
        for c in (1, 32):
            on, off = row(mode, c, "on"), row(mode, c, "off")
            for who in ("gateway", "mock"):
                key = f"{who}_cpu_ms_per_request"
                out[f"{who}_cpu_added_ms_c{c}_{mode}"] = {"value": on.get(key, math.nan) - off.get(key, math.nan)}
    return out


def print_report(
    rows: Sequence[dict[str, Any]], checks: dict[str, Any], machine: dict[str, Any], found: dict[str, Any]
) -> None:
    print()
    print(machine_line(machine, ("httpx2", "uvicorn")))
    on, off = found["json_on"], found["json_off"]
    print(f"  on: {on['tools']} tools injected, provider request ~{on['body_bytes']:,} B (off: {off['body_bytes']} B)")
    print_table(
        [
            Column("mode", "mode", "<6"),
            Column("C", "concurrency", ">3"),
            Column("target", "target", "<6"),
            Column("req/s", "requests_per_s", "8.1f"),
            Column("x off", "throughput_vs_off", "6.2f", suffix="x"),
            Column("p50 ms", "p50_ms", "8.2f"),
            Column("p90 ms", "p90_ms", "8.2f"),
            Column("+p50 vs off", "added_p50_vs_off_ms", "+11.2f"),
            Column("+p50 vs direct", "added_p50_vs_direct_ms", "+14.2f"),
            Column("TTFB p50", "ttfb_p50_ms", "8.2f"),
            Column("+TTFB vs off", "added_ttfb_p50_vs_off_ms", "+12.2f"),
            Column("gw CPU ms/req", "gateway_cpu_ms_per_request", "13.2f"),
            Column("mock CPU ms/req", "mock_cpu_ms_per_request", "15.2f"),
        ],
        rows,
    )
    print("(medians over the rounds; on = injection on, off = header x-mcpgw-inject-tools: off, same gateway)")
    print()
    print("injection targets:")
    for mode, what in (("json", "non-streaming"), ("stream", "streaming")):
        print_check(checks[f"added_p50_ms_c1_{mode}"], f"added p50 (on - off), C=1, {what}", "ms")
    context = [("added_ttfb_p50_ms_c1_stream", "added time to first byte p50, C=1, streaming", "ms")]
    for mode in MODES:
        context.append((f"throughput_on_over_off_c32_{mode}", f"requests/s on / off, C=32, {mode}", "x"))
        for c in (1, 32):
            for who in ("gateway", "mock"):
                context.append((f"{who}_cpu_added_ms_c{c}_{mode}", f"{who} CPU added per request, C={c}, {mode}", "ms"))
    for key, title, unit in context:
        value = checks[key]["value"]
        if not math.isnan(value):
            print(f"  ({title})".ljust(55) + (f"{value:+8.2f} ms" if unit == "ms" else f"{value:8.2f}x"))


def orchestrate(args: argparse.Namespace) -> int:
    run = BenchmarkRun("llm_injection")
    state: dict[str, Any] = {}

    def measure(workdir: Path, children: Children) -> Rounds:
        mock, mock_base, mock_key = start_mock(
            children, program=(sys.executable, str(Path(__file__).resolve()), "--mock")
        )
        record = workdir / "probe-requests.jsonl"
        probe, probe_base, probe_key = start_mock(children, "probe-mock", extra=("--record", str(record)))
        upstream = {
            "transport": "stdio",
            "command": sys.executable,
            "args": [str(MANY_TOOLS_SERVER)],
            "env": {"MANY_TOOLS_COUNT": str(TOOL_COUNT)},
            "allow_on_all_virtual_keys": True,
        }
        gateway = start_mcpgw(
            children,
            workdir,
            mock_base,
            mock_key,
            upstreams={UPSTREAM: upstream},
            providers={PROBE_PROVIDER: {"kind": "openai", "base_url": probe_base, "api_key": probe_key}},
        )
        state["found"] = verify_injection(gateway, record)
        probe.stop()
        direct = Target("direct", mock_base + "/chat/completions", None, {"Authorization": f"Bearer {mock_key}"})
        off = Target("off", gateway.url, gateway.child, gateway.headers | {INJECT_HEADER: "off"})
        targets = {"direct": direct, "on": Target("on", gateway.url, gateway.child, gateway.headers), "off": off}
        bench = Bench(mock, targets, workdir, run.started + args.max_seconds, args.warmup)
        rounds: Rounds = []
        for index in range(args.rounds):
            print(f"round {index + 1}/{args.rounds}", flush=True)
            order = TARGETS if index % 2 == 0 else ("direct", "off", "on")
            done: dict[tuple[str, int, str], Run] = {}
            for mode in MODES:
                for c in args.concurrency:
                    for label in order:
                        done[mode, c, label] = bench.measure(label, mode, c, args.requests)
            rounds.append(done)
        return rounds

    rounds = run_with_children("mcpgw-llm-injection-", measure)
    rows = summarise(rounds, args.concurrency)
    checks = checks_of(rows)
    print_report(rows, checks, run.machine, state["found"])
    print(f"total runtime {run.elapsed():.0f} s")
    run.save(
        run.record(
            settings={
                "requests": args.requests,
                "warmup": args.warmup,
                "concurrency": args.concurrency,
                "rounds": args.rounds,
                "modes": list(MODES),
                "targets": list(TARGETS),
                "model": MODEL,
                "request_body": json.loads(request_body(False)),
                "tool_count": TOOL_COUNT,
                "upstream": {UPSTREAM: {"transport": "stdio", "server": MANY_TOOLS_SERVER.name}},
                "off_header": {INJECT_HEADER: "off"},
            },
            injection_check=state["found"],
            checks=checks,
            summary=rows,
            runs=[{"round": i, **r.as_dict()} for i, done in enumerate(rounds) for r in done.values()],
        )
    )
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add_load_options(parser)
    parser.add_argument("--rounds", type=int, default=3, help="times the interleaved sequence runs (default 3)")
    parser.add_argument("--max-seconds", type=float, default=1200, help="overall time budget (default 1200)")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.warmup < 0 or args.rounds < 1 or any(c < 1 for c in args.concurrency):
        parser.error("--requests, --rounds and --concurrency must be positive, --warmup not negative")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--mock"]:  # internal: the measured mock (see mock_main)
        mock_main(argv[1:])
        return 0
    return orchestrate(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
