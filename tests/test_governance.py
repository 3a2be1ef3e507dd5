"""Tool governance end to end: each identity mode and header form sees exactly its allowlist.

Runs on SQLite and on PostgreSQL (`store_url`), through real HTTP with the SDK client.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from mcp import MCPError

from tests.conftest import (
    NOTES_SERVER,
    RunningGateway,
    lab,
    mcp_client,
    running_gateway,
    stdio_upstream,
    text_of,
    tool_names,
)

pytestmark = pytest.mark.anyio

ENFORCED = {"enforce_auth_on_inference": True}
OPEN = {"enforce_auth_on_inference": False}
SIGNING_KEY = RSAKey.generate_key(2048, parameters={"kid": "sso"}, private=True)
ISSUER = "https://sso.example.test"


def upstreams(*, notes_global: bool = False) -> dict[str, Any]:
    return {"lab": lab(), "notes": {**stdio_upstream(NOTES_SERVER), "allow_on_all_virtual_keys": notes_global}}


@asynccontextmanager
async def gateway(store_url: str, auth: dict[str, Any], **kwargs: Any) -> AsyncIterator[RunningGateway]:
    async with running_gateway(kwargs.pop("ups", None) or upstreams(), auth=auth, database_url=store_url) as gw:
        yield gw


async def new_key(gw: RunningGateway, mcp_configs: dict[str, list[str]], user_id: str | None = None) -> tuple[str, str]:
    store = gw.gateway.store
    assert store is not None
    if user_id:
        await store.upsert_user(user_id)
    record, key = await store.create_virtual_key("test", user_id=user_id, mcp_configs=mcp_configs)
    await gw.gateway.sync()
    return record.id, key


async def visible(gw: RunningGateway, headers: dict[str, str]) -> set[str]:
    async with mcp_client(gw.url, headers=headers) as client:
        return set(tool_names(await client.list_tools()))


async def post_initialize(gw: RunningGateway, headers: dict[str, str]) -> httpx2.Response:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    async with httpx2.AsyncClient() as http:
        return await http.post(
            gw.url, json=body, headers={"Accept": "application/json, text/event-stream", **headers}, timeout=10
        )


@pytest.mark.parametrize("header", ["x-bf-vk", "authorization", "x-api-key"])
async def test_each_vk_header_form_sees_exactly_its_allowlist(store_url: str, header: str) -> None:
    async with gateway(store_url, ENFORCED) as gw:
        _, key = await new_key(gw, {"lab": ["echo", "tool_*"], "notes": ["get_note"]})
        value = f"Bearer {key}" if header == "authorization" else key
        seen = await visible(gw, {header: value})
        assert seen == {"lab-echo", "lab-tool_000", "lab-tool_001", "lab-tool_002", "notes-get_note"}
        async with mcp_client(gw.url, headers={header: value}) as client:
            assert text_of(await client.call_tool("lab-echo", {"text": "allowed"})) == "allowed"


async def test_a_hidden_tool_cannot_be_called_and_looks_like_a_missing_one(store_url: str) -> None:
    async with gateway(store_url, ENFORCED) as gw:
        _, key = await new_key(gw, {"lab": ["echo"]})
        async with mcp_client(gw.url, headers={"x-bf-vk": key}) as client:
            with pytest.raises(MCPError) as hidden:
                await client.call_tool("lab-whoami", {})
            with pytest.raises(MCPError) as missing:
                await client.call_tool("lab-no_such_tool", {})
            with pytest.raises(MCPError) as other_upstream:
                await client.call_tool("notes-get_note", {"title": "welcome"})
        assert hidden.value.error.code == missing.value.error.code == other_upstream.value.error.code
        assert hidden.value.error.message == "Unknown tool: lab-whoami"


async def test_deny_by_default_and_allow_on_all_virtual_keys(store_url: str) -> None:
    async with gateway(store_url, ENFORCED, ups=upstreams(notes_global=True)) as gw:
        _, nothing = await new_key(gw, {})
        _, explicit = await new_key(gw, {"notes": ["list_notes"]})
        _, hidden = await new_key(gw, {"notes": []})
        assert await visible(gw, {"x-bf-vk": nothing}) == {"notes-add_note", "notes-get_note", "notes-list_notes"}
        assert await visible(gw, {"x-bf-vk": explicit}) == {"notes-list_notes"}, "an explicit entry wins"
        assert await visible(gw, {"x-bf-vk": hidden}) == set()


async def test_prompts_and_resources_follow_the_grants(store_url: str) -> None:
    async with gateway(store_url, ENFORCED) as gw:
        _, key = await new_key(gw, {"lab": ["*"]})
        async with mcp_client(gw.url, headers={"x-bf-vk": key}) as client:
            prompts = [p.name for p in (await client.list_prompts()).prompts]
            resources = [str(r.uri) for r in (await client.list_resources()).resources]
            assert prompts and all(p.startswith("lab-") for p in prompts)
            assert resources and not any(r.startswith("notes://") for r in resources)
            with pytest.raises(MCPError):
                await client.get_prompt("notes-summarize_notes", {"style": "x"})
            with pytest.raises(MCPError):
                await client.read_resource("notes://index")


async def test_narrowing_headers_only_narrow(store_url: str) -> None:
    async with gateway(store_url, ENFORCED) as gw:
        _, key = await new_key(gw, {"lab": ["echo", "whoami"], "notes": ["*"]})
        only_notes = await visible(gw, {"x-bf-vk": key, "x-bf-mcp-include-clients": "notes"})
        assert only_notes == {"notes-add_note", "notes-get_note", "notes-list_notes"}
        one_tool = await visible(gw, {"x-bf-vk": key, "x-bf-mcp-include-tools": "lab-echo"})
        assert one_tool == {"lab-echo"}
        wildcard = await visible(gw, {"x-bf-vk": key, "x-bf-mcp-include-tools": "lab-*"})
        assert wildcard == {"lab-echo", "lab-whoami"}, "narrowing must not widen beyond the grant"
        async with mcp_client(gw.url, headers={"x-bf-vk": key, "x-bf-mcp-include-clients": "notes"}) as client:
            with pytest.raises(MCPError):
                await client.call_tool("lab-echo", {"text": "narrowed away"})


async def test_disabled_and_unknown_keys_get_401(store_url: str) -> None:
    async with gateway(store_url, ENFORCED) as gw:
        vk_id, key = await new_key(gw, {"lab": ["echo"]})
        assert (await post_initialize(gw, {"x-bf-vk": key})).status_code == 200
        store = gw.gateway.store
        assert store is not None
        await store.update_virtual_key(vk_id, active=False)
        await gw.gateway.sync()
        inactive = await post_initialize(gw, {"x-bf-vk": key})
        unknown = await post_initialize(gw, {"x-bf-vk": "sk-mcpgw-does-not-exist"})
    assert inactive.status_code == 401 and "virtual key is inactive" in inactive.text
    assert unknown.status_code == 401 and "virtual key not found" in unknown.text
    assert inactive.headers["www-authenticate"].startswith("Bearer")


async def test_session_mode_refused_when_enforced_and_scoped_to_globals_when_open(store_url: str) -> None:
    async with gateway(store_url, ENFORCED, ups=upstreams(notes_global=True)) as gw:
        refused = await post_initialize(gw, {"x-bf-mcp-session-id": "abc"})
        anonymous = await post_initialize(gw, {})
    assert refused.status_code == 401 and "enforce_auth_on_inference" in refused.text
    assert anonymous.status_code == 401 and "x-bf-vk" in anonymous.text
    async with gateway(store_url, OPEN, ups=upstreams(notes_global=True)) as gw:
        session = await visible(gw, {"x-bf-mcp-session-id": "my-laptop"})
        nobody = await visible(gw, {})
    assert session == nobody == {"notes-add_note", "notes-get_note", "notes-list_notes"}


async def test_sso_users_and_user_owned_keys_are_mode_user(store_url: str) -> None:
    jwks = {"keys": [SIGNING_KEY.as_dict(private=False)]}
    auth = {**ENFORCED, "jwt": {"issuer": ISSUER, "audience": "mcpgw", "jwks": jwks}}
    async with gateway(store_url, auth) as gw:
        store = gw.gateway.store
        assert store is not None
        await store.upsert_user("carol")
        await store.set_user_mcp_configs("carol", {"notes": ["get_note"]})
        await gw.gateway.sync()
        claims = {"iss": ISSUER, "aud": "mcpgw", "sub": "carol", "exp": int(time.time()) + 600}
        sso = jwt.encode({"alg": "RS256", "kid": "sso"}, claims, SIGNING_KEY)
        assert await visible(gw, {"authorization": f"Bearer {sso}"}) == {"notes-get_note"}
        bad = await post_initialize(gw, {"authorization": f"Bearer {sso[:-4]}AAAA"})
        assert bad.status_code == 401 and "SSO token rejected" in bad.text

        _, owned = await new_key(gw, {"lab": ["echo"]}, user_id="dave")
        async with mcp_client(gw.url, headers={"x-bf-vk": owned}) as client:
            await client.call_tool("lab-echo", {"text": "x"})
        audit = gw.gateway.audit
        assert audit is not None
        await audit.flush()
        events = await store.list_audit(limit=5)
    assert events[0].identity_mode == "user" and events[0].subject == "dave" and events[0].outcome == "ok"


async def test_sessions_are_bound_to_the_identity_that_created_them(store_url: str) -> None:
    async with gateway(store_url, ENFORCED) as gw:
        _, alice = await new_key(gw, {"lab": ["echo"]})
        _, mallory = await new_key(gw, {"lab": ["echo"]})
        created = await post_initialize(gw, {"x-bf-vk": alice})
        session_id = created.headers["mcp-session-id"]
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
        async with httpx2.AsyncClient() as http:
            stolen = await http.post(
                gw.url,
                json=listing,
                headers={
                    "Accept": "application/json, text/event-stream",
                    "Mcp-Session-Id": session_id,
                    "MCP-Protocol-Version": "2025-11-25",
                    "x-bf-vk": mallory,
                },
            )
    assert stolen.status_code == 404


async def test_grant_changes_reach_connected_clients_with_list_changed(store_url: str) -> None:
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    async with gateway(store_url, ENFORCED) as gw:
        vk_id, key = await new_key(gw, {"lab": ["echo"]})
        _, bystander = await new_key(gw, {"notes": ["*"]})
        bystander_changed = anyio.Event()

        async def on_bystander(message: Any) -> None:
            if isinstance(message, types.ToolListChangedNotification):
                bystander_changed.set()

        async with (
            mcp_client(gw.url, headers={"x-bf-vk": key}, message_handler=on_message) as client,
            mcp_client(gw.url, headers={"x-bf-vk": bystander}, message_handler=on_bystander) as other,
        ):
            assert tool_names(await client.list_tools()) == ["lab-echo"]
            await other.list_tools()
            store = gw.gateway.store
            assert store is not None
            await store.update_virtual_key(vk_id, mcp_configs={"lab": ["echo", "whoami"]})
            # No explicit sync: the gateway notices the store revision by itself (as for CLI changes).
            with anyio.fail_after(10):
                await changed.wait()
            assert set(tool_names(await client.list_tools())) == {"lab-echo", "lab-whoami"}
            assert not bystander_changed.is_set(), "a client whose view did not change must not be told"


async def test_audit_records_every_call_without_secrets(store_url: str) -> None:
    async with gateway(store_url, ENFORCED) as gw:
        vk_id, key = await new_key(gw, {"lab": ["echo", "crash"]})
        async with mcp_client(gw.url, headers={"x-bf-vk": key}) as client:
            await client.call_tool("lab-echo", {"text": "audited"})
            with pytest.raises(MCPError):
                await client.call_tool("lab-whoami", {})
        audit, store = gw.gateway.audit, gw.gateway.store
        assert audit is not None and store is not None
        await audit.flush()
        events = await store.list_audit(virtual_key_id=vk_id)
    outcomes = {(e.tool, e.outcome) for e in events}
    assert ("echo", "ok") in outcomes and ("lab-whoami", "denied") in outcomes
    ok = next(e for e in events if e.outcome == "ok")
    assert ok.identity_mode == "vk" and ok.subject == vk_id and ok.upstream == "lab" and ok.duration_ms > 0
    assert all(key not in repr(e) for e in events)


async def test_a_foreign_bearer_token_is_not_a_credential(store_url: str) -> None:
    async with gateway(store_url, ENFORCED) as gw:
        response = await post_initialize(gw, {"authorization": "Bearer not-a-virtual-key"})
    assert response.status_code == 401
    assert "authentication required" in response.text


async def test_a_user_disabled_through_the_api_loses_sso_and_owned_key_sessions_and_comes_back(
    store_url: str,
) -> None:
    jwks = {"keys": [SIGNING_KEY.as_dict(private=False)]}
    auth = {**ENFORCED, "jwt": {"issuer": ISSUER, "audience": "mcpgw", "jwks": jwks}}
    async with gateway(store_url, auth) as gw:
        claims = {"iss": ISSUER, "aud": "mcpgw", "sub": "erin", "exp": int(time.time()) + 600}
        sso = {"authorization": f"Bearer {jwt.encode({'alg': 'RS256', 'kid': 'sso'}, claims, SIGNING_KEY)}"}
        _, owned = await new_key(gw, {"lab": ["echo"]}, user_id="erin")
        _, other = await new_key(gw, {"lab": ["echo"]})
        admin = httpx2.AsyncClient(
            base_url=f"{gw.base_url}/api", headers={"Authorization": "Bearer test-admin-token"}, timeout=10
        )
        async with (
            admin,
            mcp_client(gw.url, headers=sso) as by_token,
            mcp_client(gw.url, headers={"x-bf-vk": owned}) as by_key,
            mcp_client(gw.url, headers={"x-bf-vk": other}) as bystander,
        ):
            assert tool_names(await by_token.list_tools()) == []  # no grants yet: nothing is global here
            granted = await admin.put("/users/erin", json={"mcp_configs": {"notes": ["get_note"]}})
            assert granted.status_code == 200 and granted.json()["mcp_configs"] == {"notes": ["get_note"]}
            assert tool_names(await by_token.list_tools()) == ["notes-get_note"]
            assert tool_names(await by_key.list_tools()) == ["lab-echo"]

            disabled = await admin.put("/users/erin", json={"active": False})
            assert disabled.status_code == 200 and disabled.json()["active"] is False
            for headers, reason in ((sso, "user erin is disabled"), ({"x-bf-vk": owned}, "who is disabled")):
                refused = await post_initialize(gw, headers)
                assert refused.status_code == 401 and reason in refused.json()["error"]["message"]
            for session in (by_token, by_key):
                with pytest.raises(MCPError):
                    await session.list_tools()
            assert text_of(await bystander.call_tool("lab-echo", {"text": "unaffected"})) == "unaffected"

            listed = await admin.get("/users")
            assert [(u["id"], u["active"]) for u in listed.json()] == [("erin", False)]
            assert (await admin.put("/users/erin", json={"active": True})).status_code == 200
            assert await visible(gw, sso) == {"notes-get_note"}
            assert await visible(gw, {"x-bf-vk": owned}) == {"lab-echo"}
            assert (await admin.put("/users/nobody", json={"active": False})).status_code == 404
            assert (await admin.put("/users/erin", json={})).status_code == 422
