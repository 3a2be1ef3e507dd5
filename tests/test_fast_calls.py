"""The `/mcp` fast path for plain tools/call (`http/fast_calls.py`): which calls take it, and that they
get exactly the bytes the SDK path would send.

Raw HTTP sessions (so the bytes can be compared): one whose client declares no capabilities (the
fast path serves its calls), one that declares `roots` (every call goes through the SDK).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx2
import pytest

from tests.conftest import CONFORMANCE_SERVER, MEDIA_SERVER, lab, running_gateway, upstream_process

pytestmark = pytest.mark.anyio

VERSION = "2025-11-25"
ACCEPT = {"accept": "application/json, text/event-stream"}


async def open_session(
    http: httpx2.AsyncClient, url: str, capabilities: dict[str, Any], *, version: str = VERSION
) -> dict[str, str]:
    """A session as a client opens one; the headers every later request of it carries."""
    hello = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": capabilities,
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    opened = await http.post(url, json=hello, headers=ACCEPT)
    assert opened.status_code == 200, opened.text
    headers = {**ACCEPT, "mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": version}
    done = await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    assert done.status_code == 202
    return headers


async def call(
    http: httpx2.AsyncClient, url: str, headers: dict[str, str], name: str, arguments: dict[str, Any]
) -> httpx2.Response:
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
    return await http.post(url, json=body, headers=headers)


CALLS = [
    ("media-render_badge", {"text": "hi"}),  # image
    ("media-beep", {}),  # audio
    ("media-stats", {"numbers": [1, 2, 3.5]}),  # structuredContent, annotations, _meta
    ("media-fail", {"reason": "on purpose"}),  # isError
    ("media-resource_link", {}),  # resource_link
    ("test_embedded_resource", {}),  # embedded resource
    ("test_multiple_content_types", {}),  # text + image + resource
    ("test_simple_text", {}),
    ("lab-echo", {"text": "héllo \u2603"}),  # stdio upstream, non-ASCII
    ("nope-missing", {}),  # unknown tool: a JSON-RPC error
]


async def test_fast_path_answers_are_byte_for_byte_the_sdk_paths() -> None:
    async with (
        upstream_process(MEDIA_SERVER, "http") as media,
        upstream_process(CONFORMANCE_SERVER, "http") as conformance,
        running_gateway(
            {
                "media": {"transport": "http", "url": media},
                "conf": {"transport": "http", "url": conformance, "prefix": ""},
                "lab": lab(),
            }
        ) as gw,
        httpx2.AsyncClient(timeout=30) as http,
    ):
        fast = gw.gateway.fast
        assert fast is not None
        plain = await open_session(http, gw.url, {})
        with_roots = await open_session(http, gw.url, {"roots": {"listChanged": True}})
        for name, arguments in CALLS:
            before = fast.served
            quick = await call(http, gw.url, plain, name, arguments)
            assert fast.served == before + 1, f"{name} did not take the fast path"
            slow = await call(http, gw.url, with_roots, name, arguments)
            assert fast.served == before + 1, f"{name} took the fast path for a client with roots"
            assert quick.status_code == slow.status_code == 200
            assert quick.headers["content-type"] == slow.headers["content-type"] == "application/json"
            assert quick.content == slow.content, (name, quick.content[:300], slow.content[:300])
        stats = await call(http, gw.url, plain, "media-stats", {"numbers": [1, 2, 3.5]})
        assert b'"count":3' in stats.content  # an integer stays an integer
        shaped = stats.json()["result"]
        assert shaped["_meta"] == {"io.github.mcpgw.examples/computed-from": 3}
        assert shaped["content"][0]["annotations"]["audience"] == ["user"]
        image = await call(http, gw.url, plain, "media-render_badge", {"text": "x"})
        data = image.json()["result"]["content"][0]
        assert data["type"] == "image" and base64.b64decode(data["data"]).startswith(b"\x89PNG")


async def test_calls_the_fast_path_must_not_take_go_through_the_sdk() -> None:
    async with (
        running_gateway({"lab": lab()}) as gw,
        httpx2.AsyncClient(timeout=30) as http,
    ):
        fast = gw.gateway.fast
        assert fast is not None
        plain = await open_session(http, gw.url, {})
        cases = [
            # a progress token: the SDK path relays progress
            {"name": "lab-echo", "arguments": {"text": "x"}, "_meta": {"progressToken": "p1"}},
        ]
        for params in cases:
            body = {"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": params}
            answer = await http.post(gw.url, json=body, headers=plain)
            assert answer.status_code == 200, answer.text
        assert fast.served == 0
        # A client that declared sampling or elicitation, and a request without a protocol version header.
        for capabilities in ({"sampling": {}}, {"elicitation": {}}):
            session = await open_session(http, gw.url, capabilities)
            assert (await call(http, gw.url, session, "lab-echo", {"text": "x"})).status_code == 200
        unversioned = {k: v for k, v in plain.items() if k != "mcp-protocol-version"}
        assert (await call(http, gw.url, unversioned, "lab-echo", {"text": "x"})).status_code == 200
        assert fast.served == 0
        # Someone else's session id: the SDK's answer (404), not a call.
        stranger = {**plain, "mcp-session-id": "not-a-session"}
        assert (await call(http, gw.url, stranger, "lab-echo", {"text": "x"})).status_code == 404
        assert fast.served == 0
        assert (await call(http, gw.url, plain, "lab-echo", {"text": "x"})).json()["result"]["content"][0][
            "text"
        ] == "x"
        assert fast.served == 1


async def test_a_log_message_before_the_answer_makes_the_answer_a_stream() -> None:
    async with (
        running_gateway({"lab": lab()}) as gw,
        httpx2.AsyncClient(timeout=30) as http,
    ):
        plain = await open_session(http, gw.url, {})
        answer = await call(http, gw.url, plain, "lab-log", {"level": "warning", "message": "disk almost full"})
        assert answer.headers["content-type"] == "text/event-stream"
        events = [line[6:] for line in answer.text.splitlines() if line.startswith("data: ")]
        assert '"notifications/message"' in events[0] and "disk almost full" in events[0]
        assert '"result"' in events[-1] and '"id":7' in events[-1]
        assert gw.gateway.fast is not None and gw.gateway.fast.served == 1


async def test_the_fast_path_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCPGW_FAST_PATH", "off")
    async with running_gateway({"lab": lab()}) as gw, httpx2.AsyncClient(timeout=30) as http:
        assert gw.gateway.fast is None
        plain = await open_session(http, gw.url, {})
        assert (await call(http, gw.url, plain, "lab-echo", {"text": "x"})).json()["result"]["content"][0][
            "text"
        ] == "x"
    monkeypatch.delenv("MCPGW_FAST_PATH")
    async with running_gateway({"lab": lab()}, fast_tool_calls=False) as gw:
        assert gw.gateway.fast is None


async def list_tools(
    http: httpx2.AsyncClient, url: str, headers: dict[str, str], cursor: str | None = None
) -> httpx2.Response:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": "l1", "method": "tools/list"}
    if cursor is not None:
        body["params"] = {"cursor": cursor}
    return await http.post(url, json=body, headers=headers)


async def test_tool_lists_come_from_the_views_cached_page_and_follow_the_view() -> None:
    async with (
        running_gateway({"lab": lab()}, auth={"enforce_auth_on_inference": True}, page_size=3) as gw,
        httpx2.AsyncClient(timeout=30) as http,
    ):
        fast = gw.gateway.fast
        store = gw.gateway.store
        assert fast is not None and store is not None
        record, key = await store.create_virtual_key("lists", mcp_configs={"lab": ["*"]})
        await gw.gateway.sync()
        session = await keyed_session(http, gw.url, key)
        # The first list registers the session for list_changed: the SDK path answers it.
        first = await list_tools(http, gw.url, session)
        assert fast.listed == 0 and first.status_code == 200
        pages = [first]
        cursor = result_of(first).get("nextCursor")
        while cursor is not None:
            pages.append(await list_tools(http, gw.url, session, cursor))
            cursor = result_of(pages[-1]).get("nextCursor")
        assert fast.listed == len(pages) - 1 >= 1  # later pages: from the cache, on the fast path
        again = await list_tools(http, gw.url, session)
        assert fast.listed == len(pages)
        assert again.content == first.content  # same bytes from the fast path as from the SDK path
        assert again.headers["content-type"] == first.headers["content-type"] == "text/event-stream"
        names = [tool["name"] for page in pages for tool in result_of(page)["tools"]]
        assert len(names) > 3 and len(set(names)) == len(names) and "lab-echo" in names
        # The view changes (the key is narrowed): the next list shows it, from a new cached page.
        await store.update_virtual_key(record.id, mcp_configs={"lab": ["echo"]})
        await gw.gateway.sync()
        narrowed = await list_tools(http, gw.url, session)
        assert [tool["name"] for tool in result_of(narrowed)["tools"]] == ["lab-echo"]
        assert fast.listed == len(pages) + 1
        # An unknown cursor: the SDK's own error, not a cached page.
        bad = await list_tools(http, gw.url, session, "bm9wZQ==")
        assert event_of(bad)["error"]["code"] == -32602


def event_of(response: httpx2.Response) -> dict[str, Any]:
    """The one message of an SSE answer."""
    events = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
    assert len(events) == 1, response.text
    message: dict[str, Any] = json.loads(events[0])
    return message


def result_of(response: httpx2.Response) -> dict[str, Any]:
    result: dict[str, Any] = event_of(response)["result"]
    return result


async def keyed_session(http: httpx2.AsyncClient, url: str, key: str) -> dict[str, str]:
    auth = {"authorization": f"Bearer {key}"}
    hello = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {"protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    opened = await http.post(url, json=hello, headers={**ACCEPT, **auth})
    assert opened.status_code == 200, opened.text
    headers = {**ACCEPT, **auth, "mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": VERSION}
    done = await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    assert done.status_code == 202
    return headers
