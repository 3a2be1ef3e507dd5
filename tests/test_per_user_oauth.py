"""Per-user OAuth end to end: a real authorization server and OAuth-protected upstream (tests/oauth), a real
gateway, the SDK client, and a browser-like consent that follows the redirects back to /oauth/callback."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest

from mcp_gateway.identity import IDENTITY_HINT
from tests.conftest import ADMIN_TOKEN, RunningGateway, mcp_client, running_gateway, text_of, tool_names
from tests.oauth.fixtures import OAuthStack, complete_consent, oauth_stack

pytestmark = pytest.mark.anyio

SESSION = "x-bf-mcp-session-id"
CONSENT = re.compile(r"(https?://\S+/authorize\?\S+)")


def consent_link(text: str) -> str:
    found = CONSENT.search(text)
    assert found is not None, f"no consent link in: {text!r}"
    return found.group(1)


@pytest.fixture
async def stack() -> AsyncIterator[OAuthStack]:
    async with oauth_stack() as running:
        yield running


def per_user_oauth(stack: OAuthStack, **auth: Any) -> dict[str, Any]:
    return {"transport": "http", "url": stack.upstream.url, "auth": {"type": "per_user_oauth", **auth}}


async def call(gw: RunningGateway, who: str | None, tool: str) -> types.CallToolResult:
    async with mcp_client(gw.base_url + "/mcp", {SESSION: who} if who else {}) as client:
        return await client.call_tool(tool, {})


async def sign_in(gw: RunningGateway, who: str, tool: str = "wiki-authenticate") -> None:
    """The person behind `who`: call, follow the consent link, approve as `who`, land on /oauth/callback."""
    needed = await call(gw, who, tool)
    assert needed.is_error, text_of(needed)
    async with httpx2.AsyncClient(timeout=30) as browser:
        landed = await complete_consent(consent_link(text_of(needed)), who, browser)
    assert landed.status_code == 200, landed.text
    assert str(landed.url).startswith(gw.base_url + "/oauth/callback")
    assert "You can return to your client" in landed.text
    # Signing in opens the session in the background, which lists the upstream's real tools.
    with anyio.fail_after(15):
        while "wiki-whoami" not in gw.gateway.manager.catalog.tool_routes:
            await anyio.sleep(0.05)


async def test_consent_then_calls_as_each_user_with_their_own_token(stack: OAuthStack) -> None:
    async with running_gateway({"wiki": per_user_oauth(stack)}) as gw:
        anonymous = await call(gw, None, "wiki-authenticate")
        assert text_of(anonymous) == f"per-user oauth for wiki requires an identity: {IDENTITY_HINT}"
        # Nothing is listed without a token, so the stand-in is offered until someone connects.
        async with mcp_client(gw.base_url + "/mcp", {SESSION: "alice"}) as client:
            assert tool_names(await client.list_tools()) == ["wiki-authenticate"]
        await sign_in(gw, "alice", "wiki-authenticate")
        async with mcp_client(gw.base_url + "/mcp", {SESSION: "alice"}) as client:
            assert {"wiki-whoami", "wiki-echo"} <= set(tool_names(await client.list_tools()))
            assert (await client.call_tool("wiki-whoami", {})).structured_content == {"user": "alice"}
        await sign_in(gw, "bob", "wiki-whoami")
        assert (await call(gw, "bob", "wiki-whoami")).structured_content == {"user": "bob"}
        assert (await call(gw, "alice", "wiki-whoami")).structured_content == {"user": "alice"}
        users = [(c.user, c.tool) for c in stack.upstream.calls]
        assert users == [("alice", "whoami"), ("bob", "whoami"), ("alice", "whoami")]
        # The gateway registered itself (RFC 7591) once, and the tokens carry the upstream as audience.
        assert len(stack.auth_server.clients) >= 1


async def test_expiring_tokens_are_refreshed_and_a_failed_refresh_asks_for_consent_again(stack: OAuthStack) -> None:
    async with running_gateway({"wiki": per_user_oauth(stack)}) as gw:
        broker = gw.gateway.broker
        assert broker is not None
        await sign_in(gw, "carol")

        def later(seconds: float) -> None:
            """The gateway's clock jumps ahead, so the hour-long token is about to expire."""
            broker._clock = lambda: time.time() + seconds

        before = stack.auth_server.token_requests.get("refresh_token", 0)
        later(3590)
        assert (await call(gw, "carol", "wiki-whoami")).structured_content == {"user": "carol"}
        assert stack.auth_server.token_requests.get("refresh_token", 0) > before
        later(0)
        second = await call(gw, "carol", "wiki-whoami")
        assert second.structured_content == {"user": "carol"}, (stack.auth_server.token_requests, stack.upstream.calls)
        stack.auth_server.revoke_refresh_tokens("carol")
        later(2 * 3600)
        failed = await call(gw, "carol", "wiki-whoami")
        assert failed.is_error
        assert "expired or was revoked" in text_of(failed)
        later(0)
        link = consent_link(text_of(failed))
        async with httpx2.AsyncClient(timeout=30) as browser:
            assert (await complete_consent(link, "carol", browser)).status_code == 200
        again = await call(gw, "carol", "wiki-whoami")
        assert again.structured_content == {"user": "carol"}, text_of(again)


