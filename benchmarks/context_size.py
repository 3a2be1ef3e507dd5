"""What each tool mode costs in the model's context, and how many model round trips a 3-step task takes.

(a) **Context size.** The generated catalog of ``tests/toolcatalog.py`` (500 tools across 25 upstreams: varied
naming styles, multi-sentence descriptions, 2 to 7 documented parameters, enums and nested objects) is merged
with ``Catalog.build`` exactly as the gateway does, then serialised as the ``tools/list`` result a client gets
(every page together) in each mode: ``direct`` (as is), ``compact`` (``compact_tool``), ``search`` (only the
three search meta tools) and ``code`` (only the three code meta tools). Bytes are UTF-8 JSON; tokens are
approximated as characters / 4, plus ``tiktoken``'s ``cl100k_base`` count when tiktoken and its encoding are
already available offline. Target: search and code ≤ 2 % of direct.

(b) **Search quality and cost.** Top-1 / top-3 hit rate of ``SearchIndex`` on ``QUERIES`` (natural-language
requests with the tool a person would pick), index build time for the 500 tools (cold: tokeniser caches empty;
warm: another view over already-seen tools) and the time of one query.

(c) **Round trips.** A scripted agent performs one 3-step task whose steps depend on each other (find the issue
about failing logins, comment on it, post the comment's link to the team channel) against fake upstreams. Each
model turn may emit tool calls; the loop counts turns until the model answers without calling a tool. ``direct``
calls one tool per turn (each needs the previous result), ``code`` writes one ``run_code`` program that makes
the three calls, ``search`` first finds the tools with the real ``SearchMode`` (and reads their schemas) and
then calls them one per turn through ``call_tool``.

Usage::

    .venv/bin/python benchmarks/context_size.py

Results go to ``benchmarks/results/context_size-<UTC timestamp>.json`` and ``…/context_size-latest.json``.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # for tests.toolcatalog, shared with the search tests

from _results import git_info, utc_stamp, write_results  # noqa: E402

from mcp_gateway.catalog import Catalog, Contribution  # noqa: E402
from mcp_gateway.errors import UnknownTool  # noqa: E402
from mcp_gateway.toolmodes import search  # noqa: E402
from mcp_gateway.toolmodes.base import ModalTool, ToolMode  # noqa: E402
from mcp_gateway.toolmodes.compact import compact_tool  # noqa: E402
from tests.toolcatalog import QUERIES, SEPARATOR, generated_catalog  # noqa: E402

TARGET_RATIO = 0.02


def code_meta_tools() -> tuple[list[types.Tool], bool]:
    """The code-mode meta tools, or same-named placeholders of realistic length while code mode is not built."""
    try:
        from mcp_gateway.toolmodes.codemode import META_TOOLS  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        pass
    else:
        return list(META_TOOLS), True
    placeholder = [
        types.Tool(
            name="list_tools",
            description="List the tools you can call from run_code, one line each: module.function — summary. "
            "Filter by upstream or a word in the name.",
            input_schema={
                "type": "object",
                "properties": {"upstream": {"type": "string"}, "filter": {"type": "string"}},
            },
        ),
        types.Tool(
            name="get_tool_docs",
            description="Typed Python signatures and docs of the named tools (e.g. tools.tracker.create_issue), "
            "to read before writing code for run_code.",
            input_schema={
                "type": "object",
                "properties": {"names": {"type": "array", "items": {"type": "string"}}},
                "required": ["names"],
            },
        ),
        types.Tool(
            name="run_code",
            description="Run async Python in a sandbox: `import tools`, then `await tools.<upstream>.<tool>(...)` "
            "with keyword arguments. Chain several calls in one program; print() what you need, the last "
            "expression is returned. No network or files; limited time and memory.",
            input_schema={"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]},
        ),
    ]
    return placeholder, False


# --- (a) context size ---------------------------------------------------------------------------


def build_catalog() -> Catalog:
    contributions = [Contribution(u, u, tools=tools) for u, tools in generated_catalog().items()]
    return Catalog.build(contributions, SEPARATOR)


def tools_list_bytes(tools: Sequence[types.Tool]) -> str:
    """The `tools/list` result as JSON text (all pages together), as the SDK serialises it: compact, no nulls."""
    listed = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]
    return json.dumps({"tools": listed}, separators=(",", ":"), ensure_ascii=False)


def tiktoken_counter() -> Callable[[str], int] | None:
    try:
        import tiktoken  # type: ignore[import-not-found, unused-ignore]

        encoding = tiktoken.get_encoding("cl100k_base")  # fails offline unless cached
    except (ImportError, OSError, ValueError):  # not installed, or its encoding cannot be fetched offline
        return None
    return lambda text: len(encoding.encode(text))


def context_sizes(catalog: Catalog) -> dict[str, Any]:
    code_tools, real_code = code_meta_tools()
    modes = {
        "direct": list(catalog.tools),
        "compact": [compact_tool(t) for t in catalog.tools],
        "search": search.META_TOOLS,
        "code": code_tools,
    }
    count_tokens = tiktoken_counter()
    direct_bytes = len(tools_list_bytes(modes["direct"]).encode())
    rows = {}
    for mode, tools in modes.items():
        text = tools_list_bytes(tools)
        size = len(text.encode())
        rows[mode] = {
            "tools_listed": len(tools),
            "bytes": size,
            "tokens_approx": round(len(text) / 4),
            "tokens_tiktoken": count_tokens(text) if count_tokens else None,
            "ratio_to_direct": size / direct_bytes,
        }
    return {"modes": rows, "code_meta_tools": "mcp_gateway.toolmodes.codemode" if real_code else "placeholders"}


# --- (b) search quality and cost ------------------------------------------------------------------


def modal_tools(catalog: Catalog) -> list[ModalTool]:
    out = []
    for tool in catalog.tools:
        route = catalog.tool_routes[tool.name]
        out.append(ModalTool(tool.name, route.upstream, route.original, tool, ToolMode.SEARCH))
    return out


def search_quality(tools: list[ModalTool]) -> dict[str, Any]:
    cold, warm, queries = [], [], []
    for _ in range(5):
        search.stem.cache_clear()
        search._document_words.cache_clear()
        started = time.perf_counter()
        search.SearchIndex(tools)
        cold.append(time.perf_counter() - started)
    for _ in range(20):
        started = time.perf_counter()
        index = search.SearchIndex(tools)
        warm.append(time.perf_counter() - started)
    results = []
    for query, expected in QUERIES:
        started = time.perf_counter()
        found = [t.name for t in index.search(query, limit=3)]
        queries.append(time.perf_counter() - started)
        results.append({"query": query, "expected": expected, "top3": found, "rank": _rank(expected, found)})
    return {
        "queries": len(QUERIES),
        "top1": sum(r["rank"] == 1 for r in results) / len(results),
        "top3": sum(r["rank"] is not None for r in results) / len(results),
        "misses_top1": [r for r in results if r["rank"] != 1],
        "index_build_ms_cold": statistics.median(cold) * 1000,
        "index_build_ms_warm": statistics.median(warm) * 1000,
        "query_ms": statistics.median(queries) * 1000,
    }


def _rank(expected: str, found: list[str]) -> int | None:
    return found.index(expected) + 1 if expected in found else None


# --- (c) round trips --------------------------------------------------------------------------------


@dataclass
class Call:
    name: str
    arguments: dict[str, Any]


@dataclass
class Transcript:
    """What the model has seen: the task, then each turn's calls and their results."""

    results: list[tuple[Call, dict[str, Any]]] = field(default_factory=list)
    turns: int = 0
    tool_turns: int = 0
    upstream_calls: list[str] = field(default_factory=list)

    def result_of(self, tool: str, **match: Any) -> dict[str, Any] | None:
        for call, result in reversed(self.results):
            if call.name == tool and all(call.arguments.get(k) == v for k, v in match.items()):
                return result
        return None


