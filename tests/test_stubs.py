"""Stubs generated from JSON Schema: their text, their names, and whether monty's checker enforces them."""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

import anyio
import mcp_types as types
import pydantic_monty as monty
import pytest

from mcp_gateway.toolmodes.base import ModalTool, ToolMode
from mcp_gateway.toolmodes.stubs import ToolLayout, build_layout, module_stubs, python_identifier, tool_stub
from tests.toolcatalog import generated_catalog

pytestmark = pytest.mark.anyio


def modal(
    upstream: str,
    name: str,
    schema: dict[str, Any] | None = None,
    *,
    output: dict[str, Any] | None = None,
    description: str | None = None,
) -> ModalTool:
    tool = types.Tool(
        name=name,
        description=description,
        input_schema=schema or {"type": "object", "properties": {}},
        output_schema=output,
    )
    return ModalTool(name=f"{upstream}-{name}", upstream=upstream, original=name, tool=tool, mode=ToolMode.CODE)


ISSUE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "description": "Short summary."},
        "body": {"type": ["string", "null"]},
        "labels": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "color": {"type": "string"}},
                "required": ["name"],
            },
        },
        "state": {"enum": ["open", "closed"], "default": "open"},
        "priority": {"type": "integer", "minimum": 1},
        "weight": {"type": "number"},
        "draft": {"type": "boolean", "default": False},
        "assignee": {"$ref": "#/$defs/User"},
        "reviewer": {"anyOf": [{"$ref": "#/$defs/User"}, {"type": "null"}], "default": None},
        "milestone": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        "extra": {"type": "object"},
        "from": {"type": "string", "description": "Where it came from."},
        "tree": {"$ref": "#/definitions/Node"},
    },
    "required": ["title"],
    "$defs": {
        "User": {
            "type": "object",
            "properties": {"login": {"type": "string", "description": "Handle."}, "id": {"type": "integer"}},
            "required": ["login"],
        }
    },
    "definitions": {
        "Node": {
            "type": "object",
            "properties": {
                "label": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/definitions/Node"}},
            },
            "required": ["label"],
        }
    },
}

ISSUE_OUTPUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "number": {"type": "integer"},
        "url": {"type": "string"},
        "labels": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["number", "url"],
}


def test_python_identifier() -> None:
    assert python_identifier("create_issue") == "create_issue"
    assert python_identifier("create-issue") == "create_issue"
    assert python_identifier("get.user/repos") == "get_user_repos"
    assert python_identifier("class") == "class_"
    assert python_identifier("None") == "None_"
    assert python_identifier("2fa") == "x2fa"
    assert python_identifier("__init__") == "init__"
    assert python_identifier("") == "unnamed"
    assert python_identifier("日本") == "unnamed"
    assert python_identifier("createIssue") == "createIssue"
    for name in ["a b", "if", "123", "-x-", "print", "match"]:
        ident = python_identifier(name)
        assert ident.isidentifier() and not ident.startswith("_")
        assert python_identifier(name) == ident


