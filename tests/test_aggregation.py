"""Aggregation over real connections: names, routing, content pass-through, prompts, resources, pagination."""

from __future__ import annotations

import base64
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp import MCPError

from tests.conftest import (
    CONFORMANCE_SERVER,
    LAB_SERVER,
    MEDIA_SERVER,
    NOTES_SERVER,
    lab,
    mcp_client,
    running_gateway,
    stdio_upstream,
    text_of,
    tool_names,
    upstream_process,
)

pytestmark = pytest.mark.anyio


async def _all_pages(method: Any, attribute: str) -> tuple[list[Any], int]:
    items: list[Any] = []
    pages = 0
    cursor = None
    while True:
        page = await method(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)
        pages += 1
        items.extend(getattr(page, attribute))
        cursor = page.next_cursor
        if not cursor:
            return items, pages


async def test_tools_of_stdio_http_and_sse_upstreams_appear_prefixed_and_route_back() -> None:
    async with (
        upstream_process(MEDIA_SERVER, "http") as media_url,
        upstream_process(LAB_SERVER, "sse", env={"LAB_TOOL_COUNT": "0"}) as sse_url,
        running_gateway(
            {
                "notes": stdio_upstream(NOTES_SERVER),
                "media": {"transport": "http", "url": media_url},
                "legacy": {"transport": "sse", "url": sse_url},
            }
        ) as gw,
        mcp_client(gw.url) as client,
    ):
        names = tool_names(await client.list_tools())
        assert {"notes-add_note", "notes-get_note", "notes-list_notes"} <= set(names)
        assert {"media-render_badge", "media-stats", "media-fail"} <= set(names)
        assert "legacy-echo" in names
        assert not any(n in names for n in ("echo", "add_note", "stats")), "unprefixed names leaked"

        assert text_of(await client.call_tool("legacy-echo", {"text": "via sse"})) == "via sse"
        added = await client.call_tool("notes-add_note", {"title": "gw", "body": "hello"})
        assert not added.is_error
        got = await client.call_tool("notes-get_note", {"title": "gw"})
        assert "hello" in text_of(got)


async def test_results_pass_through_unchanged() -> None:
    async with (
        upstream_process(MEDIA_SERVER, "http") as media_url,
        running_gateway({"media": {"transport": "http", "url": media_url}}) as gw,
        mcp_client(gw.url) as via_gateway,
        mcp_client(media_url) as direct,
    ):
        for name, args in [
            ("render_badge", {"text": "ok"}),
            ("beep", {}),
            ("stats", {"numbers": [1, 2, 3.5]}),
            ("fail", {"reason": "on purpose"}),
            ("resource_link", {}),
        ]:
            expected = await direct.call_tool(name, args)
            got = await via_gateway.call_tool(f"media-{name}", args)
            assert got.model_dump() == expected.model_dump(), name

        badge = await via_gateway.call_tool("media-render_badge", {"text": "ok"})
        image = badge.content[0]
        assert isinstance(image, types.ImageContent)
        assert base64.b64decode(image.data).startswith(b"\x89PNG")
        stats = await via_gateway.call_tool("media-stats", {"numbers": [1, 2, 3]})
        assert stats.structured_content == {"count": 3, "mean": 2.0, "min": 1.0, "max": 3.0}
        failed = await via_gateway.call_tool("media-fail", {"reason": "on purpose"})
        assert failed.is_error and "on purpose" in text_of(failed)
        link = await via_gateway.call_tool("media-resource_link", {})
        assert [block.type for block in link.content] == ["resource_link", "resource"]


async def test_tool_metadata_is_kept() -> None:
    async with (
        running_gateway({"notes": stdio_upstream(NOTES_SERVER)}) as gw,
        mcp_client(gw.url) as client,
    ):
        tools = {t.name: t for t in (await client.list_tools()).tools}
    listing = tools["notes-list_notes"]
    assert listing.title == "List notes"
    assert listing.output_schema is not None and "notes" in listing.output_schema["properties"]
    assert listing.annotations is not None and listing.annotations.read_only_hint is True
    assert tools["notes-add_note"].input_schema["required"] == ["title", "body"]


async def test_unknown_tool_is_a_protocol_error() -> None:
    async with running_gateway({"lab": lab()}) as gw, mcp_client(gw.url) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("lab-does_not_exist", {})
        assert caught.value.error.code == types.INVALID_PARAMS
        assert "lab-does_not_exist" in caught.value.error.message
        with pytest.raises(MCPError):
            await client.call_tool("echo", {"text": "unprefixed names do not resolve"})


async def test_empty_prefix_and_custom_separator() -> None:
    upstreams = {"a": {**lab(LAB_TOOL_COUNT="1"), "prefix": ""}, "b": {**lab(LAB_TOOL_COUNT="1"), "prefix": "bee"}}
    async with running_gateway(upstreams, name_separator="__") as gw, mcp_client(gw.url) as client:
        names = tool_names(await client.list_tools())
        assert "echo" in names and "bee__echo" in names
        assert text_of(await client.call_tool("bee__echo", {"text": "x"})) == "x"


async def test_collision_with_empty_prefixes_keeps_first_and_reports_both() -> None:
    upstreams = {"first": {**lab(LAB_TOOL_COUNT="0"), "prefix": ""}, "second": {**lab(), "prefix": ""}}
    async with running_gateway(upstreams) as gw, mcp_client(gw.url) as client:
        names = tool_names(await client.list_tools())
        assert names.count("echo") == 1
        assert "tool_000" in names, "non-colliding tools of the second upstream are still served"
        async with httpx2.AsyncClient() as http:
            ready = (await http.get(f"{gw.base_url}/readyz")).json()
        assert any("'first'" in c and "'second'" in c for c in ready["collisions"])


