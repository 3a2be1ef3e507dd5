"""The `/mcp` fast path for plain tools/call (`http/fast_calls.py`): which calls take it, and that they
get exactly the bytes the SDK path would send.

Raw HTTP sessions (so the bytes can be compared); the same call with a progress token in `_meta`
takes the SDK path (the tools compared report no progress, so their answers are the same).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx2
import pytest

from mcp_gateway.http import fast_channel
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
    http: httpx2.AsyncClient,
    url: str,
    headers: dict[str, str],
    name: str,
    arguments: dict[str, Any],
    meta: dict[str, Any] | None = None,
) -> httpx2.Response:
    params: dict[str, Any] = {"name": name, "arguments": arguments}
    if meta is not None:
        params["_meta"] = meta
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}
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
    ):
        upstreams = {
            "media": {"transport": "http", "url": media},
            "conf": {"transport": "http", "url": conformance, "prefix": ""},
            "lab": lab(),
        }
        async with (
            running_gateway(upstreams) as gw,
            running_gateway(upstreams, fast_tool_calls=False) as sdk_gw,
            httpx2.AsyncClient(timeout=30) as http,
        ):
            fast = gw.gateway.fast
            assert fast is not None and sdk_gw.gateway.fast is None
            plain = await open_session(http, gw.url, {})
            other = await open_session(http, sdk_gw.url, {})
            for name, arguments in CALLS:
                before = fast.served
                quick = await call(http, gw.url, plain, name, arguments)
                assert fast.served == before + 1, f"{name} did not take the fast path"
                slow = await call(http, sdk_gw.url, other, name, arguments)
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
            # With a progress token (as Claude Code sends one): progress on the call's stream, the same
            # events on both paths, the client's token and the upstream's numbers.
            before = fast.served
            streamed = await call(http, gw.url, plain, "lab-progress", {"steps": 3}, meta={"progressToken": "t-1"})
            assert fast.served == before + 1
            streamed_sdk = await call(
                http, sdk_gw.url, other, "lab-progress", {"steps": 3}, meta={"progressToken": "t-1"}
            )
            for answer in (streamed, streamed_sdk):
                assert answer.headers["content-type"] == "text/event-stream"
            assert sse_messages(streamed) == sse_messages(streamed_sdk)
            progress = [m["params"] for m in sse_messages(streamed) if m.get("method") == "notifications/progress"]
            assert [p["progress"] for p in progress] == [1, 2, 3] and {p["progressToken"] for p in progress} == {"t-1"}


def sse_messages(response: httpx2.Response) -> list[dict[str, Any]]:
    return [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]


async def test_calls_the_fast_path_must_not_take_go_through_the_sdk() -> None:
    async with (
        running_gateway({"lab": lab()}) as gw,
        httpx2.AsyncClient(timeout=30) as http,
    ):
        fast = gw.gateway.fast
        assert fast is not None
        plain = await open_session(http, gw.url, {})
        # A malformed progress token: the SDK decides what it means (it ignores it), not the fast path.
        bad = await call(http, gw.url, plain, "lab-echo", {"text": "x"}, meta={"progressToken": True})
        assert bad.status_code == 200
        assert fast.served == 0
        # A request without a protocol version header.
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
        # Clients that declared sampling, elicitation or roots take it too (questions ride the call's stream).
        for capabilities in ({"sampling": {}}, {"elicitation": {}}, {"roots": {}}):
            session = await open_session(http, gw.url, capabilities)
            assert (await call(http, gw.url, session, "lab-echo", {"text": "x"})).status_code == 200
        assert fast.served == 4


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


async def ask_and_answer(
    http: httpx2.AsyncClient, url: str, headers: dict[str, str], name: str, reply: dict[str, Any], meta: Any = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Call `name` and answer what the upstream asks the client on the call's stream with `reply` (a result),
    as a client does: a POST of the JSON-RPC response. Returns the questions asked and the call's answer."""
    params: dict[str, Any] = {"name": name, "arguments": {}}
    if meta is not None:
        params["_meta"] = meta
    body = {"jsonrpc": "2.0", "id": 21, "method": "tools/call", "params": params}
    asked: list[dict[str, Any]] = []
    async with http.stream("POST", url, json=body, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            if "method" in message and "id" in message:  # a question for the client
                asked.append(message)
                answer = {"jsonrpc": "2.0", "id": message["id"], "result": reply}
                accepted = await http.post(url, json=answer, headers=headers)
                assert accepted.status_code == 202, accepted.text
            elif message.get("id") == 21:
                return asked, message
    raise AssertionError("the call's stream ended without its answer")


async def test_questions_from_the_upstream_ride_the_fast_calls_stream_and_the_answer_comes_back() -> None:
    async with (
        running_gateway({"lab": lab()}) as gw,
        running_gateway({"lab": lab()}, fast_tool_calls=False) as sdk_gw,
        httpx2.AsyncClient(timeout=30) as http,
    ):
        fast = gw.gateway.fast
        assert fast is not None
        roots = {"roots": [{"uri": "file:///work/project", "name": "project"}]}
        with_roots = await open_session(http, gw.url, {"roots": {"listChanged": True}})
        asked, answer = await ask_and_answer(http, gw.url, with_roots, "lab-ask_roots", roots)
        assert fast.served == 1  # a client with roots takes the fast path
        assert [q["method"] for q in asked] == ["roots/list"]
        assert answer["result"]["content"][0]["text"] == "file:///work/project"
        assert not fast.answers  # nothing left waiting
        # The same through the SDK path: the same question, the same answer.
        sdk_roots = await open_session(http, sdk_gw.url, {"roots": {"listChanged": True}})
        asked_sdk, answer_sdk = await ask_and_answer(http, sdk_gw.url, sdk_roots, "lab-ask_roots", roots)
        assert [q["method"] for q in asked_sdk] == ["roots/list"]
        assert answer_sdk["result"] == answer["result"]
        # A client that declared no roots is not asked: the upstream hears the refusal, on both paths.
        plain = await open_session(http, gw.url, {})
        sdk_plain = await open_session(http, sdk_gw.url, {})
        refused = (await call(http, gw.url, plain, "lab-ask_roots", {})).json()["result"]
        refused_sdk = (await call(http, sdk_gw.url, sdk_plain, "lab-ask_roots", {})).json()["result"]
        assert refused["isError"] and "roots/list failed" in refused["content"][0]["text"]
        assert refused_sdk["isError"] and "roots/list failed" in refused_sdk["content"][0]["text"]
        # An answer nobody is waiting for is not taken here: the SDK answers it.
        stray = await http.post(gw.url, json={"jsonrpc": "2.0", "id": "mcpgw-fast-999", "result": roots}, headers=plain)
        assert stray.status_code in (202, 400, 404)
        assert not fast.answers


async def test_a_long_call_gets_keep_alive_comments_then_its_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """As the SDK's streams: a comment every interval (15 s; shortened here), so idle timeouts never cut a call."""
    monkeypatch.setattr(fast_channel, "KEEP_ALIVE_SECONDS", 0.2)
    async with running_gateway({"lab": lab()}) as gw, httpx2.AsyncClient(timeout=30) as http:
        fast = gw.gateway.fast
        assert fast is not None
        plain = await open_session(http, gw.url, {})
        slow = await call(http, gw.url, plain, "lab-slow", {"seconds": 1})
        assert fast.served == 1
        assert slow.headers["content-type"] == "text/event-stream"
        lines = slow.text.splitlines()
        assert sum(line.startswith(": ping") for line in lines) >= 3
        assert json.loads(next(line[5:] for line in lines if line.startswith("data:")))["result"]["content"][0] == {
            "type": "text",
            "text": "done",
        }
        quick = await call(http, gw.url, plain, "lab-echo", {"text": "x"})  # a quick call stays plain JSON
        assert quick.headers["content-type"] == "application/json"
