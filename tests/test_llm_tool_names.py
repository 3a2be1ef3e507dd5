"""Provider-safe tool names and recognising a client's own copies of gateway tools (`llm_gateway/tools/names.py`)."""

from __future__ import annotations

import json
import re

from llm_gateway.tools.names import ProviderNames, client_tool_keys, deferred_tool_names, normalised
from llm_gateway.wire import EncodedList, dumps

VALID = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")


def test_names_that_fit_are_kept_and_the_rest_get_stable_valid_stand_ins() -> None:
    names = ["github-create_issue", "docs-search.v2", "docs-search_v2", "9lives-tool", "x" * 80, "x" * 80 + "y"]
    mapped = ProviderNames(names)
    assert mapped.to_provider["github-create_issue"] == "github-create_issue"
    assert mapped.to_provider["docs-search.v2"] == "docs-search_v2"
    # A collision after replacing characters: the second one is hashed, both stay distinct and valid.
    assert mapped.to_provider["docs-search_v2"] != "docs-search_v2"
    assert mapped.to_provider["9lives-tool"] == "t_9lives-tool"  # Gemini: names start with a letter or _
    assert all(VALID.fullmatch(name) for name in mapped.to_provider.values())
    assert len(set(mapped.to_provider.values())) == len(names)
    assert {mapped.to_gateway[p]: p for p in mapped.to_gateway} == mapped.to_provider
    assert ProviderNames(names).to_provider == mapped.to_provider  # stable across rebuilds


def test_client_names_of_each_host_stand_for_the_gateway_tool() -> None:
    keys = client_tool_keys(["mcp__gw__lab-echo", "mcp_gemini_srv_docs-search", "Read", "mcp__a__b__c"])
    assert normalised("lab-echo") in keys
    assert normalised("docs-search") in keys and normalised("srv_docs-search") in keys
    assert "Read" in keys and normalised("b__c") in keys and "c" in keys
    assert normalised("lab-whoami") not in keys
    assert "echo" not in keys  # `mcp__…` names are cut at `__` only: an unprefixed `echo` is not taken as sent


def test_deferred_tools_are_found_in_claude_codes_system_text() -> None:
    text = "You can load these with ToolSearch:\n- mcp__gw__lab-echo: Return text\n- mcp__my.server__x"
    assert deferred_tool_names([text]) == ["mcp__gw__lab-echo", "mcp__my"]


def test_a_body_with_an_encoded_tool_list_is_written_with_those_bytes_and_reads_back_the_same() -> None:
    tools = [{"name": "a", "input_schema": {"type": "object"}}, {"name": "b", "description": "é"}]
    encoded = EncodedList(tools, json.dumps(tools, ensure_ascii=False, separators=(",", ":")).encode())
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": encoded}
    written = dumps(body)
    assert written.endswith(b',"tools":' + encoded.encoded + b"}")
    assert json.loads(written) == {**body, "tools": tools}
    assert json.loads(dumps({"tools": encoded})) == {"tools": tools}  # nothing else in the object
    assert json.loads(dumps({**body, "tools": list(tools)})) == json.loads(written)  # a plain list: the same JSON
