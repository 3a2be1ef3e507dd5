"""Numbers keep the JSON form the upstream wrote, on every path through the gateway.

The upstream is the reference server in TypeScript (npm `@modelcontextprotocol/server-everything`),
whose integers no Python model has touched: `annotations.priority: 1` in a result and progress
`{"progress": 1, "total": 2}`. Through the gateway they used to arrive as `1.0` / `2.0` (the SDK's
typed models re-serialised them). Checked over raw HTTP, so the JSON text itself is compared: the
fast path and the SDK path, a streamable-HTTP and a stdio upstream, against the upstream directly.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from tests.conftest import NPM_BIN, ROOT, RunningGateway, free_port, listening_process, running_gateway
from tests.test_fast_calls import call, open_session

pytestmark = pytest.mark.anyio

NODE = NPM_BIN / "node"
EVERYTHING = (
    ROOT / ".cache" / "npm" / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
)
ANNOTATED = ("get-annotated-message", {"messageType": "error", "includeImage": True})


def require_everything() -> None:
    if not (NODE.exists() and EVERYTHING.exists()):
        pytest.fail("npm peers are not installed (server-everything missing): run `make npm-peers`")


@contextlib.asynccontextmanager
async def everything_over_http() -> AsyncIterator[str]:
    port = free_port()
    async with listening_process([NODE, EVERYTHING, "streamableHttp"], port, {"PORT": str(port)}):
        yield f"http://127.0.0.1:{port}/mcp"


@contextlib.asynccontextmanager
async def everything_behind_gateway() -> AsyncIterator[tuple[str, RunningGateway, httpx2.AsyncClient]]:
    """server-everything over HTTP, and a gateway in front of it as `web` (HTTP) and `local` (stdio)."""
    require_everything()
    async with (
        everything_over_http() as upstream,
        gateway_for(upstream) as gw,
        httpx2.AsyncClient(timeout=30) as http,
    ):
        yield upstream, gw, http


def gateway_for(upstream: str, fast: bool = True) -> contextlib.AbstractAsyncContextManager[RunningGateway]:
    upstreams = {
        "web": {"transport": "http", "url": upstream},
        "local": {"transport": "stdio", "command": str(NODE), "args": [str(EVERYTHING), "stdio"]},
    }
    return running_gateway(upstreams, fast_tool_calls=fast)


def messages_of(response: httpx2.Response) -> list[dict[str, Any]]:
    """The JSON-RPC messages of an answer, JSON or SSE, in order (each parsed from its own text)."""
    if response.headers["content-type"].startswith("application/json"):
        return [json.loads(response.content)]
    return [
        json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:") and line[5:].strip()
    ]


def answer_of(response: httpx2.Response) -> dict[str, Any]:
    found = [m for m in messages_of(response) if "result" in m or "error" in m]
    assert len(found) == 1, response.text
    return found[0]


def number_text(value: Any) -> str:
    """A value as JSON text: `1` and `1.0` differ here (they compare equal in Python)."""
    return json.dumps(value, sort_keys=True)


async def test_results_keep_integers_on_both_paths_and_transports() -> None:
    async with everything_behind_gateway() as (upstream, gw, http), contextlib.AsyncExitStack() as stack:
        fast = gw.gateway.fast
        assert fast is not None
        direct = await open_session(http, upstream, {})
        sent = answer_of(await call(http, upstream, direct, *ANNOTATED))["result"]
        expected = sent["content"]
        assert type(expected[0]["annotations"]["priority"]) is int  # the upstream writes `1`
        plain = await open_session(http, gw.url, {})
        sdk_gw = await stack.enter_async_context(gateway_for(upstream, fast=False))
        via_sdk = await open_session(http, sdk_gw.url, {})
        for prefix in ("web", "local"):
            name = f"{prefix}-{ANNOTATED[0]}"
            before = fast.served
            quick = answer_of(await call(http, gw.url, plain, name, ANNOTATED[1]))
            assert fast.served == before + 1
            slow = answer_of(await call(http, sdk_gw.url, via_sdk, name, ANNOTATED[1]))
            for label, got in (("fast path", quick), ("SDK path", slow)):
                assert number_text(got["result"]["content"]) == number_text(expected), (prefix, label, got)
                # Same protocol version on both hops: the result exactly as the upstream sent it (key order too).
                assert json.dumps(got["result"]) == json.dumps(sent), (prefix, label)
            # A client on an older version: shaped for that version by the SDK's models, integers kept.
            older = await open_session(http, gw.url, {}, version="2025-06-18")
            shaped = answer_of(await call(http, gw.url, older, name, ANNOTATED[1]))["result"]
            assert number_text(shaped["content"]) == number_text(expected)
            assert json.dumps(shaped) != json.dumps(sent)  # re-serialised (model key order), not passed through


async def test_progress_keeps_integers_and_comes_before_the_answer() -> None:
    async with everything_behind_gateway() as (_upstream, gw, http):
        session = await open_session(http, gw.url, {})
        for prefix in ("web", "local"):
            body = {
                "jsonrpc": "2.0",
                "id": 11,
                "method": "tools/call",
                "params": {
                    "name": f"{prefix}-trigger-long-running-operation",
                    "arguments": {"duration": 0.3, "steps": 3},
                    "_meta": {"progressToken": "mine"},
                },
            }
            response = await http.post(gw.url, json=body, headers=session)
            assert response.status_code == 200, response.text
            messages = messages_of(response)
            progress = [m["params"] for m in messages if m.get("method") == "notifications/progress"]
            assert [number_text(p) for p in progress] == [
                number_text({"progressToken": "mine", "progress": step, "total": 3}) for step in (1, 2, 3)
            ], (prefix, response.text)
            assert "result" in messages[-1] and messages[-1]["id"] == 11, (prefix, response.text)
            assert "Steps: 3" in messages[-1]["result"]["content"][0]["text"]
