"""Tool modes and dedupe through a real /mcp session: what is listed, and what meta tools can do."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from mcp import MCPError

from tests.conftest import NOTES_SERVER, lab, mcp_client, running_gateway, stdio_upstream, text_of, tool_names

pytestmark = pytest.mark.anyio

CODE_META = {"list_tools", "get_tool_docs", "run_code"}
SEARCH_META = {"search_tools", "get_tool_schema", "call_tool"}


def moded(upstream: dict[str, Any], mode: str) -> dict[str, Any]:
    return {**upstream, "tool_mode": mode}


async def test_each_mode_lists_what_it_should() -> None:
    upstreams = {
        "direct": lab(LAB_TOOL_COUNT="0"),
        "short": moded(stdio_upstream(NOTES_SERVER), "compact"),
        "found": moded(lab(LAB_TOOL_COUNT="0"), "search"),
        "coded": moded(lab(LAB_TOOL_COUNT="0"), "code"),
    }
    async with running_gateway(upstreams) as gw, mcp_client(gw.url) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    names = set(tools)
    assert "direct-echo" in names
    assert {"short-add_note", "short-get_note", "short-list_notes"} <= names
    assert not any(n.startswith(("found-", "coded-")) for n in names), "search/code tools must be hidden"
    assert names >= SEARCH_META | CODE_META
    compacted = tools["short-add_note"]
    assert compacted.description is not None and compacted.description.count(".") <= 1
    assert all("description" not in p for p in compacted.input_schema["properties"].values())
    assert compacted.input_schema["required"] == ["title", "body"], "compact keeps the schema's meaning"


async def test_search_mode_finds_and_calls_tools() -> None:
    async with (
        running_gateway({"lab": moded(lab(), "search")}) as gw,
        mcp_client(gw.url) as client,
    ):
        found = await client.call_tool("search_tools", {"query": "echo text back"})
        hits = [t["name"] for t in found.structured_content["tools"]]  # type: ignore[index]
        assert hits[0] == "lab-echo"
        schema = json.loads(text_of(await client.call_tool("get_tool_schema", {"name": "lab-echo"})))
        assert "text" in json.dumps(schema)
        called = await client.call_tool("call_tool", {"name": "lab-echo", "arguments": {"text": "via search"}})
        assert text_of(called) == "via search"
        missing = await client.call_tool("call_tool", {"name": "lab-nope", "arguments": {}})
        assert missing.is_error and "search_tools" in text_of(missing)


async def test_run_code_chains_calls_across_two_upstreams() -> None:
    upstreams = {"notes": moded(stdio_upstream(NOTES_SERVER), "code"), "lab": moded(lab(), "code")}
    code = (
        "import tools\n"
        "note = await tools.notes.get_note(title='welcome')\n"
        "shout = await tools.lab.echo(text=str(note).upper())\n"
        "await tools.notes.add_note(title='shouted', body=shout)\n"
        "print('copied', len(shout), 'chars')\n"
        "shout[:20]\n"
    )
    async with running_gateway(upstreams) as gw, mcp_client(gw.url) as client:
        listed = await client.call_tool("list_tools", {})
        assert "notes" in text_of(listed) and "echo" in text_of(listed)
        docs = await client.call_tool("get_tool_docs", {"names": ["notes-add_note"]})
        assert "async def add_note" in text_of(docs)
        result = await client.call_tool("run_code", {"code": code})
        assert not result.is_error, text_of(result)
        assert "copied" in text_of(result)
        # The write really happened upstream: read it back through another run.
        verify = (
            "import tools\n"
            "copy = await tools.notes.get_note(title='shouted')\n"
            "original = await tools.notes.get_note(title='welcome')\n"
            "copy == str(original).upper()\n"
        )
        check = await client.call_tool("run_code", {"code": verify})
        assert not check.is_error and text_of(check).strip() == "true", text_of(check)
        audit = gw.gateway.audit
        assert audit is not None and gw.gateway.store is not None
        await audit.flush()
        events = await gw.gateway.store.list_audit(limit=20)
    inner = [(e.upstream, e.tool) for e in events if e.upstream]
    assert ("notes", "get_note") in inner and ("lab", "echo") in inner and ("notes", "add_note") in inner


async def test_policy_holds_inside_code_mode() -> None:
    upstreams = {"lab": moded(lab(), "code")}
    async with running_gateway(upstreams, auth={"enforce_auth_on_inference": True}) as gw:
        store = gw.gateway.store
        assert store is not None
        _, key = await store.create_virtual_key("coder", mcp_configs={"lab": ["echo"]})
        await gw.gateway.sync()
        async with mcp_client(gw.url, headers={"x-bf-vk": key}) as client:
            assert set(tool_names(await client.list_tools())) == CODE_META
            listed = text_of(await client.call_tool("list_tools", {}))
            assert "echo" in listed and "whoami" not in listed
            allowed = await client.call_tool("run_code", {"code": "import tools\nawait tools.lab.echo(text='ok')"})
            assert not allowed.is_error and "ok" in text_of(allowed)
            hidden = await client.call_tool("run_code", {"code": "import tools\nawait tools.lab.whoami()"})
            assert hidden.is_error


async def test_sandbox_escapes_fail_and_the_gateway_keeps_serving() -> None:
    async with running_gateway({"lab": moded(lab(), "code")}) as gw, mcp_client(gw.url) as client:
        for attempt in ("open('/etc/passwd').read()", "import socket", "__import__('os')", "while True:\n    pass"):
            result = await client.call_tool("run_code", {"code": attempt})
            assert result.is_error, attempt
        assert text_of(await client.call_tool("run_code", {"code": "1 + 1"})).strip().endswith("2")


async def test_meta_tools_need_a_visible_tool_behind_them() -> None:
    async with running_gateway({"lab": moded(lab(), "code")}, auth={"enforce_auth_on_inference": True}) as gw:
        store = gw.gateway.store
        assert store is not None
        _, key = await store.create_virtual_key("nothing", mcp_configs={})
        await gw.gateway.sync()
        async with mcp_client(gw.url, headers={"x-bf-vk": key}) as client:
            assert tool_names(await client.list_tools()) == []
            with pytest.raises(MCPError):
                await client.call_tool("run_code", {"code": "1"})


async def test_dedupe_merges_replicas_and_fails_over() -> None:
    upstreams = {"lab_a": lab(LAB_TOOL_COUNT="1"), "lab_b": lab(LAB_TOOL_COUNT="1")}
    async with (
        running_gateway(upstreams, dedupe={"lab": {"upstreams": ["lab_a", "lab_b"]}}) as gw,
        mcp_client(gw.url) as client,
    ):
        names = tool_names(await client.list_tools())
        assert names.count("lab-echo") == 1 and not any(n.startswith(("lab_a-", "lab_b-")) for n in names)
        crashed = await client.call_tool("lab-crash", {})
        assert crashed.is_error, "a call that reached a dying replica is not retried elsewhere"
        with anyio.fail_after(10):
            for _ in range(20):
                result = await client.call_tool("lab-echo", {"text": "still served"})
                if not result.is_error:
                    break
        assert text_of(result) == "still served"
        assert "lab-echo" in tool_names(await client.list_tools()), "names stay stable when a replica goes"