async def test_a_consent_link_works_once_and_only_for_its_flow(stack: OAuthStack) -> None:
    async with running_gateway({"wiki": per_user_oauth(stack)}) as gw, httpx2.AsyncClient() as http:
        bad = await http.get(gw.base_url + "/oauth/callback", params={"state": "made-up", "code": "x"})
        assert bad.status_code == 400 and "expired or was already used" in bad.text
        denied = await http.get(gw.base_url + "/oauth/callback", params={"state": "s", "error": "access_denied"})
        assert denied.status_code == 400 and "access_denied" in denied.text
        await sign_in(gw, "dave")
        with anyio.fail_after(30):
            assert (await call(gw, "dave", "wiki-whoami")).structured_content == {"user": "dave"}


async def test_tokens_are_neither_in_the_database_file_nor_in_the_logs(
    stack: OAuthStack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_gateway({"wiki": per_user_oauth(stack)}) as gw:
        await sign_in(gw, "erin")
        assert (await call(gw, "erin", "wiki-whoami")).structured_content == {"user": "erin"}
        database = gw.gateway.database_url
        assert database is not None
        stored = await anyio.Path(database.split(":///", 1)[1]).read_bytes()
    issued = list(stack.auth_server.tokens_by_refresh.values())
    secrets = [t.access_token for t in issued] + [t.refresh_token for t in issued if t.refresh_token]
    secrets += [c.client_secret for c in stack.auth_server.clients.values() if c.client_secret]
    assert issued and secrets
    # The authorization server runs in this process too; its own (authlib server) log lines are not the gateway's.
    gateway_records = [r for r in caplog.records if not r.name.startswith(("authlib.oauth2.rfc6749.grants", "tests."))]
    for secret in secrets:
        assert secret.encode() not in stored
        leaks = [f"{r.name}: {r.getMessage()[:300]}" for r in gateway_records if secret in r.getMessage()]
        assert not leaks, leaks


async def test_a_shared_oauth_upstream_waits_for_an_admin_to_sign_in_once(stack: OAuthStack) -> None:
    shared = {"transport": "http", "url": stack.upstream.url, "auth": {"type": "oauth"}}
    async with running_gateway({"wiki": shared}) as gw, httpx2.AsyncClient(base_url=gw.base_url) as http:
        connection = gw.gateway.manager.connections["wiki"]
        assert connection.state.value == "needs_reauth"
        assert "mcpgw upstream authorize wiki" in (connection.last_error or connection.history[-1].reason)
        assert (await http.post("/api/mcp/client/wiki/authorize")).status_code == 401
        # The admin's way in: `mcpgw upstream authorize` prints the consent link.
        env = {**os.environ, "MCPGW_ADMIN_TOKEN": ADMIN_TOKEN}
        mcpgw = str(Path(sys.executable).parent / "mcpgw")
        done = await anyio.run_process(
            [mcpgw, "upstream", "authorize", "wiki", "--url", gw.base_url], env=env, check=False
        )
        assert done.returncode == 0, done.stderr.decode()
        link = done.stdout.decode().strip().splitlines()[-1]
        async with httpx2.AsyncClient(timeout=30) as browser:
            landed = await complete_consent(link, "platform-admin", browser)
        assert landed.status_code == 200 and "You can return to your client" in landed.text
        with anyio.fail_after(15):
            while connection.state.value != "connected":
                await anyio.sleep(0.05)
        # Everybody (even anonymous callers) uses the one shared token.
        assert (await call(gw, None, "wiki-whoami")).structured_content == {"user": "platform-admin"}
        assert (await call(gw, "someone", "wiki-whoami")).structured_content == {"user": "platform-admin"}
