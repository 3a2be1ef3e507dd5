"""Hardening of /mcp: per-caller limits, body size, JSON-RPC errors, Host/Origin, sessions, credentials.

Session binding to the identity is covered in test_governance.py.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx2
import pytest
from mcp import MCPError

from mcp_gateway.config import DEFAULT_MAX_BODY_BYTES, GatewayConfig, LimitsSettings, ServerSettings
from mcp_gateway.http.ratelimit import LIMIT_EXCEEDED, ConcurrentCalls, RequestRate
from mcp_gateway.identity import hash_key
from tests.conftest import LAB_SERVER, RunningGateway, lab, mcp_client, running_gateway, text_of, upstream_process

pytestmark = pytest.mark.anyio

ACCEPT = {"Accept": "application/json, text/event-stream"}
ENFORCED = {"enforce_auth_on_inference": True}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}


async def post(gw: RunningGateway, body: Any = INITIALIZE, **headers: str) -> httpx2.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with httpx2.AsyncClient(timeout=30) as http:
        return await http.post(
            gw.url, content=content, headers={**ACCEPT, "Content-Type": "application/json", **headers}
        )


async def new_key(gw: RunningGateway, grants: dict[str, list[str]], user_id: str | None = None) -> str:
    store = gw.gateway.store
    assert store is not None
    if user_id:
        await store.upsert_user(user_id)
    _, key = await store.create_virtual_key("test", user_id=user_id, mcp_configs=grants)
    await gw.gateway.sync()
    return key


async def initialize_error(gw: RunningGateway, headers: dict[str, str]) -> MCPError:
    """The error the SDK client raises when the gateway refuses its session."""
    error: MCPError | None = None
    try:
        async with mcp_client(gw.url, headers=headers):
            pass
    except* MCPError as group:
        while isinstance(group, BaseExceptionGroup):  # the SDK nests task-group errors
            group = group.exceptions[0]
        error = group
    assert error is not None, "the client was served"
    return error


def error_of(response: httpx2.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert body["jsonrpc"] == "2.0" and "id" in body
    error: dict[str, Any] = body["error"]
    return error


# --- request rate -------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    clock = FakeClock()
    rate = RequestRate(6, clock=clock)  # one token every 10 s
    assert [rate.acquire("vk:a") for _ in range(6)] == [0.0] * 6
    assert rate.acquire("vk:a") == pytest.approx(10.0)
    assert rate.acquire("vk:b") == 0.0, "callers have their own buckets"
    clock.now += 4
    assert rate.acquire("vk:a") == pytest.approx(6.0)
    clock.now += 6
    assert rate.acquire("vk:a") == 0.0
    assert rate.acquire("vk:a") == pytest.approx(10.0)


def test_idle_buckets_are_evicted_and_memory_stays_bounded() -> None:
    clock = FakeClock()
    rate = RequestRate(60, clock=clock, max_callers=100)
    for n in range(50):
        rate.acquire(f"session:{n}")
    clock.now += 61  # every bucket is full again: forgetting them changes nothing
    rate.acquire("vk:new")
    assert len(rate) == 1
    for n in range(1000):
        rate.acquire(f"session:{n}")
    assert len(rate) == 100


async def test_requests_beyond_the_rate_get_429_with_retry_after_and_a_json_rpc_error() -> None:
    async with running_gateway({"lab": lab()}, limits={"requests_per_minute": 3}) as gw:
        answers = [await post(gw, **{"x-bf-mcp-session-id": "alice"}) for _ in range(4)]
        other = await post(gw, **{"x-bf-mcp-session-id": "bob"})
        anonymous = await post(gw)
        sdk_error = await initialize_error(gw, {"x-bf-mcp-session-id": "alice"})
        session_id = answers[0].headers["mcp-session-id"]
        async with httpx2.AsyncClient() as http:
            ended = await http.delete(
                gw.url, headers={"Mcp-Session-Id": session_id, "x-bf-mcp-session-id": "alice", **ACCEPT}
            )
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    refused = answers[3]
    assert 1 <= int(refused.headers["retry-after"]) <= 20
    error = error_of(refused)
    assert error["code"] == LIMIT_EXCEEDED
    assert "limits.requests_per_minute" in error["message"]
    assert error["data"]["limit"] == "requests_per_minute" and error["data"]["value"] == 3
    assert "rate limit exceeded: at most 3 requests per minute" in sdk_error.error.message
    assert sdk_error.error.code == LIMIT_EXCEEDED
    assert other.status_code == 200 and anonymous.status_code == 200, "other callers have their own budget"
    assert ended.status_code == 200, "ending a session is never refused"


async def test_the_rate_is_per_user_across_their_keys_and_per_key_otherwise() -> None:
    async with running_gateway({"lab": lab()}, auth=ENFORCED, limits={"requests_per_minute": 2}) as gw:
        first = await new_key(gw, {"lab": ["echo"]}, user_id="carol")
        second = await new_key(gw, {"lab": ["echo"]}, user_id="carol")
        lone = await new_key(gw, {"lab": ["echo"]})
        carol = [(await post(gw, **{"x-bf-vk": key})).status_code for key in (first, second, first)]
        lone_answers = [(await post(gw, **{"authorization": f"Bearer {lone}"})).status_code for _ in range(3)]
    assert carol == [200, 200, 429]
    assert lone_answers == [200, 200, 429]


# --- concurrent calls ---------------------------------------------------------------------------


ALICE = f"session:{hash_key('alice')[:32]}"
"""The identity key of a caller sending `x-bf-mcp-session-id: alice`."""


def call_limiter(gw: RunningGateway) -> ConcurrentCalls:
    return next(m for m in gw.gateway.sessions.app.middleware if isinstance(m, ConcurrentCalls))


async def wait_running(limiter: ConcurrentCalls, caller: str, count: int) -> None:
    with anyio.fail_after(10):
        while limiter.running(caller) != count:
            await anyio.sleep(0.01)


async def test_concurrent_calls_beyond_the_limit_fail_at_once_with_a_clear_error() -> None:
    async with running_gateway({"lab": lab()}, limits={"concurrent_calls": 2}) as gw:
        limiter = call_limiter(gw)
        results: list[str] = []
        async with (
            mcp_client(gw.url, headers={"x-bf-mcp-session-id": "alice"}) as alice,
            mcp_client(gw.url, headers={"x-bf-mcp-session-id": "bob"}) as bob,
        ):

            async def slow() -> None:
                results.append(text_of(await alice.call_tool("lab-slow", {"seconds": 1.0})))

            async with anyio.create_task_group() as tg:
                tg.start_soon(slow)
                tg.start_soon(slow)
                await wait_running(limiter, ALICE, 2)
                with anyio.fail_after(5), pytest.raises(MCPError, match="too many concurrent tool calls") as refused:
                    await alice.call_tool("lab-echo", {"text": "third"})
                assert refused.value.error.code == LIMIT_EXCEEDED
                assert refused.value.error.data == {"limit": "concurrent_calls", "value": 2}
                assert text_of(await bob.call_tool("lab-echo", {"text": "bob"})) == "bob", "bob has his own budget"
                assert await alice.list_tools(), "only tools/call counts"
            await wait_running(limiter, ALICE, 0)
            assert text_of(await alice.call_tool("lab-echo", {"text": "again"})) == "again"
    assert results == ["done", "done"]


# --- body size ----------------------------------------------------------------------------------


async def test_body_limit_is_configurable_and_answers_413() -> None:
    assert ServerSettings().max_body_bytes == DEFAULT_MAX_BODY_BYTES == 4 * 1024 * 1024
    limit = 64 * 1024
    big = {**INITIALIZE, "params": {**INITIALIZE["params"], "padding": "x" * (limit + 1)}}

    async def chunks() -> AsyncIterator[bytes]:
        data = json.dumps(big).encode()
        for start in range(0, len(data), 8192):
            yield data[start : start + 8192]

    async with running_gateway({"lab": lab()}, max_body_bytes=limit) as gw, httpx2.AsyncClient() as http:
        assert gw.gateway.sessions.max_request_body_size == limit
        declared = await post(gw, big)
        streamed = await http.post(gw.url, content=chunks(), headers={**ACCEPT, "Content-Type": "application/json"})
        async with mcp_client(gw.url) as client:
            fits = text_of(await client.call_tool("lab-echo", {"text": "y" * (limit // 2)}))
    for response in (declared, streamed):
        assert response.status_code == 413
        assert f"at most {limit} bytes" in error_of(response)["message"]
    assert "transfer-encoding" not in declared.request.headers
    assert "content-length" not in streamed.request.headers
    assert fits == "y" * (limit // 2)


# --- JSON-RPC errors ----------------------------------------------------------------------------

MALFORMED: list[tuple[str, bytes, int]] = [
    ("truncated", b'{"jsonrpc": "2.0", "id": 1, "meth', -32700),
    ("not utf-8", b"\xff\xfe{}", -32700),
    ("empty", b"", -32700),
    ("too deep", b"[" * 10_000 + b"]" * 10_000, -32700),
    ("batch", json.dumps([INITIALIZE, INITIALIZE]).encode(), -32600),
    ("empty batch", b"[]", -32600),
    ("scalar", b"42", -32600),
    ("no jsonrpc", b'{"id": 1, "method": "ping"}', -32600),
    ("jsonrpc 1.0", b'{"jsonrpc": "1.0", "id": 1, "method": "ping"}', -32600),
    ("method not a string", b'{"jsonrpc": "2.0", "id": 1, "method": 7}', -32600),
    ("id null", b'{"jsonrpc": "2.0", "id": null, "method": "ping"}', -32600),
    ("id bool", b'{"jsonrpc": "2.0", "id": true, "method": "ping"}', -32600),
    ("id float", b'{"jsonrpc": "2.0", "id": 1.5, "method": "ping"}', -32600),
    ("params array", b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1]}', -32600),
    ("neither method nor id", b'{"jsonrpc": "2.0", "params": {}}', -32600),
    ("result not object", b'{"jsonrpc": "2.0", "id": 1, "result": 3}', -32600),
    ("error without code", b'{"jsonrpc": "2.0", "id": 1, "error": {"message": "x"}}', -32600),
]


async def test_malformed_tool_call_params_name_the_field() -> None:
    async with running_gateway({"lab": lab()}) as gw:
        opened = await post(gw)
        session = {"Mcp-Session-Id": opened.headers["mcp-session-id"], "MCP-Protocol-Version": "2025-06-18"}
        await post(gw, {"jsonrpc": "2.0", "method": "notifications/initialized"}, **session)
        answers = [
            await post(gw, {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": params}, **session)
            for params in ({"arguments": {}}, {"name": 5, "arguments": "x"})
        ]
    messages = [json.loads(line[5:]) for a in answers for line in a.text.splitlines() if line.startswith("data:")]
    messages += [a.json() for a in answers if a.headers["content-type"].startswith("application/json")]
    errors = sorted(m["error"]["message"] for m in messages)
    assert errors == [
        "Invalid params for tools/call: params.arguments: Input should be a valid dictionary; "
        "params.name: Input should be a valid string",
        "Invalid params for tools/call: params.name: Field required",
    ], errors


async def test_an_unknown_protocol_version_header_is_named_with_the_versions_spoken() -> None:
    async with running_gateway({"lab": lab()}) as gw:
        listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        answer = await post(gw, listing, **{"MCP-Protocol-Version": "2099-01-01"})
        ok = await post(gw, **{"MCP-Protocol-Version": "2025-06-18"})
    assert answer.status_code == 400
    message = error_of(answer)["message"]
    assert message.startswith("Unsupported MCP-Protocol-Version '2099-01-01': this gateway speaks ")
    assert "2025-11-25" in message and "2026-07-28" in message and "_meta" not in message
    assert ok.status_code == 200


@pytest.mark.parametrize("protocol_version", ["2025-11-25", "2026-07-28"])
async def test_malformed_messages_get_json_rpc_errors_with_400(protocol_version: str) -> None:
    async with running_gateway({"lab": lab()}) as gw:
        opened = await post(gw)
        session = {"Mcp-Session-Id": opened.headers["mcp-session-id"], "MCP-Protocol-Version": protocol_version}
        answers = {name: await post(gw, body, **session) for name, body, _ in MALFORMED}
        without_session = await post(gw, b"[]")
    for name, _, code in MALFORMED:
        assert answers[name].status_code == 400, (name, answers[name].text)
        assert error_of(answers[name])["code"] == code, name
    assert error_of(answers["params array"]) == {
        "code": -32600,
        "message": 'Invalid Request: the "params" must be an object',
    }
    assert answers["params array"].json()["id"] == 1, "a readable id is echoed"
    assert "batch" in error_of(answers["batch"])["message"]
    assert without_session.status_code == 400 and error_of(without_session)["code"] == -32600


# --- Host / Origin ------------------------------------------------------------------------------


async def test_loopback_binds_check_host_and_origin_by_default() -> None:
    assert ServerSettings().host == "127.0.0.1"
    async with running_gateway({"lab": lab()}) as gw:
        port = gw.base_url.rsplit(":", 1)[1]
        plain = await post(gw)
        local_origin = await post(gw, Origin=f"http://localhost:{port}")
        bad_host = await post(gw, Host="evil.example.test")
        rebound = await post(gw, Host=f"evil.example.test:{port}", Origin="http://evil.example.test")
        bad_origin = await post(gw, Origin="https://evil.example.test")
    assert plain.status_code == 200 and local_origin.status_code == 200
    assert bad_host.status_code == 421 and rebound.status_code == 421
    assert bad_origin.status_code == 403


async def test_configured_host_and_origin_lists_replace_the_loopback_defaults() -> None:
    async with running_gateway(
        {"lab": lab()}, allowed_hosts=["mcp.example.test"], allowed_origins=["https://app.example.test"]
    ) as gw:
        allowed = await post(gw, Host="mcp.example.test", Origin="https://app.example.test")
        loopback_host = await post(gw)
        other_origin = await post(gw, Host="mcp.example.test", Origin="http://localhost:3000")
    assert allowed.status_code == 200
    assert loopback_host.status_code == 421
    assert other_origin.status_code == 403


async def test_foreign_origins_are_refused_before_they_use_up_a_callers_budget() -> None:
    async with running_gateway({"lab": lab()}, limits={"requests_per_minute": 2}) as gw:
        foreign = [(await post(gw, Origin="https://evil.example.test")).status_code for _ in range(4)]
        local = [(await post(gw)).status_code for _ in range(2)]
    assert foreign == [403] * 4
    assert local == [200, 200]


# --- sessions -----------------------------------------------------------------------------------


async def test_session_ids_are_random_uuid4_and_unknown_ids_get_404() -> None:
    async with running_gateway({"lab": lab()}) as gw:
        ids = [(await post(gw)).headers["mcp-session-id"] for _ in range(5)]
        guessed = await post(
            gw,
            {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
            **{"Mcp-Session-Id": uuid.uuid4().hex, "MCP-Protocol-Version": "2025-11-25"},
        )
    assert len(set(ids)) == 5
    for session_id in ids:
        assert re.fullmatch(r"[0-9a-f]{32}", session_id)
        assert uuid.UUID(hex=session_id).version == 4, "122 random bits from os.urandom"
    assert guessed.status_code == 404


async def test_a_get_stream_asking_to_resume_gets_a_fresh_stream_not_a_500() -> None:
    """Found by test_fuzz: the SDK without an event store answers `Last-Event-ID` with nothing."""
    async with running_gateway({"lab": lab()}) as gw, httpx2.AsyncClient(timeout=10) as http:
        session = {"Mcp-Session-Id": (await post(gw)).headers["mcp-session-id"], "MCP-Protocol-Version": "2025-11-25"}
        headers = {"Accept": "text/event-stream", "Last-Event-ID": "0", **session}
        async with http.stream("GET", gw.url, headers=headers) as stream:
            status, content_type = stream.status_code, stream.headers["content-type"]
    assert status == 200 and content_type.startswith("text/event-stream")


# --- credentials --------------------------------------------------------------------------------


async def test_client_credentials_never_reach_the_upstream_but_its_own_headers_do() -> None:
    async with upstream_process(LAB_SERVER) as url:
        upstream = {
            "transport": "http",
            "url": url,
            "headers": {"Authorization": "Bearer upstream-own-token", "X-Upstream-Token": "upstream-static"},
        }
        async with running_gateway({"lab": upstream}, auth=ENFORCED) as gw:
            key = await new_key(gw, {"lab": ["whoami"]})
            client_secrets = {
                "x-bf-vk": key,
                "Authorization": f"Bearer {key}",
                "X-Api-Key": key,
                "Cookie": "session=cookie-secret",
                "x-bf-mcp-session-id": "client-session-secret",
            }
            async with mcp_client(gw.url, headers=client_secrets) as client:
                seen_text = text_of(await client.call_tool("lab-whoami", {}))
    seen = json.loads(seen_text)
    assert seen["authorization"] == "Bearer upstream-own-token"
    assert seen["x-upstream-token"] == "upstream-static"
    for name in ("x-bf-vk", "x-api-key", "cookie", "x-bf-mcp-session-id"):
        assert name not in seen
    for secret in (key, "cookie-secret", "client-session-secret"):
        assert secret not in seen_text


def test_limits_config_section() -> None:
    config = GatewayConfig.model_validate({"limits": {"requests_per_minute": 600, "concurrent_calls": 8}})
    assert config.limits == LimitsSettings(requests_per_minute=600, concurrent_calls=8)
    assert GatewayConfig.model_validate({"limits": None}).limits == LimitsSettings()
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        LimitsSettings(requests_per_minute=0)