def test_stub_covers_the_schema_vocabulary() -> None:
    stub = tool_stub(
        modal("github", "create_issue", ISSUE_SCHEMA, output=ISSUE_OUTPUT, description="Open an issue.\n\nMore.")
    )
    assert (
        "async def create_issue(\n"
        "    *,\n"
        "    title: str,\n"
        "    body: str | None = ...,\n"
        "    labels: list[CreateIssueLabelsItem] = ...,\n"
        "    state: Literal['open', 'closed'] = 'open',\n"
        "    priority: int = ...,\n"
        "    weight: float = ...,\n"
        "    draft: bool = False,\n"
        "    assignee: CreateIssueUser = ...,\n"
        "    reviewer: CreateIssueUser | None = None,\n"
        "    milestone: int | str = ...,\n"
        "    metadata: dict[str, str] = ...,\n"
        "    extra: dict[str, Any] = ...,\n"
        "    from_: str = ...,\n"
        "    tree: CreateIssueNode = ...,\n"
        ") -> CreateIssueResult:\n"
    ) in stub
    assert "class CreateIssueLabelsItem(TypedDict):\n    name: str\n    color: NotRequired[str]\n" in stub
    assert "class CreateIssueUser(TypedDict):" in stub and "    login: str\n    id: NotRequired[int]\n" in stub
    assert stub.count("class CreateIssueUser(") == 1  # one class per $ref, however often it is used
    assert "children: NotRequired[list[CreateIssueNode]]" in stub  # recursive $ref
    assert "class CreateIssueResult(TypedDict):\n    number: int\n    url: str\n" in stub
    # The docstring: description, then parameter docs (with the JSON name when it differs).
    assert '"""Open an issue.\n\n    More.\n\n    Args:\n        title: Short summary.\n' in stub
    assert 'from_: (JSON name "from") Where it came from.' in stub


def test_return_type_without_output_schema_is_any() -> None:
    assert tool_stub(modal("lab", "ping")) == "async def ping() -> Any: ...\n"
    assert tool_stub(modal("lab", "ping", description="Ping.")) == 'async def ping() -> Any:\n    """Ping."""\n'


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string"}, "str"),
        ({"type": "null"}, "None"),
        ({"type": ["integer", "null"]}, "int | None"),
        ({"type": "string", "nullable": True}, "str | None"),
        ({"enum": ["a", 1, True, None]}, "Literal['a', 1, True] | None"),
        ({"const": "fixed"}, "Literal['fixed']"),
        ({"enum": [1.5, 2.5], "type": "number"}, "float"),
        ({"type": "array"}, "list[Any]"),
        ({"type": "array", "items": {"type": "array", "items": {"type": "integer"}}}, "list[list[int]]"),
        ({"type": "object", "additionalProperties": {"type": "integer"}}, "dict[str, int]"),
        ({"anyOf": [{"type": "string"}, {}]}, "Any"),
        ({"allOf": [{"type": "string"}]}, "str"),
        ({"$ref": "#/$defs/Missing"}, "Any"),
        ({"$ref": "https://example.com/schema.json"}, "Any"),
        ({"not": {"type": "string"}}, "Any"),
        ({"type": "weird"}, "Any"),
        (True, "Any"),
    ],
)
def test_schema_to_annotation(schema: Any, expected: str) -> None:
    stub = tool_stub(modal("lab", "f", {"type": "object", "properties": {"x": schema}, "required": ["x"]}))
    assert f"async def f(*, x: {expected}) -> Any: ...\n" == stub


def test_all_of_merges_objects_and_keys_that_are_not_identifiers_use_the_functional_form() -> None:
    schema = {
        "type": "object",
        "properties": {
            "filter": {
                "allOf": [
                    {"$ref": "#/$defs/Base"},
                    {"type": "object", "properties": {"user-id": {"type": "integer"}}, "required": ["user-id"]},
                ]
            }
        },
        "$defs": {"Base": {"type": "object", "properties": {"class": {"type": "string"}}}},
    }
    stub = tool_stub(modal("lab", "search", schema))
    assert "SearchFilter = TypedDict(\"SearchFilter\", {'class': NotRequired[str], 'user-id': int})" in stub


def test_field_named_like_a_builtin_does_not_shadow_annotations() -> None:
    schema = {
        "type": "object",
        "properties": {"opts": {"type": "object", "properties": {"list": {"type": "integer"}, "x": {"type": "array"}}}},
    }
    stub = tool_stub(modal("lab", "f", schema))
    assert "FOpts = TypedDict(\"FOpts\", {'list': NotRequired[int], 'x': NotRequired[list[Any]]})" in stub


def test_variadic_tool_takes_keywords() -> None:
    stub = tool_stub(modal("lab", "tag", {"type": "object", "additionalProperties": {"type": "string"}}))
    assert "async def tag(**kwargs: str) -> Any:" in stub


