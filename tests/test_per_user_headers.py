"""Per-user headers end to end: real gateway, real upstream that checks a per-caller token, SDK clients."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
import structlog
from mcp.client.session import ClientRequestContext

from mcp_gateway.identity import IDENTITY_HINT
from mcp_gateway.logs import configure_logging
from tests.conftest import (
    ADMIN_TOKEN,
    RunningGateway,
    lab,
    mcp_client,
    running_gateway,
    text_of,
    tool_names,
    upstream_process,
)
from tests.credential_flows import fill_form, form_link

pytestmark = pytest.mark.anyio

KEYED = Path(__file__).parent / "upstreams" / "keyed_server.py"
SESSION = "x-bf-mcp-session-id"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def keyed(url: str, **fields: Any) -> dict[str, Any]:
    return {
        "transport": "http",
        "url": url,
        "auth": {"type": "per_user_headers", "header_keys": ["X-Api-Token"]},
        **fields,
    }


@pytest.fixture
async def keyed_url() -> AsyncIterator[str]:
    async with upstream_process(KEYED, env={"KEYED_TOKENS": "*", "KEYED_OPEN_LISTING": "1"}) as url:
        yield url


async def whoami(gw: RunningGateway, headers: dict[str, str]) -> types.CallToolResult:
    async with mcp_client(gw.base_url + "/mcp", headers) as client:
        return await client.call_tool("keyed-whoami", {})


async def test_anonymous_caller_is_told_how_to_identify_and_other_tools_still_work(keyed_url: str) -> None:
    async with (
        running_gateway({"keyed": keyed(keyed_url), "lab": lab()}) as gw,
        mcp_client(gw.base_url + "/mcp") as client,
    ):
        assert {"keyed-whoami", "keyed-echo", "lab-echo"} <= set(tool_names(await client.list_tools()))
        result = await client.call_tool("keyed-whoami", {})
        assert result.is_error
        assert text_of(result) == f"per-user headers for keyed requires an identity: {IDENTITY_HINT}"
        echoed = await client.call_tool("lab-echo", {"text": "still fine"})
        assert not echoed.is_error and text_of(echoed) == "still fine"


async def test_first_call_links_to_a_form_and_the_next_call_carries_the_saved_header(keyed_url: str) -> None:
    async with running_gateway({"keyed": keyed(keyed_url)}) as gw:
        me = {SESSION: "alice-laptop"}
        first = await whoami(gw, me)
        assert first.is_error
        link = form_link(text_of(first))
        assert link.startswith(gw.base_url + "/forms/credentials/")
        saved = await fill_form(link, {"X-Api-Token": "alice-secret-token-1"})
        assert saved.status_code == 200 and "return to your client" in saved.text
        fast = gw.gateway.fast
        served = fast.served if fast is not None else 0
        second = await whoami(gw, me)
        assert not second.is_error, text_of(second)
        assert second.structured_content == {"token": "alice-secret-token-1"}
        # A per-user (pooled per identity) upstream takes the fast path like any other (unless it is switched off).
        assert fast is None or fast.served == served + 1
        # The link worked once.
        async with httpx2.AsyncClient() as browser:
            assert (await browser.get(link)).status_code == 404
        # Another identity has no credential: it gets its own link, never alice's token.
        other = await whoami(gw, {SESSION: "bob-laptop"})
        assert other.is_error and form_link(text_of(other)) != link
        # The secret is not in the database file in plain text, nor in the audit trail.
        db = Path(str(gw.gateway.database_url).split(":///", 1)[1])
        assert b"alice-secret-token-1" not in await anyio.Path(db).read_bytes()
        async with httpx2.AsyncClient(headers=ADMIN) as admin:
            audit = (await admin.get(gw.base_url + "/api/audit")).text
            listed = (await admin.get(gw.base_url + "/api/credentials")).json()
        assert "alice-secret-token-1" not in audit and "/forms/credentials/" not in audit
        assert [(c["upstream"], c["kind"], c["state"]) for c in listed] == [("keyed", "headers", "active")]
        assert "alice-secret-token-1" not in json.dumps(listed)


async def test_a_refused_credential_asks_the_person_again() -> None:
    async with (
        upstream_process(KEYED, env={"KEYED_TOKENS": "good-token", "KEYED_OPEN_LISTING": "1"}) as url,
        running_gateway({"keyed": keyed(url)}) as gw,
    ):
        me = {SESSION: "carol"}
        await fill_form(form_link(text_of(await whoami(gw, me))), {"X-Api-Token": "typo-token"})
        refused = await whoami(gw, me)
        assert refused.is_error
        assert "keyed refused the credentials you saved" in text_of(refused)
        await fill_form(form_link(text_of(refused)), {"X-Api-Token": "good-token"})
        fixed = await whoami(gw, me)
        assert fixed.structured_content == {"token": "good-token"}


async def test_tools_of_a_server_that_lists_nothing_without_a_token_appear_after_the_first_connect() -> None:
    async with (
        upstream_process(KEYED, env={"KEYED_TOKENS": "*"}) as url,
        running_gateway({"keyed": keyed(url)}) as gw,
    ):
        changed = anyio.Event()

        async def on_message(message: object) -> None:
            if isinstance(message, types.ToolListChangedNotification):
                changed.set()

        me = {SESSION: "dave"}
        async with mcp_client(gw.base_url + "/mcp", me, message_handler=on_message) as client:
            assert tool_names(await client.list_tools()) == ["keyed-authenticate"]
            needed = await client.call_tool("keyed-authenticate", {})
            assert needed.is_error
            await fill_form(form_link(text_of(needed)), {"X-Api-Token": "dave-token"})
            connected = await client.call_tool("keyed-authenticate", {})
            assert not connected.is_error
            assert "You are connected to keyed" in text_of(connected)
            with anyio.fail_after(10):
                await changed.wait()
            assert set(tool_names(await client.list_tools())) == {"keyed-whoami", "keyed-echo"}
            mine = await client.call_tool("keyed-whoami", {})
            assert mine.structured_content == {"token": "dave-token"}


async def test_url_elicitation_lets_the_call_finish_once_the_form_is_submitted(keyed_url: str) -> None:
    async with running_gateway({"keyed": keyed(keyed_url)}) as gw:
        asked: list[types.ElicitRequestURLParams] = []

        async def elicit(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
            assert isinstance(params, types.ElicitRequestURLParams)
            asked.append(params)

            async def person() -> None:
                await anyio.sleep(0.2)
                await fill_form(params.url, {"X-Api-Token": "erin-token"})

            group.start_soon(person)
            return types.ElicitResult(action="accept")

        async with (
            anyio.create_task_group() as group,
            mcp_client(
                gw.base_url + "/mcp",
                {SESSION: "erin"},
                elicitation_callback=elicit,
            ) as client,
        ):
            result = await client.call_tool("keyed-whoami", {})
        assert len(asked) == 1 and "/forms/credentials/" in asked[0].url
        assert not result.is_error, text_of(result)
        assert result.structured_content == {"token": "erin-token"}


async def test_a_caller_can_remove_their_own_credential_and_an_admin_can_revoke(keyed_url: str) -> None:
    async with running_gateway({"keyed": keyed(keyed_url)}) as gw, httpx2.AsyncClient(base_url=gw.base_url) as http:
        frank, grace = {SESSION: "frank"}, {SESSION: "grace"}
        for who, token in ((frank, "frank-token"), (grace, "grace-token")):
            await fill_form(form_link(text_of(await whoami(gw, who))), {"X-Api-Token": token})
            assert not (await whoami(gw, who)).is_error
        removed = await http.delete("/api/me/credentials/keyed", headers=frank)
        assert removed.status_code == 200 and removed.json() == {"upstream": "keyed", "removed": 1}
        assert (await whoami(gw, frank)).is_error
        assert not (await whoami(gw, grace)).is_error
        assert (await http.delete("/api/me/credentials/keyed")).status_code == 401  # anonymous: nobody's
        listed = (await http.get("/api/credentials", headers=ADMIN)).json()
        assert len(listed) == 1
        assert (await http.delete(f"/api/credentials/{listed[0]['id']}", headers=ADMIN)).status_code == 200
        assert (await whoami(gw, grace)).is_error
        assert (await http.get("/api/credentials", headers=ADMIN)).json() == []
        assert (await http.get("/api/credentials")).status_code == 401


async def test_sessions_are_pooled_per_identity_capped_and_closed_when_idle(keyed_url: str) -> None:
    upstream = keyed(keyed_url, max_user_sessions=2, user_session_idle_timeout=1.0)
    async with running_gateway({"keyed": upstream}) as gw:
        pool = gw.gateway.manager.connections["keyed"]
        people = [{SESSION: f"user-{i}"} for i in range(3)]
        for i, who in enumerate(people):
            await fill_form(form_link(text_of(await whoami(gw, who))), {"X-Api-Token": f"token-{i}"})
        for i, who in enumerate(people):
            for _ in range(2):
                assert (await whoami(gw, who)).structured_content == {"token": f"token-{i}"}
            assert pool.summary()["sessions"] <= 2
        with anyio.fail_after(10):
            while pool.summary()["sessions"]:
                await anyio.sleep(0.1)
        assert (await whoami(gw, people[0])).structured_content == {"token": "token-0"}


async def test_twenty_identities_in_three_modes_never_use_each_others_credentials(keyed_url: str) -> None:
    async with running_gateway({"keyed": keyed(keyed_url)}) as gw, httpx2.AsyncClient(base_url=gw.base_url) as http:
        store = gw.gateway.store
        assert store is not None
        callers: list[dict[str, str]] = []
        for i in range(20):
            if i % 3 == 2:
                callers.append({SESSION: f"isolation-session-{i}"})
                continue
            user_id = None
            if i % 3 == 1:
                user_id = f"isolation-user-{i}"
                await store.upsert_user(user_id)
            body = {"name": f"iso-{i}", "user_id": user_id, "mcp_configs": {"keyed": ["*"]}}
            created = await http.post("/api/virtual-keys", json=body, headers=ADMIN)
            assert created.status_code == 201, created.text
            callers.append({"Authorization": f"Bearer {created.json()['key']}"})

        async def enroll(i: int) -> None:
            link = form_link(text_of(await whoami(gw, callers[i])))
            if i == 1:  # the form names whom the credential will belong to, so a forwarded link is noticed
                page = (await http.get(link)).text
                assert "They will be saved for <strong>the virtual key &#39;iso-1&#39; of user isolation-user-1" in page
            await fill_form(link, {"X-Api-Token": f"iso-token-{i}"})

        async with anyio.create_task_group() as group:
            for i in range(20):
                group.start_soon(enroll, i)
        seen: dict[int, list[Any]] = {i: [] for i in range(20)}

        async def use(i: int) -> None:
            async with mcp_client(gw.base_url + "/mcp", callers[i]) as client:
                for _ in range(3):
                    result = await client.call_tool("keyed-whoami", {})
                    seen[i].append(result.structured_content)

        async with anyio.create_task_group() as group:
            for i in range(20):
                group.start_soon(use, i)
        assert all(seen[i] == [{"token": f"iso-token-{i}"}] * 3 for i in range(20)), seen
        upstream_calls = (await http.get(keyed_url.removesuffix("/mcp") + "/calls")).json()
        tokens = [c["token"] for c in upstream_calls if c["tool"] == "whoami" and c["token"]]
        assert sorted(tokens) == sorted(f"iso-token-{i}" for i in range(20) for _ in range(3))
        # The callers' own credentials (virtual keys) never reached the upstream.
        assert not any(c.get("authorization") for c in upstream_calls)
        modes = {c["identity"].split(":")[0] for c in (await http.get("/api/credentials", headers=ADMIN)).json()}
        assert modes == {"vk", "user", "session"}


async def test_a_saved_header_value_never_reaches_the_gateway_log_even_at_debug(keyed_url: str) -> None:
    log = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging("debug", stream=log)  # as `mcpgw serve --log-level debug` does
    try:
        async with running_gateway({"keyed": keyed(keyed_url)}) as gw:
            me = {SESSION: "zeta"}
            await fill_form(form_link(text_of(await whoami(gw, me))), {"X-Api-Token": "zeta-secret-token-9"})
            async with mcp_client(gw.base_url + "/mcp", me) as client:
                echoed = await client.call_tool("keyed-echo", {"text": "hello"})  # carries the header upstream
            assert text_of(echoed) == "hello"
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        structlog.reset_defaults()
    output = log.getvalue()
    assert "stored per-user headers for keyed" in output and "keyed-echo" in output  # debug lines were captured
    assert "zeta-secret-token-9" not in output
