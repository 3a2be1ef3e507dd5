"""Code mode against a fake `ToolAccess`: the meta tools, tool calls from sandboxed code, limits and escapes."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import anyio
import mcp_types as types
import pytest

from mcp_gateway.config import CodeModeLimits
from mcp_gateway.errors import UnknownTool
from mcp_gateway.toolmodes.base import ModalTool, ToolMode
from mcp_gateway.toolmodes.codemode import META_TOOLS, CodeMode, _tool_value

pytestmark = pytest.mark.anyio

Impl = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def text(value: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": value}], "isError": False}


class FakeAccess:
    """A caller's view: tools of two upstreams in code mode (plus one hidden tool), recording every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.cancelled: list[str] = []
        self.notes: dict[int, str] = {1: "hello from note one"}
        self.visible: list[ModalTool] = []
        self.impls: dict[str, Impl] = {}
        note_schema = {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}
        note_output = {
            "type": "object",
            "properties": {"id": {"type": "integer"}, "text": {"type": "string"}},
            "required": ["id", "text"],
        }
        self.add("notes", "read_note", self.read_note, "Read a note by id.", note_schema, note_output)
        write_schema = {
            "type": "object",
            "properties": {"id": {"type": "integer"}, "text": {"type": "string"}},
            "required": ["id", "text"],
        }
        self.add("notes", "write_note", self.write_note, "Write a note. Overwrites.", write_schema, note_output)
        self.add("notes", "list_notes", self.list_notes, "List note ids as JSON.", {"type": "object"})
        text_schema = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
        self.add("textops", "shout", self.shout, "Upper-case text and add an exclamation mark.", text_schema)
        fail_schema = {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}
        self.add("textops", "fail", self.fail, "Always fails.", fail_schema)
        slow_schema = {"type": "object", "properties": {"seconds": {"type": "number"}}, "required": ["seconds"]}
        self.add("textops", "slow", self.slow, "Sleeps, then answers.", slow_schema)
        kebab_schema = {"type": "object", "properties": {"user-id": {"type": "string"}, "from": {"type": "integer"}}}
        self.add("textops", "echo-args", self.echo_args, "Echo the arguments.", kebab_schema)
        self.add("textops", "picture", self.picture, "An image and a caption.", {"type": "object"})
        # Exists upstream, but this caller's policy hides it: not in `tools()`, refused by `call()`.
        self.hidden = self.tool("admin", "drop_all", "Delete everything.", {"type": "object"}, None)

    @staticmethod
    def tool(
        upstream: str, name: str, description: str, schema: dict[str, Any], output: dict[str, Any] | None
    ) -> ModalTool:
        definition = types.Tool(name=name, description=description, input_schema=schema, output_schema=output)
        return ModalTool(f"{upstream}-{name}", upstream, name, definition, ToolMode.CODE)

    def add(
        self,
        upstream: str,
        name: str,
        impl: Impl,
        description: str,
        schema: dict[str, Any],
        output: dict[str, Any] | None = None,
    ) -> None:
        tool = self.tool(upstream, name, description, schema, output)
        self.visible.append(tool)
        self.impls[tool.name] = impl

    def tools(self, *modes: ToolMode) -> list[ModalTool]:
        return [t for t in self.visible if not modes or t.mode in modes]

    async def call(self, name: str, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
        if name not in self.impls:
            raise UnknownTool(name)
        self.calls.append((name, dict(arguments or {})))
        return await self.impls[name](dict(arguments or {}))

    async def read_note(self, args: dict[str, Any]) -> dict[str, Any]:
        note = {"id": args["id"], "text": self.notes[args["id"]]}
        return {**text(json.dumps(note)), "structuredContent": note}

    async def write_note(self, args: dict[str, Any]) -> dict[str, Any]:
        self.notes[args["id"]] = args["text"]
        return {**text("ok"), "structuredContent": {"id": args["id"], "text": args["text"]}}

    async def list_notes(self, args: dict[str, Any]) -> dict[str, Any]:
        return text(json.dumps(sorted(self.notes)))

    async def shout(self, args: dict[str, Any]) -> dict[str, Any]:
        return text(args["text"].upper() + "!")

    async def fail(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"content": [{"type": "text", "text": args["message"]}], "isError": True}

    async def slow(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            await anyio.sleep(args["seconds"])
        except anyio.get_cancelled_exc_class():
            self.cancelled.append("slow")
            raise
        return text(f"slept {args['seconds']}")

    async def echo_args(self, args: dict[str, Any]) -> dict[str, Any]:
        return {**text(json.dumps(args)), "structuredContent": args}

    async def picture(self, args: dict[str, Any]) -> dict[str, Any]:
        image = {"type": "image", "data": "aGVsbG8=", "mimeType": "image/png"}
        return {"content": [image, {"type": "text", "text": "a cat"}], "isError": False}


def result_text(result: dict[str, Any]) -> str:
    return "".join(block["text"] for block in result["content"])


@pytest.fixture
def access() -> FakeAccess:
    return FakeAccess()


@pytest.fixture
async def code_mode() -> AsyncIterator[CodeMode]:
    async with CodeMode(CodeModeLimits()) as mode:
        yield mode


async def run(mode: CodeMode, access: FakeAccess, code: str) -> dict[str, Any]:
    return await mode.call("run_code", {"code": code}, access)


async def ok(mode: CodeMode, access: FakeAccess, code: str) -> dict[str, Any]:
    result = await run(mode, access, code)
    assert result["isError"] is False, result_text(result)
    return result


async def error(mode: CodeMode, access: FakeAccess, code: str) -> str:
    result = await run(mode, access, code)
    assert result["isError"] is True, result_text(result)
    assert 'Traceback (most recent call last):\n  File "/' not in result_text(result)  # never a gateway traceback
    return result_text(result)


# --- meta tools ------------------------------------------------------------------------------------


def test_meta_tools_are_short_and_teach_the_calling_convention() -> None:
    assert [t.name for t in META_TOOLS] == ["list_tools", "get_tool_docs", "run_code"]
    run_code = META_TOOLS[2]
    assert run_code.description is not None
    for phrase in ["import tools", "await tools.<upstream>.<function>(", "asyncio.gather", "last expression"]:
        assert phrase in run_code.description
    assert all(len(t.description or "") < 600 for t in META_TOOLS)
    assert run_code.input_schema["required"] == ["code"]


async def test_list_tools(code_mode: CodeMode, access: FakeAccess) -> None:
    result = await code_mode.call("list_tools", {}, access)
    listing = result_text(result)
    assert "tools.notes (3 tools):" in listing
    assert "  notes.read_note — Read a note by id." in listing
    assert "  notes.write_note — Write a note." in listing  # first sentence only
    assert "textops.echo_args" in listing
    assert "admin" not in listing and "drop_all" not in listing
    assert {"name": "notes.read_note", "tool": "notes-read_note", "summary": "Read a note by id."} in result[
        "structuredContent"
    ]["tools"]

    only = result_text(await code_mode.call("list_tools", {"upstream": "textops"}, access))
    assert "textops.shout" in only and "notes." not in only

    missing = await code_mode.call("list_tools", {"upstream": "admin"}, access)
    assert missing["isError"] and "no upstream named 'admin'" in result_text(missing)


async def test_get_tool_docs(code_mode: CodeMode, access: FakeAccess) -> None:
    result = await code_mode.call(
        "get_tool_docs", {"names": ["notes.read_note", "textops-echo-args", "tools.textops.shout", "nope"]}, access
    )
    docs = result_text(result)
    assert not result["isError"]
    assert "class ReadNoteResult(TypedDict):\n    id: int\n    text: str\n" in docs
    assert 'async def read_note(*, id: int) -> ReadNoteResult:\n    """Read a note by id.' in docs
    assert "async def echo_args(*, user_id: str = ..., from_: int = ...) -> Any:" in docs
    assert "async def shout(*, text: str) -> Any:" in docs
    assert "# module tools.notes" in docs and "# module tools.textops" in docs
    assert "A tool error raises RuntimeError" in docs
    assert "# not available: nope" in docs
    assert "write_note" not in docs

    whole_module = result_text(await code_mode.call("get_tool_docs", {"names": ["notes"]}, access))
    assert all(f"async def {f}(" in whole_module for f in ["read_note", "write_note", "list_notes"])

    hidden = await code_mode.call("get_tool_docs", {"names": ["admin.drop_all", "admin-drop_all"]}, access)
    assert hidden["isError"] and "see list_tools" in result_text(hidden)
    bad = await code_mode.call("get_tool_docs", {"names": 3}, access)
    assert bad["isError"] and "`names`" in result_text(bad)


async def test_bad_meta_tool_input(code_mode: CodeMode, access: FakeAccess) -> None:
    assert (await code_mode.call("run_code", {}, access))["isError"]
    assert (await code_mode.call("run_code", {"code": 5}, access))["isError"]
    assert (await code_mode.call("list_tools", {"upstream": 1}, access))["isError"]
    assert (await code_mode.call("nope", {}, access))["isError"]


# --- run_code --------------------------------------------------------------------------------------

CHAIN = """
import tools
note = await tools.notes.read_note(id=1)
loud = await tools.textops.shout(text=note["text"])
saved = await tools.notes.write_note(id=2, text=loud)
print("copied note", note["id"], "to", saved["id"])
{"saved": saved, "length": len(loud)}
"""


async def test_run_code_chains_calls_across_upstreams(code_mode: CodeMode, access: FakeAccess) -> None:
    result = await ok(code_mode, access, CHAIN)
    output = result_text(result)
    assert output.startswith("copied note 1 to 2\n\nResult:\n")
    assert json.loads(output.split("Result:\n", 1)[1]) == {
        "saved": {"id": 2, "text": "HELLO FROM NOTE ONE!"},
        "length": 20,
    }
    assert result["structuredContent"] == {
        "result": {"saved": {"id": 2, "text": "HELLO FROM NOTE ONE!"}, "length": 20},
        "output": "copied note 1 to 2\n",
    }
    assert access.calls == [
        ("notes-read_note", {"id": 1}),
        ("textops-shout", {"text": "hello from note one"}),
        ("notes-write_note", {"id": 2, "text": "HELLO FROM NOTE ONE!"}),
    ]
    assert access.notes[2] == "HELLO FROM NOTE ONE!"


async def test_results_follow_the_return_convention(code_mode: CodeMode, access: FakeAccess) -> None:
    code = """
import tools
ids = await tools.notes.list_notes()            # JSON text -> list
shout = await tools.textops.shout(text="hi")    # plain text -> str
args = await tools.textops.echo_args(user_id="u", from_=3)   # keywords map back to JSON names
picture = await tools.textops.picture()         # mixed content -> list with a summary
[ids, shout, args, picture]
"""
    result = await ok(code_mode, access, code)
    assert result["structuredContent"]["result"] == [
        [1],
        "HI!",
        {"user-id": "u", "from": 3},
        [{"type": "image", "mimeType": "image/png", "size": 6}, "a cat"],
    ]


async def test_gather_runs_calls_in_parallel(code_mode: CodeMode, access: FakeAccess) -> None:
    code = """
import asyncio, tools
results = await asyncio.gather(*[tools.textops.slow(seconds=0.3) for _ in range(4)])
results
"""
    started = time.perf_counter()
    result = await ok(code_mode, access, code)
    assert time.perf_counter() - started < 1.0  # 4 x 0.3 s sequentially would be 1.2 s
    assert result["structuredContent"]["result"] == ["slept 0.3"] * 4


async def test_tool_error_is_catchable_and_names_the_tool(code_mode: CodeMode, access: FakeAccess) -> None:
    caught = """
import tools
try:
    await tools.textops.fail(message="disk full")
except RuntimeError as e:
    result = "caught: " + str(e)
result
"""
    assert result_text(await ok(code_mode, access, caught)) == "caught: textops.fail: disk full"

    message = await error(code_mode, access, 'import tools\nx = 1\nawait tools.textops.fail(message="disk full")\n')
    assert "line 3" in message
    assert "RuntimeError: textops.fail: disk full" in message


async def test_output_printed_before_an_error_is_kept(code_mode: CodeMode, access: FakeAccess) -> None:
    message = await error(code_mode, access, "print('step 1 done')\n1 / 0")
    assert "ZeroDivisionError" in message and "line 2" in message
    assert message.endswith("Printed before that:\nstep 1 done\n")


async def test_syntax_and_type_errors_point_at_the_code(code_mode: CodeMode, access: FakeAccess) -> None:
    syntax = await error(code_mode, access, "x = (1,\n")
    assert syntax.startswith("Syntax error (nothing ran):") and "main.py:2:1" in syntax

    typed = await error(code_mode, access, "import tools\nawait tools.notes.read_note(id='1')")
    assert typed.startswith("Type check failed (nothing ran):")
    assert "main.py:2:29: error[invalid-argument-type]" in typed

    forgot = await error(code_mode, access, "await tools.notes.read_note(id=1)")
    assert "Start the code with `import tools`." in forgot
    assert access.calls == []


async def test_no_output_and_non_json_values(code_mode: CodeMode, access: FakeAccess) -> None:
    assert "no output" in result_text(await ok(code_mode, access, "x = 1"))
    value = await ok(code_mode, access, "{(1, 2): {3}, 'b': b'raw', 't': (1, 2), 'nan': float('nan')}")
    assert value["structuredContent"]["result"] == {"[1, 2]": [3], "b": "raw", "t": [1, 2], "nan": "nan"}
    dataclass_value = "from dataclasses import dataclass\n@dataclass\nclass P:\n    x: int\nP(1)"
    assert (await ok(code_mode, access, dataclass_value))["structuredContent"]["result"] == {"x": 1}


async def test_arguments_must_be_json(code_mode: CodeMode, access: FakeAccess) -> None:
    message = await error(code_mode, access, "import tools\nawait tools.textops.shout(text={1, 2})")
    assert "TypeError" in message or "Type check failed" in message
    untyped = "from typing import Any\nimport tools\nx: Any = {1}\nawait tools.textops.echo_args(user_id=x)"
    message = await error(code_mode, access, untyped)
    assert "TypeError: textops.echo_args(user_id=…): a set cannot be sent to a tool" in message
    assert access.calls == []


async def test_hidden_tools_are_not_callable(code_mode: CodeMode, access: FakeAccess) -> None:
    typed = await error(code_mode, access, "import tools\nawait tools.admin.drop_all()")
    assert "Module `tools` has no member `admin`" in typed
    untyped = "from typing import Any\nimport tools\nt: Any = tools\nawait t.admin.drop_all()"  # no type check help
    assert "AttributeError: module 'tools' has no attribute 'admin'" in await error(code_mode, access, untyped)
    imported = await error(code_mode, access, "from tools.admin import drop_all\nawait drop_all()")
    assert "admin" in imported
    assert access.calls == []


async def test_tool_revoked_after_listing(code_mode: CodeMode, access: FakeAccess) -> None:
    # Listed when the run started, refused by policy when called (grants changed meanwhile).
    access.visible.append(access.hidden)
    message = await error(code_mode, access, "import tools\nawait tools.admin.drop_all()")
    assert "RuntimeError: admin.drop_all: this tool is not available (any more)" in message


async def test_state_does_not_leak_between_runs(code_mode: CodeMode, access: FakeAccess) -> None:
    await ok(code_mode, access, "secret = 'caller one'")
    leaked = await error(code_mode, access, "secret")
    assert "`secret` used when not defined" in leaked


async def test_concurrent_runs(code_mode: CodeMode, access: FakeAccess) -> None:
    results: list[dict[str, Any]] = []

    async def one(i: int) -> None:
        results.append(await ok(code_mode, access, f"import tools\nawait tools.textops.slow(seconds=0.2)\n{i}"))

    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(one, i)
    assert sorted(r["structuredContent"]["result"] for r in results) == list(range(6))


# --- sandbox escapes and limits --------------------------------------------------------------------

ESCAPES = {
    # The sandbox's `open` raises PermissionError without a mount; the checker already rejects it.
    "open('/etc/passwd').read()": "Name `open` used when not defined",
    "open('/tmp/mcpgw-escape', 'w').write('x')": "Name `open` used when not defined",
    "from pathlib import Path\nPath('/etc/passwd').read_text()": "PermissionError",
    "import os\nos.listdir('/')": "os.listdir",
    "import os\nos.environ['HOME']": "Error",
    "import socket": "socket",
    "import subprocess": "subprocess",
    "__import__('os')": "__import__",
    "().__class__.__bases__": "AttributeError",
    "'a' * 10**10": "code_mode.max_memory_mb",
    "x = []\nwhile True:\n    x.append('a' * 100_000)": "code_mode.max_memory_mb",
    "def f(n):\n    return f(n + 1)\nf(0)": "RecursionError",
}


@pytest.mark.parametrize("code", list(ESCAPES))
async def test_escape_attempts_fail_cleanly(code_mode: CodeMode, access: FakeAccess, code: str) -> None:
    message = await error(code_mode, access, code)
    assert ESCAPES[code] in message, message
    assert not await anyio.Path("/tmp/mcpgw-escape").exists()
    assert result_text(await ok(code_mode, access, "1 + 1")) == "2"


async def test_infinite_loop_stops_within_5_seconds_with_defaults(code_mode: CodeMode, access: FakeAccess) -> None:
    started = time.perf_counter()
    message = await error(code_mode, access, "while True:\n    pass")
    assert time.perf_counter() - started < 5
    assert message == "stopped after 3.0 s of CPU time (code_mode.cpu_seconds)"
    assert result_text(await ok(code_mode, access, "1 + 1")) == "2"


async def test_cpu_limit_is_configurable(access: FakeAccess) -> None:
    async with CodeMode(CodeModeLimits(cpu_seconds=0.3)) as mode:
        started = time.perf_counter()
        message = await error(mode, access, "print('spinning')\nwhile True:\n    pass")
        assert time.perf_counter() - started < 2
        assert message.startswith("stopped after 0.3 s of CPU time (code_mode.cpu_seconds)")
        assert message.endswith("Printed before that:\nspinning\n")


async def test_tool_call_limit(access: FakeAccess) -> None:
    async with CodeMode(CodeModeLimits(max_tool_calls=3)) as mode:
        code = """
import tools
for i in range(10):
    try:
        await tools.textops.shout(text='x')
    except Exception:
        pass
"""
        message = await error(mode, access, code)
        assert (
            message == "stopped at tool call 4 (textops.shout): at most 3 tool calls per run (code_mode.max_tool_calls)"
        )
        assert len(access.calls) == 3
        gathered = "import asyncio, tools\nawait asyncio.gather(*[tools.textops.shout(text='x') for _ in range(3)])"
        assert (await ok(mode, access, gathered))["structuredContent"]["result"] == ["X!"] * 3


async def test_huge_output_is_truncated(code_mode: CodeMode, access: FakeAccess) -> None:
    result = await ok(code_mode, access, "for i in range(100_000):\n    print('line', i)\n'done'")
    output = result_text(result)
    assert output.startswith("line 0\nline 1\n")
    assert output.endswith("\n… output truncated at 20000 characters (code_mode.max_output_chars)")
    assert len(output) < 20_100
    assert "structuredContent" not in result

    big_value = result_text(await ok(code_mode, access, "'x' * 10_000_000"))
    assert len(big_value) < 20_100 and big_value.endswith("(code_mode.max_output_chars)")
    big_list = result_text(await ok(code_mode, access, "list(range(1_000_000))"))
    assert len(big_list) < 20_100 and big_list.startswith("[0, 1, 2")


async def test_wall_time_caps_slow_tool_calls(access: FakeAccess) -> None:
    async with CodeMode(CodeModeLimits(wall_seconds=0.5)) as mode:
        started = time.perf_counter()
        message = await error(mode, access, "import tools\nprint('calling')\nawait tools.textops.slow(seconds=30)")
        assert time.perf_counter() - started < 2
        assert message.startswith("stopped after 0.5 s of wall time (code_mode.wall_seconds)")
        assert message.endswith("Printed before that:\ncalling\n")
        with anyio.fail_after(5):
            while not access.cancelled:  # the abandoned tool call does not outlive the run
                await anyio.sleep(0.01)
        assert result_text(await ok(mode, access, "1 + 1")) == "2"


async def test_the_gateway_keeps_serving_after_a_burst_of_failures(code_mode: CodeMode, access: FakeAccess) -> None:
    for code in ["'a' * 10**10", "1/0", "def f(): f()\nf()", "import tools\nawait tools.textops.fail(message='x')"]:
        await error(code_mode, access, code)
    assert (await ok(code_mode, access, CHAIN))["structuredContent"]["result"]["length"] == 20


async def test_deeply_nested_values(code_mode: CodeMode, access: FakeAccess) -> None:
    nested = "x = []\nfor i in range(10_000):\n    x = [x]\n"
    result = await ok(code_mode, access, nested + "x")
    assert "…" in result_text(result)
    untyped = "from typing import Any\nimport tools\ny: Any = x\nawait tools.textops.echo_args(user_id=y)"
    message = await error(code_mode, access, nested + untyped)
    assert "ValueError: textops.echo_args(user_id=…): nested deeper than 64 levels" in message
    assert access.calls == []


async def test_layouts_are_cached_per_set_of_tools(code_mode: CodeMode, access: FakeAccess) -> None:
    first = code_mode.layout_for(access.tools(ToolMode.CODE))
    assert code_mode.layout_for(access.tools(ToolMode.CODE)) is first
    access.visible[0] = FakeAccess.tool("notes", "read_note", "Changed.", {"type": "object"}, None)
    changed = code_mode.layout_for(access.tools(ToolMode.CODE))
    assert changed is not first and "Changed." in changed.modules["notes"]["read_note"].stub


async def test_run_code_needs_start(access: FakeAccess) -> None:
    mode = CodeMode(CodeModeLimits())
    with pytest.raises(RuntimeError, match="start"):
        await run(mode, access, "1")


# --- conversion of tool results --------------------------------------------------------------------


def test_tool_value_conversion() -> None:
    assert _tool_value("m.f", {"content": [], "structuredContent": {"a": 1}}) == {"a": 1}
    assert _tool_value("m.f", text('{"a": [1]}')) == {"a": [1]}
    assert _tool_value("m.f", text("42")) == "42"  # only objects and arrays are parsed
    assert _tool_value("m.f", text("not json")) == "not json"
    assert _tool_value("m.f", {"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}) == "a\nb"
    assert _tool_value("m.f", {"content": []}) is None
    resource = {"type": "resource", "resource": {"uri": "file:///a", "mimeType": "text/plain", "text": "hi"}}
    assert _tool_value("m.f", {"content": [resource]}) == [
        {"type": "resource", "uri": "file:///a", "mimeType": "text/plain", "text": "hi"}
    ]
    with pytest.raises(RuntimeError, match=r"^m\.f: boom$"):
        _tool_value("m.f", {"content": [{"type": "text", "text": "boom"}], "isError": True})
    with pytest.raises(RuntimeError, match="reported an error"):
        _tool_value("m.f", {"content": [], "isError": True})