def test_docstrings_cannot_break_out() -> None:
    evil = 'Ends with a quote" and has """ triple quotes, a backslash \\ and a \x00 NUL.\n"""\nimport os'
    stub = tool_stub(
        modal("lab", "f", {"type": "object", "properties": {"x": {"type": "string", "description": evil}}})
    )
    body = stub.split('"""', 1)[1]
    assert body.count('"""') == 1  # only the closing quotes
    assert "\x00" not in stub


def test_module_layout_is_deterministic_and_collision_free() -> None:
    tools = [
        modal("github", "create_issue"),
        modal("github", "create-issue"),
        modal("github", "list"),
        modal("github", "class"),
        modal("github", "Any"),
        modal("my-docs", "search"),
        modal("2nd", "search"),
    ]
    layout = build_layout(tools)
    assert {m: sorted(fs) for m, fs in layout.modules.items()} == {
        "github": ["Any_", "class_", "create_issue", "create_issue_2", "list_"],
        "my_docs": ["search"],
        "x2nd": ["search"],
    }
    assert layout.modules["github"]["create_issue"].tool.original == "create_issue"  # the exact name wins
    assert layout.modules["github"]["create_issue_2"].tool.original == "create-issue"
    shuffled = tools[:]
    random.Random(7).shuffle(shuffled)
    assert module_stubs(shuffled) == module_stubs(tools)
    stubs = module_stubs(tools)
    assert stubs["tools"] == (
        "from . import github as github\nfrom . import my_docs as my_docs\nfrom . import x2nd as x2nd\n"
    )
    assert set(stubs) == {"tools", "tools.github", "tools.my_docs", "tools.x2nd"}
    assert stubs["tools.github"].startswith("from typing import Any, Literal, NotRequired, TypedDict\n")


def test_class_names_stay_unique_across_a_module() -> None:
    output = {"type": "object", "properties": {"a": {"type": "integer"}}}
    layout = build_layout([modal("m", "get_item", output=output), modal("m", "getItem", output=output)])
    stub = layout.stubs["tools.m"]
    assert "class GetItemResult(TypedDict):" in stub and "class GetItemResult2(TypedDict):" in stub


def test_layout_finds_tools_by_every_name() -> None:
    layout = build_layout([modal("github", "create-issue")])
    found = layout.find("github.create_issue")
    assert found is not None and found.path == "github.create_issue"
    assert layout.find("tools.github.create_issue") is found
    assert layout.find("github-create-issue") is found  # the exposed name
    assert layout.find("github.nope") is None
    assert found.params == {}


# --- the stubs against monty's type checker -------------------------------------------------------


@pytest.fixture
async def pool() -> AsyncIterator[monty.AsyncMonty]:
    async with monty.AsyncMonty(request_timeout=30) as pool:
        yield pool
    await anyio.sleep(0.1)  # lets the pool's native threads finish before exit (SIGABRT otherwise)


async def check(pool: monty.AsyncMonty, layout: ToolLayout, code: str) -> Any:
    """Type-check and run `code` against `layout`; every tool echoes the keywords it got."""

    async def echo(**kwargs: Any) -> Any:
        return kwargs

    modules = {
        module: monty.ExternalModule({f: echo for f in functions}, stubs=layout.stubs[f"tools.{module}"])
        for module, functions in layout.modules.items()
    }
    package = monty.ExternalModule(modules, stubs=layout.stubs["tools"])
    async with pool.checkout(type_check=True, type_check_format="concise", external_modules={"tools": package}) as s:
        return await s.feed_run("import tools\n" + code)


TYPED_TOOLS = [
    modal("github", "create_issue", ISSUE_SCHEMA, output=ISSUE_OUTPUT),
    modal("github", "list", {"type": "object", "properties": {"user-id": {"type": "string"}}}),
    modal("docs", "tag", {"type": "object", "additionalProperties": {"type": "integer"}}),
    modal("docs", "ping"),
]

