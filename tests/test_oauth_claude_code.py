"""Claude Code signing in to the gateway's /mcp with OAuth: no header in its config, a person on the consent page.

`claude mcp login` opens `$BROWSER` with the authorization URL; here that is a small script that
does what a person would — open the page, paste their virtual key, submit — and then follows the
redirect to Claude Code's own loopback callback. `script` gives `claude mcp login` the terminal
it insists on. Throwaway HOME; the model traffic goes to a mock provider that records the tools
Claude Code offers (so the tools it got through /mcp are visible).
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from examples.servers.llm_provider import MockProvider
from tests.conftest import lab, running_gateway
from tests.serving import free_port, serve_asgi
from tests.test_llm_claude_code import model_env, result_of
from tests.test_real_clients import CLAUDE, claude_env, require

pytestmark = pytest.mark.anyio

PROVIDER_KEY = "sk-ant-provider-key-oauth"

BROWSER = textwrap.dedent(
    """\
    import os, re, sys
    import httpx2
    with httpx2.Client(timeout=30, follow_redirects=True) as browser:
        page = browser.get(sys.argv[1])
        def field(name):
            return re.search(f'name="{name}" value="([^"]+)"', page.text).group(1)
        fields = {"csrf_token": field("csrf_token"), "request": field("request")}
        fields.update(method="virtual_key", virtual_key=os.environ["MCPGW_TEST_VK"])
        done = browser.post(page.url, data=fields)  # 303 to Claude Code's callback, followed
        with open(os.environ["MCPGW_TEST_BROWSER_LOG"], "a") as log:
            log.write(f"{page.status_code} {done.status_code} {done.url.host}\\n")
    """
)


async def claude(home: Path, env: dict[str, str], *args: str, tty: bool = False) -> str:
    argv = [str(CLAUDE), *args]
    if tty:  # `claude mcp login` wants a terminal
        argv = ["script", "-qefc", " ".join(argv), "/dev/null"]
    with anyio.fail_after(120):
        done = await anyio.run_process(argv, env=env, cwd=home / "project", check=False, stdin=None)
    return done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")


async def test_claude_code_authenticates_through_the_consent_page_refreshes_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    require(CLAUDE)
    home = tmp_path / "home"
    (home / "project").mkdir(parents=True)
    browser = tmp_path / "browser.py"
    browser.write_text(BROWSER)
    launcher = tmp_path / "browser.sh"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{browser}" "$1"\n')
    launcher.chmod(0o755)
    port, database = free_port(), f"sqlite+aiosqlite:///{tmp_path}/gateway.db"
    provider = MockProvider(PROVIDER_KEY)
    auth = {"enforce_auth_on_inference": True, "oauth": {"access_token_seconds": 30}}
    async with serve_asgi(provider.app, free_port()) as provider_url:
        llm = {"providers": {"anthropic": {"base_url": provider_url, "api_key": PROVIDER_KEY}}}
        async with running_gateway({"lab": lab()}, auth=auth, llm=llm, database_url=database, port=port) as gw:
            assert gw.gateway.store is not None
            key_record, key = await gw.gateway.store.create_virtual_key("engineer", mcp_configs={"lab": ["echo"]})
            await gw.gateway.sync()
            env = {
                **claude_env(home),
                "BROWSER": str(launcher),
                "MCPGW_TEST_VK": key,
                "MCPGW_TEST_BROWSER_LOG": str(tmp_path / "browser.log"),
                "PATH": os.environ["PATH"],
            }
            added = await claude(home, env, "mcp", "add", "--transport", "http", "gw", gw.url)
            assert "gw" in added, added
            before = await claude(home, env, "mcp", "list")
            assert f"gw: {gw.url} (HTTP) - ! Needs authentication" in before, before
            login = await claude(home, env, "mcp", "login", "gw", tty=True)
            log = (tmp_path / "browser.log").read_text() if (tmp_path / "browser.log").exists() else ""
            assert log.startswith("200 200 localhost"), (log, login)
            after = await claude(home, env, "mcp", "list")
            assert f"gw: {gw.url} (HTTP) - \u2714 Connected" in after, (after, login)
            # The tools Claude Code got through /mcp are the key's allowlist.
            turn = await claude(
                home,
                {**env, **model_env(home, gw.base_url, ANTHROPIC_AUTH_TOKEN=key)},
                "-p",
                "hello",
                "--output-format",
                "json",
            )
            assert result_of(turn)["result"] == "Hello from the mock.", turn
            offered = [t["name"] for t in provider.requests[-1].body["tools"] if t["name"].startswith("mcp__gw__")]
            assert offered == ["mcp__gw__lab-echo"], offered
            [grant] = await gw.gateway.store.list_oauth_grants(virtual_key_id=key_record.id)
            created = grant.created_at
            # The access token expires: Claude Code refreshes it and stays connected.
            await anyio.sleep(32)
            expired = await claude(home, env, "mcp", "list")
            assert f"gw: {gw.url} (HTTP) - \u2714 Connected" in expired, expired
            [grant] = await gw.gateway.store.list_oauth_grants(virtual_key_id=key_record.id)
            assert grant.last_used_at is not None and grant.last_used_at > created  # a refresh happened
        # The gateway restarts (same store, same vault): Claude Code stays connected.
        async with running_gateway({"lab": lab()}, auth=auth, llm=llm, database_url=database, port=port) as again:
            restarted = await claude(home, env, "mcp", "list")
            assert f"gw: {again.url} (HTTP) - \u2714 Connected" in restarted, restarted