class FakeUpstreams:
    """The three tools of the task, answering deterministically; records what reached an upstream."""

    def __init__(self, transcript: Transcript) -> None:
        self.transcript = transcript

    def call(self, name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        self.transcript.upstream_calls.append(name)
        if name == "tracker-search_issues":
            return {"issues": [{"key": "WEB-42", "title": "Login fails with SSO"}]}
        if name == "tracker-create_comment":
            return {"id": "c-7", "url": f"https://tracker.example/{arguments['issue_key']}#c-7"}
        if name == "chat-sendMessage":
            return {"ts": "1732590000.000100", "channel": arguments["channel"]}
        raise UnknownTool(name)


# The task, as the plan a model would follow: each step's arguments come from the previous results.
STEPS: list[tuple[str, str, Callable[[list[dict[str, Any]]], dict[str, Any]]]] = [
    ("find the issue about failing logins", "tracker-search_issues", lambda r: {"query": "login fails"}),
    (
        "add a comment to an issue",
        "tracker-create_comment",
        lambda r: {"issue_key": r[0]["issues"][0]["key"], "body": "Reproduced on staging."},
    ),
    (
        "send a message to the team chat channel",
        "chat-sendMessage",
        lambda r: {"channel": "#web", "text": f"Commented on {r[1]['url']}"},
    ),
]

CODE_PROGRAM = """
issue = (await tools.tracker.search_issues(query="login fails"))["issues"][0]
comment = await tools.tracker.create_comment(issue_key=issue["key"], body="Reproduced on staging.")
await tools.chat.sendMessage(channel="#web", text=f"Commented on {comment['url']}")
"""

Model = Callable[[Transcript], list[Call]]


async def run_agent(model: Model, execute: Callable[[Call], Any]) -> Transcript:
    """The agent loop: ask the model; run the calls it emits (in parallel within a turn); repeat until it answers."""
    transcript = Transcript()
    execute_in = execute(transcript)
    while True:
        transcript.turns += 1
        calls = model(transcript)
        if not calls:
            return transcript
        transcript.tool_turns += 1
        for call in calls:
            transcript.results.append((call, await execute_in(call)))


def direct_model(transcript: Transcript) -> list[Call]:
    """Calls each step as soon as the results it depends on are there."""
    done = [r for c, r in transcript.results]
    if len(done) == len(STEPS):
        return []
    _, tool, arguments = STEPS[len(done)]
    return [Call(tool, arguments(done))]


def search_model(transcript: Transcript) -> list[Call]:
    """Finds each step's tool with search_tools, reads the schemas, then calls them one step per turn."""
    found = [transcript.result_of(search.SEARCH_TOOLS, query=intent) for intent, _, _ in STEPS]
    if any(r is None for r in found):
        return [Call(search.SEARCH_TOOLS, {"query": intent, "limit": 3}) for intent, _, _ in STEPS]
    names = [r["structuredContent"]["tools"][0]["name"] for r in found if r is not None]
    if any(transcript.result_of(search.GET_TOOL_SCHEMA, name=n) is None for n in names):
        return [Call(search.GET_TOOL_SCHEMA, {"name": n}) for n in names]
    done = [r["structuredContent"] for c, r in transcript.results if c.name == search.CALL_TOOL]
    if len(done) == len(STEPS):
        return []
    _, _, arguments = STEPS[len(done)]
    return [Call(search.CALL_TOOL, {"name": names[len(done)], "arguments": arguments(done)})]


def code_model(transcript: Transcript) -> list[Call]:
    """Writes one program that chains the three calls."""
    return [] if transcript.results else [Call("run_code", {"code": CODE_PROGRAM})]


def direct_executor(transcript: Transcript) -> Callable[[Call], Any]:
    upstreams = FakeUpstreams(transcript)

    async def execute(call: Call) -> dict[str, Any]:
        return upstreams.call(call.name, call.arguments)

    return execute


class _Access:
    def __init__(self, tools: list[ModalTool], upstreams: FakeUpstreams) -> None:
        self._tools, self._upstreams = tools, upstreams

    def tools(self, *modes: ToolMode) -> list[ModalTool]:
        return self._tools

    async def call(self, name: str, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
        result = self._upstreams.call(name, arguments or {})
        return {"content": [{"type": "text", "text": json.dumps(result)}], "structuredContent": result}


def search_executor(tools: list[ModalTool]) -> Callable[[Transcript], Callable[[Call], Any]]:
    mode = search.SearchMode()

    def bind(transcript: Transcript) -> Callable[[Call], Any]:
        access = _Access(tools, FakeUpstreams(transcript))

        async def execute(call: Call) -> dict[str, Any]:
            return await mode.call(call.name, call.arguments, access)

        return execute

    return bind


def code_executor(transcript: Transcript) -> Callable[[Call], Any]:
    """Stands in for the sandbox: runs the program with `tools.<upstream>.<tool>` bound to the fake upstreams."""
    upstreams = FakeUpstreams(transcript)

    class Module:
        def __init__(self, upstream: str) -> None:
            self.upstream = upstream

        def __getattr__(self, tool: str) -> Callable[..., Any]:
            async def call(**arguments: Any) -> dict[str, Any]:
                return upstreams.call(f"{self.upstream}{SEPARATOR}{tool}", arguments)

            return call

    class Tools:
        def __getattr__(self, upstream: str) -> Module:
            return Module(upstream)

    async def execute(call: Call) -> dict[str, Any]:
        namespace: dict[str, Any] = {"tools": Tools()}
        body = "".join(f"    {line}\n" for line in call.arguments["code"].strip().splitlines())
        exec(f"async def __program():\n{body}", namespace)
        await namespace["__program"]()
        return {"content": [{"type": "text", "text": "ok"}]}

    return execute


async def round_trips(tools: list[ModalTool]) -> dict[str, Any]:
    runs = {
        "direct": await run_agent(direct_model, direct_executor),
        "search": await run_agent(search_model, search_executor(tools)),
        "code": await run_agent(code_model, code_executor),
    }
    expected = [tool for _, tool, _ in STEPS]
    for mode, transcript in runs.items():
        if transcript.upstream_calls != expected:
            raise AssertionError(f"{mode}: the task made {transcript.upstream_calls}, expected {expected}")
    return {
        mode: {"tool_round_trips": t.tool_turns, "model_turns": t.turns, "upstream_calls": len(t.upstream_calls)}
        for mode, t in runs.items()
    }


# --- report -------------------------------------------------------------------------------------------


def main() -> None:
    catalog = build_catalog()
    tools = modal_tools(catalog)
    sizes = context_sizes(catalog)
    quality = search_quality(tools)
    trips = anyio.run(round_trips, tools)

    print(f"tools/list for {len(catalog.tools)} tools across {len({t.upstream for t in tools})} upstreams")
    print(f"{'mode':<8} {'tools':>6} {'bytes':>9} {'~tokens':>8} {'tiktoken':>9} {'vs direct':>10}")
    for mode, row in sizes["modes"].items():
        tiktoken = row["tokens_tiktoken"] if row["tokens_tiktoken"] is not None else "-"
        print(
            f"{mode:<8} {row['tools_listed']:>6} {row['bytes']:>9,} {row['tokens_approx']:>8,} {tiktoken:>9} "
            f"{row['ratio_to_direct']:>9.2%}"
        )
    meets = all(sizes["modes"][m]["ratio_to_direct"] <= TARGET_RATIO for m in ("search", "code"))
    print(f"target search and code <= {TARGET_RATIO:.0%} of direct: {'met' if meets else 'NOT met'}")
    print(f"code meta tools: {sizes['code_meta_tools']}")
    print()
    print(
        f"search: top-1 {quality['top1']:.0%}, top-3 {quality['top3']:.0%} of {quality['queries']} queries; "
        f"index build {quality['index_build_ms_cold']:.1f} ms cold / {quality['index_build_ms_warm']:.1f} ms warm; "
        f"query {quality['query_ms']:.2f} ms"
    )
    for miss in quality["misses_top1"]:
        print(f"  not first: {miss['query']!r} → {miss['expected']} (got {', '.join(miss['top3'])})")
    print()
    print("3-step task (each step needs the previous result):")
    print(f"{'mode':<8} {'tool round trips':>17} {'model turns':>12} {'upstream calls':>15}")
    for mode, row in trips.items():
        print(f"{mode:<8} {row['tool_round_trips']:>17} {row['model_turns']:>12} {row['upstream_calls']:>15}")

    stamp = utc_stamp()
    payload = {
        "timestamp": stamp,
        "git": git_info(),
        "python": platform.python_version(),
        "catalog": {"tools": len(catalog.tools), "upstreams": len({t.upstream for t in tools})},
        "context_size": sizes,
        "target_ratio": TARGET_RATIO,
        "target_met": meets,
        "search": quality,
        "round_trips": trips,
    }
    print()
    write_results("context_size", payload, stamp)


if __name__ == "__main__":
    main()