GOOD_CALLS = [
    "await tools.github.create_issue(title='t')",
    "await tools.github.create_issue(title='t', body=None, labels=[{'name': 'bug'}, {'name': 'x', 'color': 'red'}])",
    "await tools.github.create_issue(title='t', state='closed', priority=2, weight=1, draft=True)",
    "await tools.github.create_issue(title='t', assignee={'login': 'me', 'id': 3}, reviewer=None)",
    "await tools.github.create_issue(title='t', milestone=3, metadata={'a': 'b'}, extra={'any': [1]}, from_='cli')",
    "await tools.github.create_issue(title='t', tree={'label': 'a', 'children': [{'label': 'b'}]})",
    "(await tools.github.create_issue(title='t'))['number'] + 1",
    "await tools.github.list_(user_id='u')",
    "await tools.docs.tag(a=1, b=2)",
    "(await tools.docs.ping())['anything']",
    "from tools.github import create_issue\nawait create_issue(title='t')",
]

BAD_CALLS = [
    ("await tools.github.create_issue()", "missing-argument"),
    ("await tools.github.create_issue(titel='t')", "unknown-argument"),
    ("await tools.github.create_issue(title=1)", "invalid-argument-type"),
    ("await tools.github.create_issue('t')", "positional"),
    ("await tools.github.create_issue(title='t', body=1)", "invalid-argument-type"),
    ("await tools.github.create_issue(title='t', labels=[{'nam': 'bug'}])", "invalid-key"),
    ("await tools.github.create_issue(title='t', labels=['bug'])", "invalid-argument-type"),
    ("await tools.github.create_issue(title='t', state='merged')", "invalid-argument-type"),
    ("await tools.github.create_issue(title='t', priority='high')", "invalid-argument-type"),
    ("await tools.github.create_issue(title='t', assignee={'id': 3})", "missing-typed-dict-key"),
    ("await tools.github.create_issue(title='t', reviewer={'login': 1})", "invalid-argument-type"),
    ("await tools.github.create_issue(title='t', milestone=[1])", "invalid-argument-type"),
    ("await tools.github.create_issue(title='t', metadata={'a': 1})", "invalid-argument-type"),
    ("await tools.github.create_issue(title='t', from='x')", "invalid-syntax"),
    ("await tools.github.create_issue(title='t', tree={'children': []})", "missing-typed-dict-key"),
    ("(await tools.github.create_issue(title='t'))['nope']", "invalid-key"),
    ("(await tools.github.create_issue(title='t'))['url'] + 1", "unsupported-operator"),
    ("await tools.github.list_(user_id=1)", "invalid-argument-type"),
    ("await tools.docs.tag(a='x')", "invalid-argument-type"),
    ("await tools.docs.nope()", "unresolved-attribute"),
    ("tools.docs.ping()", "unused-awaitable"),
]


async def test_correct_calls_pass_the_type_check(pool: monty.AsyncMonty) -> None:
    layout = build_layout(TYPED_TOOLS)
    for code in GOOD_CALLS:
        # The echoing fake returns no `number`: a runtime KeyError means the type check passed.
        with contextlib.suppress(monty.MontyRuntimeError):
            await check(pool, layout, code)
    # The host gets the Python keywords; code mode maps them back to JSON names (see test_codemode).
    assert await check(pool, layout, "await tools.github.list_(user_id='u')") == {"user_id": "u"}


async def test_wrong_calls_fail_the_type_check(pool: monty.AsyncMonty) -> None:
    layout = build_layout(TYPED_TOOLS)
    for code, diagnostic in BAD_CALLS:
        with pytest.raises(monty.MontyTypingError) as caught:
            await check(pool, layout, code)
        message = caught.value.display()
        assert "main.py:" in message, message  # with line:col
        assert diagnostic in message or diagnostic == "positional", f"{code}: {message}"


