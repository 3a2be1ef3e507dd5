"""`code` mode: an upstream's tools are reached from Python the model writes, run in a sandbox.

Three meta tools replace the tool list: `list_tools` (names and one-line summaries),
`get_tool_docs` (typed stubs, see `stubs.py`) and `run_code`, which runs the model's code in a
pydantic-monty worker process. The code sees exactly one thing from the gateway: a `tools`
package holding an `async def` per tool in `ToolAccess.tools(ToolMode.CODE)`, each of which
calls `ToolAccess.call` — so policy and audit apply to every inner call, and a hidden tool is
not even a name the code could try.

Every run is bounded: CPU time and memory inside the sandbox (monty limits), tool calls and
wall time on the gateway side (time spent in tool calls is invisible to the sandbox's clock),
output size when the result is assembled. Whatever goes wrong comes back as an `isError`
result the model can act on; the gateway never sees a sandbox exception.

Why one module of this length: the run lifecycle (worker pool, limits on both sides of the
sandbox, result assembly) is one concept whose parts share the per-run state (`_Run`); stubs and
the catalog listing are already elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

import anyio
import mcp_types as types
import pydantic_monty as monty

from mcp_gateway.config import CodeModeLimits
from mcp_gateway.errors import GatewayError, UnknownTool
from mcp_gateway.toolmodes.base import ModalTool, ToolAccess, ToolMode
from mcp_gateway.toolmodes.compact import first_sentence
from mcp_gateway.toolmodes.stubs import PACKAGE, RETURN_CONVENTION, StubbedTool, ToolLayout, build_layout

logger = logging.getLogger(__name__)

_LayoutKey = tuple[tuple[str, str, str, int], ...]

LIST_TOOLS = "list_tools"
GET_TOOL_DOCS = "get_tool_docs"
RUN_CODE = "run_code"

META_TOOLS: list[types.Tool] = [
    types.Tool(
        name=LIST_TOOLS,
        description="List the tools run_code can call, as `upstream.function` with a one-line summary each.",
        input_schema={
            "type": "object",
            "properties": {"upstream": {"type": "string", "description": "Only this upstream's tools."}},
        },
        annotations=types.ToolAnnotations(read_only_hint=True),
    ),
    types.Tool(
        name=GET_TOOL_DOCS,
        description="Typed Python signatures and docs of tools, by the names list_tools shows. "
        "Read them before using a tool in run_code.",
        input_schema={
            "type": "object",
            "properties": {"names": {"type": "array", "items": {"type": "string"}, "minItems": 1}},
            "required": ["names"],
        },
        annotations=types.ToolAnnotations(read_only_hint=True),
    ),
    types.Tool(
        name=RUN_CODE,
        description=(
            "Run Python that calls tools: `import tools`, then `await tools.<upstream>.<function>(arg=...)` "
            "(keyword arguments, as in get_tool_docs; top-level await works). "
            "Use `asyncio.gather(...)` for parallel calls. Printed output and the value of the last expression "
            "are returned: end with the data you need, as dicts/lists. Code is type-checked first. "
            "Sandboxed: no files, network or installed packages; json, re, datetime, math, asyncio and more."
        ),
        input_schema={"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]},
    ),
]

_SUMMARY_CHARS = 160
_LAYOUT_CACHE_SIZE = 16
_MAX_ARGUMENT_DEPTH = 64
# A gather of N calls costs up to 2N suspensions (call + future), each `import` one more: this is a
# backstop only, the exact `max_tool_calls` is counted on the gateway side.
_SUSPENSIONS_PER_CALL = 2
_SUSPENSION_SLACK = 100
# Seconds past `cpu_seconds` after which the pool kills a worker whose turn will not end (the
# sandbox's own limits normally fire first; type checking large stubs also happens in a turn).
_REQUEST_TIMEOUT_SLACK = 10.0
# After the pool is closed its native threads need a moment before the interpreter may exit,
# otherwise the process can abort (SIGABRT) at exit; 10 ms sufficed in 100 trials.
_CLOSE_SETTLE_SECONDS = 0.1


class CodeMode:
    """Answers the three meta tools for one gateway; owns the pool of sandbox worker processes.

    Use as `async with CodeMode(limits) as code_mode:` or call `start()` and `close()`.
    """

    names = frozenset({LIST_TOOLS, GET_TOOL_DOCS, RUN_CODE})

    def __init__(self, limits: CodeModeLimits, *, max_sandboxes: int | None = None) -> None:
        """`max_sandboxes`: concurrent `run_code` calls (each holds one worker process, idle while it
        waits for tool calls); default twice the CPU count, at least 4."""
        self.limits = limits
        self._max_sandboxes = max_sandboxes or max(4, 2 * (os.cpu_count() or 1))
        self._pool: monty.AsyncMonty | None = None
        self._layouts: OrderedDict[_LayoutKey, ToolLayout] = OrderedDict()

    async def start(self) -> None:
        """Spawn the worker pool (one warm worker; more on demand)."""
        if self._pool is not None:
            return
        pool = monty.AsyncMonty(
            min_processes=1,
            max_processes=self._max_sandboxes,
            request_timeout=self.limits.cpu_seconds + _REQUEST_TIMEOUT_SLACK,
        )
        await pool.__aenter__()
        self._pool = pool

    async def close(self) -> None:
        """Stop the worker pool. Idempotent."""
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await pool.__aexit__(None, None, None)
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.sleep(_CLOSE_SETTLE_SECONDS)

    async def __aenter__(self) -> CodeMode:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def call(self, name: str, arguments: Mapping[str, Any] | None, access: ToolAccess) -> dict[str, Any]:
        """Answer one meta tool call with a wire `CallToolResult` dict; bad input is a tool error."""
        arguments = arguments or {}
        layout = self.layout_for(access.tools(ToolMode.CODE))
        if name == LIST_TOOLS:
            return _list_tools(arguments, layout)
        if name == GET_TOOL_DOCS:
            return _get_tool_docs(arguments, layout)
        if name == RUN_CODE:
            code = arguments.get("code")
            if not isinstance(code, str) or not code.strip():
                return _error("run_code needs `code`, a string of Python")
            return await self.run(code, layout, access)
        return _error(f"{name!r} is not a code-mode meta tool")

    def layout_for(self, tools: Sequence[ModalTool]) -> ToolLayout:
        """The `tools` package for exactly these tools, from the LRU when another call already built it.

        Stubs for 500 tools take ~25 ms to generate. The key holds each definition's identity: the
        catalog keeps definitions between requests (a changed tool is a new object), and a cached
        layout references its definitions, so an `id` cannot be reused while its entry lives.
        """
        key = tuple((t.name, t.upstream, t.original, id(t.tool)) for t in tools)
        layout = self._layouts.get(key)
        if layout is not None:
            self._layouts.move_to_end(key)
            return layout
        layout = self._layouts[key] = build_layout(tools)
        while len(self._layouts) > _LAYOUT_CACHE_SIZE:
            self._layouts.popitem(last=False)
        return layout

    async def run(self, code: str, layout: ToolLayout, access: ToolAccess) -> dict[str, Any]:
        """Run `code` with `tools` built from `layout`; a `CallToolResult` dict whatever happens."""
        if self._pool is None:
            raise RuntimeError("CodeMode.start() was not called")
        limits = self.limits
        run = _Run(access, limits)
        output = _Output(limits.max_output_chars)
        with anyio.CancelScope(deadline=anyio.current_time() + limits.wall_seconds) as scope:
            run.scope = scope
            try:
                async with self._pool.checkout(
                    type_check=True,
                    type_check_format="concise",
                    limits={
                        "max_feed_duration_secs": limits.cpu_seconds,
                        "max_memory": limits.max_memory_mb * 1024 * 1024,
                        "max_suspensions": _SUSPENSIONS_PER_CALL * limits.max_tool_calls + _SUSPENSION_SLACK,
                    },
                    external_modules={PACKAGE: run.package(layout)},
                ) as session:
                    run.started = True
                    value = await session.feed_run(code, print_callback=output.write)
            except monty.MontyError as exc:
                return _error(_describe(exc, limits, run), output.text)
            except Exception:
                # The boundary to the sandbox library: whatever it raises, the caller gets an answer.
                logger.exception("run_code failed")
                return _error("internal error while running the code; the gateway logged it", output.text)
            finally:
                run.finish()
        if run.stopped is not None:
            return _error(run.stopped, output.text)
        if scope.cancelled_caught:
            if not run.started:
                return _error(
                    f"no sandbox became free within {_seconds(limits.wall_seconds)} (code_mode.wall_seconds); "
                    "the gateway is busy, try again"
                )
            return _error(
                f"stopped after {_seconds(limits.wall_seconds)} of wall time (code_mode.wall_seconds)", output.text
            )
        return _success(value, output, limits.max_output_chars)


@dataclass
class _Run:
    """One `run_code` call: counts tool calls, tracks them, and can stop the run from a tool call."""

    access: ToolAccess
    limits: CodeModeLimits
    scope: anyio.CancelScope | None = None
    started: bool = False
    stopped: str | None = None
    calls: int = 0
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def package(self, layout: ToolLayout) -> monty.ExternalModule:
        modules = {
            module: monty.ExternalModule(
                {func: self._host_function(stubbed) for func, stubbed in functions.items()},
                stubs=layout.stubs[f"{PACKAGE}.{module}"],
            )
            for module, functions in layout.modules.items()
        }
        return monty.ExternalModule(modules, stubs=layout.stubs[PACKAGE])

    def _host_function(self, stubbed: StubbedTool) -> Callable[..., Awaitable[Any]]:
        async def call_tool(*args: Any, **kwargs: Any) -> Any:
            if args:
                raise TypeError(f"{stubbed.path}() takes keyword arguments only")
            arguments = {
                stubbed.params.get(k, k): _json_argument(v, f"{stubbed.path}({k}=…)") for k, v in kwargs.items()
            }
            return await self.call(stubbed, arguments)

        call_tool.__name__ = stubbed.func
        return call_tool

    async def call(self, stubbed: StubbedTool, arguments: dict[str, Any]) -> Any:
        if self.stopped is not None:
            raise RuntimeError(self.stopped)
        if self.calls >= self.limits.max_tool_calls:
            self.stop(
                f"stopped at tool call {self.calls + 1} ({stubbed.path}): at most "
                f"{self.limits.max_tool_calls} tool calls per run (code_mode.max_tool_calls)"
            )
            raise RuntimeError("tool call limit reached")
        self.calls += 1
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        try:
            result = await self.access.call(stubbed.tool.name, arguments)
        except UnknownTool:
            raise RuntimeError(f"{stubbed.path}: this tool is not available (any more)") from None
        except GatewayError as exc:
            raise RuntimeError(f"{stubbed.path}: {exc.message}") from None
        except Exception:
            # The boundary to the sandbox: no gateway exception (or its details) reaches model code.
            logger.exception("tool call %s from run_code failed", stubbed.tool.name)
            raise RuntimeError(f"{stubbed.path}: internal gateway error") from None
        finally:
            if task is not None:
                self.tasks.discard(task)
        return _tool_value(stubbed.path, result)

    def stop(self, reason: str) -> None:
        """End the run now with `reason` as its error (cannot be caught by the model's code)."""
        self.stopped = reason
        if self.scope is not None:
            self.scope.cancel()

    def finish(self) -> None:
        # The sandbox library runs each host call as its own task and does not cancel them when the
        # run is abandoned (wall time, limit): without this a slow tool call would outlive its run.
        for task in self.tasks:
            task.cancel()
        self.tasks.clear()


class _Output:
    """`print` output, kept up to the output limit; the rest is only counted."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[str] = []
        self.size = 0
        self.dropped = 0

    def write(self, stream: Literal["stdout", "stderr"], text: str) -> None:
        room = self.limit - self.size
        if room > 0:
            self.parts.append(text[:room])
            self.size += min(len(text), room)
        self.dropped += max(0, len(text) - max(room, 0))

    @property
    def text(self) -> str:
        return "".join(self.parts)


# --- list_tools / get_tool_docs ----------------------------------------------------------------


def _list_tools(arguments: Mapping[str, Any], layout: ToolLayout) -> dict[str, Any]:
    upstream = arguments.get("upstream")
    if upstream is not None and not isinstance(upstream, str):
        return _error("`upstream` must be a string")
    modules = layout.modules
    if upstream:
        chosen = {
            m: fs for m, fs in modules.items() if m == upstream or any(s.tool.upstream == upstream for s in fs.values())
        }
        if not chosen:
            known = ", ".join(modules) or "none"
            return _error(f"no upstream named {upstream!r} is available; upstreams: {known}")
        modules = chosen
    if not modules:
        return _result("No tools are available to you in code mode.", {"tools": []})
    lines: list[str] = []
    listed: list[dict[str, str]] = []
    for module, functions in modules.items():
        lines.append(f"{PACKAGE}.{module} ({len(functions)} tools):")
        for stubbed in functions.values():
            summary = _summary(stubbed)
            lines.append(f"  {stubbed.path}" + (f" — {summary}" if summary else ""))
            listed.append({"name": stubbed.path, "tool": stubbed.tool.name, "summary": summary})
    lines.append("Next: get_tool_docs(names=[...]) for signatures, then run_code.")
    return _result("\n".join(lines), {"tools": listed})


def _summary(stubbed: StubbedTool) -> str:
    text = first_sentence(stubbed.tool.tool.description or stubbed.tool.tool.title) or ""
    return text if len(text) <= _SUMMARY_CHARS else text[: _SUMMARY_CHARS - 1] + "…"


def _get_tool_docs(arguments: Mapping[str, Any], layout: ToolLayout) -> dict[str, Any]:
    names = arguments.get("names")
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        return _error("get_tool_docs needs `names`, a list of tool names from list_tools (e.g. 'github.create_issue')")
    found: dict[str, StubbedTool] = {}
    unknown: list[str] = []
    for name in dict.fromkeys(names):
        module = layout.modules.get(name.removeprefix(PACKAGE + "."))
        stubbed = layout.find(name)
        if stubbed is not None:
            found[stubbed.path] = stubbed
        elif module is not None:
            found.update({s.path: s for s in module.values()})
        else:
            unknown.append(name)
    if not found:
        return _error(f"no tool named {', '.join(map(repr, unknown))} is available; see list_tools")
    sections: list[str] = [f"# {RETURN_CONVENTION}"]
    current = None
    for stubbed in sorted(found.values(), key=lambda s: (s.module, s.func)):
        if stubbed.module != current:
            current = stubbed.module
            sections.append(f"# module {PACKAGE}.{current}")
        sections.append(stubbed.stub)
    if unknown:
        sections.append(f"# not available: {', '.join(unknown)} (see list_tools)")
    return _result("\n\n".join(sections).rstrip() + "\n", None)


# --- values crossing the sandbox boundary --------------------------------------------------------


def _json_argument(value: Any, where: str, depth: int = 0) -> Any:
    """A tool argument from the sandbox as JSON data; anything else is a TypeError in the sandbox."""
    if depth > _MAX_ARGUMENT_DEPTH:
        raise ValueError(f"{where}: nested deeper than {_MAX_ARGUMENT_DEPTH} levels")
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple):
        return [_json_argument(v, where, depth + 1) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"{where}: dict keys must be strings")
        return {k: _json_argument(v, where, depth + 1) for k, v in value.items()}
    raise TypeError(f"{where}: a {type(value).__name__} cannot be sent to a tool; use dicts, lists, str and numbers")


def _tool_value(path: str, result: Mapping[str, Any]) -> Any:
    """A tool's `CallToolResult` as the sandbox sees it (see the return convention in `stubs.py`)."""
    blocks = [b for b in result.get("content") or [] if isinstance(b, dict)]
    texts = [str(b.get("text", "")) for b in blocks if b.get("type") == "text"]
    if result.get("isError"):
        raise RuntimeError(f"{path}: {' '.join(texts).strip() or 'the tool reported an error'}")
    structured = result.get("structuredContent")
    if structured is not None:
        return structured
    if not blocks:
        return None
    if len(texts) == len(blocks):
        if len(texts) == 1:
            try:
                parsed = json.loads(texts[0])
            except ValueError:
                return texts[0]
            return parsed if isinstance(parsed, dict | list) else texts[0]
        return "\n".join(texts)
    return [str(b.get("text", "")) if b.get("type") == "text" else _block_summary(b) for b in blocks]


def _block_summary(block: Mapping[str, Any]) -> dict[str, Any]:
    """Non-text content as a small dict: the sandbox gets what the block is, not its bytes."""
    summary: dict[str, Any] = {"type": block.get("type")}
    if "mimeType" in block:
        summary["mimeType"] = block["mimeType"]
    if isinstance(block.get("data"), str):
        summary["size"] = len(block["data"]) * 3 // 4  # base64
    for key in ("uri", "name"):
        if key in block:
            summary[key] = block[key]
    resource = block.get("resource")
    if isinstance(resource, dict):
        summary.update({k: resource[k] for k in ("uri", "mimeType", "text") if k in resource})
    return summary


class _Budget:
    """Characters left for rendering the result; conversion stops once they are used up."""

    def __init__(self, chars: int) -> None:
        self.left = chars
        self.exhausted = False

    def take(self, n: int) -> bool:
        self.left -= n
        if self.left < 0:
            self.exhausted = True
        return not self.exhausted


def _plain(value: Any, budget: _Budget, depth: int = 0) -> Any:
    """The sandbox's result as JSON data, within `budget`; exotic values become their repr."""
    if not budget.take(1) or depth > _MAX_ARGUMENT_DEPTH:
        budget.exhausted = True
        return "…"
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else repr(value)
    if isinstance(value, str):
        budget.take(len(value))
        return value[: max(budget.left + len(value), 0)]
    if isinstance(value, bytes):
        return _plain(value.decode("utf-8", "replace"), budget, depth)
    if isinstance(value, dict):
        result: dict[str, Any] = {}
        for k, v in value.items():
            if budget.exhausted:
                break
            result[k if isinstance(k, str) else json.dumps(_plain(k, budget, depth + 1))] = _plain(v, budget, depth + 1)
        return result
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        converted: list[Any] = []
        for item in items:
            if budget.exhausted:
                break
            converted.append(_plain(item, budget, depth + 1))
        return converted
    if isinstance(value, monty.MontyClassProxy):
        return _plain(value.attributes, budget, depth)
    text = repr(value)
    budget.take(len(text))
    return text


# --- results -------------------------------------------------------------------------------------


def _success(value: Any, output: _Output, limit: int) -> dict[str, Any]:
    printed = output.text
    budget = _Budget(max(limit - len(printed), 0))
    plain = _plain(value, budget)
    rendered = "" if value is None else plain if isinstance(plain, str) else json.dumps(plain, ensure_ascii=False)
    if printed and rendered:
        text = f"{printed.rstrip(chr(10))}\n\nResult:\n{rendered}"
    else:
        text = printed or rendered or "(no output: print() something or end with an expression)"
    truncated = output.dropped > 0 or budget.exhausted or len(text) > limit
    if truncated:
        text = text[:limit] + f"\n… output truncated at {limit} characters (code_mode.max_output_chars)"
        return _result(text, None)
    return _result(text, {"result": plain, "output": printed})


def _describe(exc: monty.MontyError, limits: CodeModeLimits, run: _Run) -> str:
    """What went wrong, for the model: which limit, or the diagnostics/traceback with line numbers."""
    if run.stopped is not None:
        return run.stopped
    if isinstance(exc, monty.MontyTypingError):
        diagnostics = exc.display().strip()
        if "invalid-syntax" in diagnostics:
            return f"Syntax error (nothing ran):\n{diagnostics}"
        hint = ""
        if "`tools` used when not defined" in diagnostics:
            hint = "\nStart the code with `import tools`."
        elif "Module `tools" in diagnostics:
            hint = "\nOnly the tools list_tools shows exist; check names with get_tool_docs."
        return f"Type check failed (nothing ran):\n{diagnostics}{hint}"
    if isinstance(exc, monty.MontySyntaxError):
        return f"Syntax error (nothing ran):\n{exc.display()}"
    if isinstance(exc, monty.MontyRuntimeError):
        inner = exc.exception()
        message = str(inner)
        if isinstance(inner, TimeoutError) and message.startswith("feed time limit exceeded"):
            return f"stopped after {_seconds(limits.cpu_seconds)} of CPU time (code_mode.cpu_seconds)"
        if isinstance(inner, MemoryError) and message.startswith("memory limit exceeded"):
            return f"stopped: the code needed more than {limits.max_memory_mb} MB of memory (code_mode.max_memory_mb)"
        if isinstance(inner, RuntimeError) and message.startswith("suspension limit"):
            return f"stopped: too many tool calls and awaits (code_mode.max_tool_calls is {limits.max_tool_calls})"
        return exc.display()
    if isinstance(exc, monty.MontyCrashedError):
        if exc.timed_out:
            limit = _seconds(limits.cpu_seconds)
            return f"stopped: the sandbox did not finish a step within {limit} (code_mode.cpu_seconds)"
        return f"the sandbox process crashed ({exc}); simplify the code and try again"
    return f"{type(exc).__name__}: {exc}"


def _seconds(value: float) -> str:
    return f"{float(value)} s"


def _result(text: str, structured: dict[str, Any] | None) -> dict[str, Any]:
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": False, "resultType": "complete"}
    if structured is not None:
        result["structuredContent"] = structured
    return result


def _error(message: str, printed: str = "") -> dict[str, Any]:
    text = f"{message}\n\nPrinted before that:\n{printed}" if printed else message
    return {"content": [{"type": "text", "text": text}], "isError": True, "resultType": "complete"}