async def test_long_tool_names_are_shortened_and_still_resolve() -> None:
    long_name = "x" * 70
    async with running_gateway({"lab": lab()}) as gw, mcp_client(gw.url) as client:
        await client.call_tool("lab-add_tool", {"name": long_name})
        for _ in range(100):
            names = tool_names(await client.list_tools())
            shortened = [n for n in names if n.startswith("lab-xxxx")]
            if shortened:
                break
        assert len(shortened) == 1 and len(shortened[0]) <= 64
        result = await client.call_tool(shortened[0], {"value": "routed"})
        assert "routed" in text_of(result)


async def test_pagination_walks_upstream_pages_and_pages_the_aggregate() -> None:
    env = {"LAB_TOOL_COUNT": "25", "LAB_PAGE_SIZE": "4", "LAB_PROMPT_COUNT": "9", "LAB_RESOURCE_COUNT": "11"}
    async with (
        running_gateway({"lab": lab(**env)}, page_size=5) as gw,
        mcp_client(gw.url) as client,
    ):
        tools, tool_pages = await _all_pages(client.list_tools, "tools")
        prompts, prompt_pages = await _all_pages(client.list_prompts, "prompts")
        resources, _ = await _all_pages(client.list_resources, "resources")
    names = [t.name for t in tools]
    assert len(names) == len(set(names)) == 25 + 11  # generated + fixed lab tools
    assert {f"lab-tool_{i:03d}" for i in range(25)} <= set(names)
    assert tool_pages == 8
    assert len(prompts) == 9 and prompt_pages == 2
    assert [str(r.uri) for r in resources] == [f"lab://item/{i:03d}" for i in range(11)]


async def test_invalid_cursor_is_rejected_clearly() -> None:
    async with running_gateway({"lab": lab()}) as gw, mcp_client(gw.url) as client:
        with pytest.raises(MCPError) as caught:
            await client.list_tools(params=types.PaginatedRequestParams(cursor="not-a-cursor"))
        assert caught.value.error.code == types.INVALID_PARAMS


async def test_prompts_are_prefixed_and_routed() -> None:
    async with running_gateway({"notes": stdio_upstream(NOTES_SERVER)}) as gw, mcp_client(gw.url) as client:
        prompts = [p.name for p in (await client.list_prompts()).prompts]
        assert prompts == ["notes-summarize_notes"]
        result = await client.get_prompt("notes-summarize_notes", {"style": "haiku"})
        assert "haiku" in result.messages[0].content.text  # type: ignore[union-attr]
        with pytest.raises(MCPError):
            await client.get_prompt("summarize_notes", {"style": "haiku"})


async def test_resources_and_templates_reach_the_right_upstream() -> None:
    async with (
        running_gateway({"notes": stdio_upstream(NOTES_SERVER), "lab": lab(LAB_RESOURCE_COUNT="1")}) as gw,
        mcp_client(gw.url) as client,
    ):
        uris = [str(r.uri) for r in (await client.list_resources()).resources]
        assert {"notes://index", "lab://item/000"} <= set(uris)
        templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
        assert "notes://note/{title}" in templates

        index = await client.read_resource("notes://index")
        assert "welcome" in index.contents[0].text  # type: ignore[union-attr]
        note = await client.read_resource("notes://note/welcome")
        assert note.contents[0].text  # type: ignore[union-attr]
        explicit = await client.read_resource("mcpgw://lab/lab://item/000")
        assert str(explicit.contents[0].uri) == "mcpgw://lab/lab://item/000"
        with pytest.raises(MCPError) as caught:
            await client.read_resource("nowhere://at/all")
        assert "nowhere://at/all" in caught.value.error.message


async def test_completion_is_routed_by_prefixed_prompt_name_and_by_template() -> None:
    async with (
        upstream_process(CONFORMANCE_SERVER, "http") as url,
        running_gateway({"conf": {"transport": "http", "url": url}}) as gw,
        mcp_client(gw.url) as client,
    ):
        by_prompt = await client.complete(
            types.PromptReference(type="ref/prompt", name="conf-test_prompt_with_arguments"),
            {"name": "arg1", "value": "pa"},
        )
        assert by_prompt.completion.values == ["paris", "park", "party"]
        by_template = await client.complete(
            types.ResourceTemplateReference(type="ref/resource", uri="test://template/{id}/data"),
            {"name": "id", "value": "12"},
        )
        assert by_template.completion.values == ["12", "123", "1234"]
        with pytest.raises(MCPError) as caught:
            await client.complete(
                types.PromptReference(type="ref/prompt", name="test_prompt_with_arguments"),
                {"name": "arg1", "value": ""},
            )
        assert "test_prompt_with_arguments" in caught.value.error.message


async def test_health_and_readiness_endpoints() -> None:
    async with running_gateway({"lab": lab(), "broken": {"transport": "stdio", "command": "/nonexistent/x"}}) as gw:
        async with httpx2.AsyncClient() as http:
            health = await http.get(f"{gw.base_url}/healthz")
            ready = await http.get(f"{gw.base_url}/readyz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        assert ready.status_code == 503
        states = {u["name"]: u for u in ready.json()["upstreams"]}
        assert states["lab"]["state"] == "connected" and states["lab"]["tools"] == 14
        assert states["broken"]["state"] == "disconnected"
        assert "/nonexistent/x" in states["broken"]["error"]