async def test_every_generated_stub_is_understood_by_the_checker(pool: monty.AsyncMonty) -> None:
    """A stub the checker cannot read degrades to `Unknown` silently: a wrong call would then pass."""
    schemas: list[tuple[str, dict[str, Any], str]] = [
        ("str", {"type": "string"}, "1"),
        ("opt_int", {"type": ["integer", "null"]}, "'x'"),
        ("enum", {"enum": ["a", "b"]}, "'c'"),
        (
            "nested",
            {"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {"type": "integer"}}}}},
            "{'a': {'b': 'x'}}",
        ),
        ("arr", {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}}}, "[{'k': 1}]"),
        (
            "weird_keys",
            {"type": "object", "properties": {"user-id": {"type": "integer"}, "list": {"type": "string"}}},
            "{'user-id': 'x'}",
        ),
        ("map", {"type": "object", "additionalProperties": {"type": "boolean"}}, "{'a': 'yes'}"),
    ]
    tools = [
        modal("lab", name, {"type": "object", "properties": {"x": schema}, "required": ["x"]})
        for name, schema, _ in schemas
    ]
    layout = build_layout(tools)
    for name, _, wrong in schemas:
        with pytest.raises(monty.MontyTypingError):
            await check(pool, layout, f"await tools.lab.{name}(x={wrong})")
        with pytest.raises(monty.MontyTypingError):
            await check(pool, layout, f"await tools.lab.{name}(y=1)")


def test_output_schema_refs_resolve_against_the_output_schema() -> None:
    user = {"type": "object", "properties": {"login": {"type": "string"}}}
    team = {"type": "object", "properties": {"members": {"type": "integer"}}}
    tool = modal(
        "lab",
        "f",
        {"type": "object", "properties": {"who": {"$ref": "#/$defs/Entity"}}, "$defs": {"Entity": user}},
        output={"type": "object", "properties": {"what": {"$ref": "#/$defs/Entity"}}, "$defs": {"Entity": team}},
    )
    stub = tool_stub(tool)
    assert "class FEntity(TypedDict):\n    login: NotRequired[str]\n" in stub
    assert "class FEntity2(TypedDict):\n    members: NotRequired[int]\n" in stub
    assert "class FResult(TypedDict):\n    what: NotRequired[FEntity2]\n" in stub


def example(schema: dict[str, Any]) -> str:
    """A Python literal that satisfies `schema` (for the schemas of the generated catalog)."""
    if "enum" in schema:
        return repr(schema["enum"][0])
    kind = schema.get("type")
    values = {"string": "'s'", "integer": "1", "number": "1.5", "boolean": "True", "array": "[]", "object": "{}"}
    return values.get(kind, "None") if isinstance(kind, str) else "None"


async def test_stubs_of_a_realistic_catalog_enforce_every_signature(pool: monty.AsyncMonty) -> None:
    """500 tools of 25 upstreams: every correct call checks, every misspelt keyword is caught."""
    tools = [modal(upstream, t.name, t.input_schema) for upstream, ts in generated_catalog().items() for t in ts]
    layout = build_layout(tools)
    good: list[str] = []
    bad: list[str] = []
    for module, functions in layout.modules.items():
        for func, stubbed in functions.items():
            schema = stubbed.tool.tool.input_schema
            required = set(schema.get("required", []))
            args = [f"{p}={example(schema['properties'][j])}" for p, j in stubbed.params.items() if j in required]
            good.append(f"await tools.{module}.{func}({', '.join(args)})")
            bad.append(f"await tools.{module}.{func}({', '.join([*args, 'no_such_parameter=1'])})")
    assert len(good) == 500
    await check(pool, layout, "\n".join(good))
    with pytest.raises(monty.MontyTypingError) as caught:
        await check(pool, layout, "\n".join(bad))
    assert caught.value.display().count("error[unknown-argument]") == 500
