"""`search` mode: BM25 over a generated 500-tool catalog, and the three meta tools through a fake `ToolAccess`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import mcp_types as types
import pytest

from mcp_gateway.catalog import exposed_name
from mcp_gateway.errors import UnknownTool
from mcp_gateway.toolmodes.base import ModalTool, ToolMode
from mcp_gateway.toolmodes.search import META_TOOLS, SearchIndex, SearchMode, tokenize
from tests.toolcatalog import QUERIES, SEPARATOR, generated_catalog


def modal_tools(mode: ToolMode = ToolMode.SEARCH) -> list[ModalTool]:
    out = []
    for upstream, tools in generated_catalog().items():
        for tool in tools:
            name = exposed_name(upstream, SEPARATOR, tool.name)
            out.append(ModalTool(name, upstream, tool.name, tool.model_copy(update={"name": name}), mode))
    return out


CATALOG = modal_tools()
INDEX = SearchIndex(CATALOG)


class FakeAccess:
    """The caller's tools, some of them in other modes or hidden; records calls instead of making them."""

    def __init__(self, tools: list[ModalTool], *, hidden: frozenset[str] = frozenset()) -> None:
        self._tools = tools
        self.hidden = hidden
        self.calls: list[tuple[str, Mapping[str, Any] | None]] = []

    def tools(self, *modes: ToolMode) -> list[ModalTool]:
        return [t for t in self._tools if (not modes or t.mode in modes) and t.name not in self.hidden]

    async def call(self, name: str, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
        if name in self.hidden or not any(t.name == name for t in self._tools):
            raise UnknownTool(name)
        self.calls.append((name, arguments))
        return {"content": [{"type": "text", "text": f"called {name}"}], "structuredContent": {"ok": True}}


def text(result: dict[str, Any]) -> str:
    return "\n".join(c["text"] for c in result["content"])


def test_tokenize_splits_names_stems_and_drops_stopwords() -> None:
    assert tokenize("tracker-create_issue") == tokenize("tracker createIssue") == tokenize("Tracker creating issues")
    assert tokenize("listPullRequests") == tokenize("list pull requests")
    assert tokenize("the S3Bucket of a user") == ["s3", "bucket", "user"]


def test_catalog_has_500_tools_across_25_upstreams() -> None:
    assert len(CATALOG) == 500
    assert len({t.upstream for t in CATALOG}) == 25
    assert {target for _, target in QUERIES} <= {t.name for t in CATALOG}


@pytest.mark.parametrize(("query", "expected"), QUERIES)
def test_natural_language_query_finds_the_expected_tool_in_the_top_3(query: str, expected: str) -> None:
    assert expected in [t.name for t in INDEX.search(query, limit=3)]


def test_common_verbs_reach_the_verbs_tools_are_named_with() -> None:
    assert INDEX.search("find the issue about failing logins", limit=1)[0].name == "tracker-search_issues"
    assert INDEX.search("show me the pods", limit=1)[0].name == "k8s-list-pods"


def test_most_queries_hit_at_rank_1() -> None:
    hits = sum(INDEX.search(q, limit=1)[0].name == t for q, t in QUERIES)

    assert hits >= 0.85 * len(QUERIES)


def test_upstream_filter_and_limit() -> None:
    found = INDEX.search("create a new issue", upstream="support", limit=4)

    assert len(found) == 4
    assert {t.upstream for t in found} == {"support"}
    assert len(INDEX.search("create", limit=7)) == 7


def test_blank_query_lists_in_catalog_order_and_unknown_words_find_nothing() -> None:
    assert [t.name for t in INDEX.search("  ", upstream="k8s", limit=2)] == [
        t.name for t in CATALOG if t.upstream == "k8s"
    ][:2]
    assert INDEX.search("xylophone quokka") == []
    assert SearchIndex([]).search("anything") == []


def test_meta_tools_are_three_short_tools() -> None:
    assert [t.name for t in META_TOOLS] == ["search_tools", "get_tool_schema", "call_tool"]
    assert all(len(t.description or "") < 300 for t in META_TOOLS)
    assert sum(len(t.model_dump_json(by_alias=True, exclude_none=True)) for t in META_TOOLS) < 1500


@pytest.mark.anyio
async def test_search_tools_returns_lines_and_structured_content() -> None:
    result = await SearchMode().call(
        "search_tools", {"query": "open a new issue in the bug tracker", "limit": 3}, FakeAccess(CATALOG)
    )

    assert result["isError"] is False
    lines = text(result).splitlines()
    assert len(lines) == 3
    assert lines[0] == "tracker-create_issue — Create a new issue in the Tracker bug tracker."
    first = result["structuredContent"]["tools"][0]
    assert first == {
        "name": "tracker-create_issue",
        "upstream": "tracker",
        "description": "Create a new issue in the Tracker bug tracker.",
    }


@pytest.mark.anyio
async def test_search_tools_sees_only_the_callers_search_mode_tools() -> None:
    direct = [t for t in modal_tools(ToolMode.DIRECT) if t.upstream == "tracker"]
    others = [t for t in CATALOG if t.upstream != "tracker"]
    access = FakeAccess(direct + others, hidden=frozenset({"chat-sendMessage"}))
    mode = SearchMode()

    tracker = await mode.call("search_tools", {"query": "create issue tracker"}, access)
    chat = await mode.call("search_tools", {"query": "send a message to the team chat", "upstream": "chat"}, access)

    assert all(t["upstream"] != "tracker" for t in tracker["structuredContent"]["tools"])
    assert "chat-sendMessage" not in text(chat)
    assert chat["structuredContent"]["tools"]


@pytest.mark.anyio
async def test_search_tools_rejects_bad_arguments_and_unknown_upstreams() -> None:
    mode, access = SearchMode(), FakeAccess(CATALOG)

    for arguments in (
        {},
        {"query": 3},
        {"query": "x", "limit": 0},
        {"query": "x", "limit": True},
        {"query": "x", "upstream": 1},
    ):
        assert (await mode.call("search_tools", arguments, access))["isError"] is True
    unknown = await mode.call("search_tools", {"query": "x", "upstream": "nope"}, access)
    assert unknown["isError"] is True
    assert "tracker" in text(unknown)
    none = await mode.call("search_tools", {"query": "xylophone"}, access)
    assert none["isError"] is False
    assert none["structuredContent"] == {"tools": []}
    assert "no tools match" in text(none)


@pytest.mark.anyio
async def test_get_tool_schema_returns_the_full_definition() -> None:
    result = await SearchMode().call("get_tool_schema", {"name": "k8s-scale-deployment"}, FakeAccess(CATALOG))

    definition = json.loads(text(result))
    original = next(t for t in CATALOG if t.name == "k8s-scale-deployment").tool
    assert definition["name"] == "k8s-scale-deployment"
    assert definition["description"] == original.description
    assert definition["inputSchema"] == original.input_schema
    assert result["structuredContent"] == definition


@pytest.mark.anyio
async def test_get_tool_schema_includes_output_schema_and_annotations() -> None:
    tool = types.Tool(
        name="lab-echo",
        description="Echo.",
        input_schema={"type": "object"},
        output_schema={"type": "object", "properties": {"text": {"type": "string"}}},
        annotations=types.ToolAnnotations(read_only_hint=True),
    )
    access = FakeAccess([ModalTool("lab-echo", "lab", "echo", tool, ToolMode.SEARCH)])

    definition = (await SearchMode().call("get_tool_schema", {"name": "lab-echo"}, access))["structuredContent"]

    assert definition["outputSchema"] == {"type": "object", "properties": {"text": {"type": "string"}}}
    assert definition["annotations"] == {"readOnlyHint": True}


@pytest.mark.anyio
async def test_call_tool_delegates_and_returns_the_result_unchanged() -> None:
    access = FakeAccess(CATALOG)

    result = await SearchMode().call(
        "call_tool", {"name": "tracker-create_issue", "arguments": {"title": "Bug"}}, access
    )

    assert result == {
        "content": [{"type": "text", "text": "called tracker-create_issue"}],
        "structuredContent": {"ok": True},
    }
    assert access.calls == [("tracker-create_issue", {"title": "Bug"})]


@pytest.mark.anyio
@pytest.mark.parametrize("meta", ["get_tool_schema", "call_tool"])
async def test_hidden_unknown_and_other_mode_tools_are_not_available(meta: str) -> None:
    direct = ModalTool(
        "lab-echo", "lab", "echo", types.Tool(name="lab-echo", input_schema={"type": "object"}), ToolMode.DIRECT
    )
    access = FakeAccess([*CATALOG, direct], hidden=frozenset({"tracker-create_issue"}))
    mode = SearchMode()

    for name in ("tracker-create_issue", "no-such_tool", "lab-echo"):
        result = await mode.call(meta, {"name": name, "arguments": {}}, access)
        assert result["isError"] is True
        assert text(result) == f"no tool named {name!r} is available; use search_tools"
    assert access.calls == []


@pytest.mark.anyio
async def test_call_tool_reports_a_tool_that_disappeared_after_listing() -> None:
    class Vanishing(FakeAccess):
        async def call(self, name: str, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
            raise UnknownTool(name)

    result = await SearchMode().call("call_tool", {"name": "tracker-create_issue"}, Vanishing(CATALOG))

    assert result["isError"] is True
    assert "use search_tools" in text(result)


@pytest.mark.anyio
async def test_call_tool_rejects_non_object_arguments() -> None:
    result = await SearchMode().call(
        "call_tool", {"name": "tracker-create_issue", "arguments": [1]}, FakeAccess(CATALOG)
    )

    assert result["isError"] is True


def test_indexes_are_cached_per_visible_tool_set_in_a_small_lru() -> None:
    mode = SearchMode(cache_size=2)
    everything, tracker_only = CATALOG, [t for t in CATALOG if t.upstream == "tracker"]

    first = mode.index_for(everything)
    assert mode.index_for(list(everything)) is first
    second = mode.index_for(tracker_only)
    assert second is not first
    mode.index_for(CATALOG[:10])
    assert mode.index_for(tracker_only) is second  # recently used: kept
    assert mode.index_for(everything) is not first  # least recently used: evicted


def test_a_changed_description_gets_a_new_index() -> None:
    mode = SearchMode()
    tool = CATALOG[0]
    edited = tool.tool.model_copy(update={"description": "Something else."})
    changed = [ModalTool(tool.name, tool.upstream, tool.original, edited, tool.mode), *CATALOG[1:]]

    assert mode.index_for(changed) is not mode.index_for(CATALOG)
