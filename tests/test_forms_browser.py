"""The credential form in a real browser: headless Debian Chromium, driven by Playwright, over a real socket.

The in-process tests (test_forms.py) cover the rules; this one proves the page works as a person uses
it: labels find the inputs, the cookie set by the GET comes back with the POST (SameSite=Strict,
path-scoped), the CSP lets the form submit, and it all works with JavaScript off. Screenshots of
the filled form and of the result land in tests/artifacts/ (git-ignored) for a human to look at.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import pytest
from playwright.async_api import async_playwright
from starlette.applications import Starlette

from mcp_gateway.credentials.flows import FlowKind, FlowRegistry, PendingFlow
from mcp_gateway.http.web.forms import credential_form_routes
from tests.conftest import ROOT
from tests.serving import free_port, serve_asgi

pytestmark = pytest.mark.anyio

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts"
KEYS = {"github": ["X-Api-Token", "X-Org"]}


def serving(app: Starlette) -> contextlib.AbstractAsyncContextManager[str]:
    """`app` on a free localhost port under uvicorn; yields its base URL."""
    return serve_asgi(app, free_port(), lifespan="off")


def require_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run `make browser` (scripts/install-browser.sh apt-installs Debian's chromium;"
            " `make pytest` does it first). This test never skips.",
            pytrace=False,
        )


async def test_a_person_fills_in_the_form_in_chromium_without_javascript() -> None:
    require_chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    flows = FlowRegistry()
    saved: list[tuple[PendingFlow, dict[str, str]]] = []

    def header_keys_of(upstream: str) -> Sequence[str] | None:
        return KEYS.get(upstream)

    async def save(flow: PendingFlow, values: dict[str, str]) -> None:
        saved.append((flow, values))

    app = Starlette(routes=credential_form_routes(flows, header_keys_of, save))
    flow = flows.start(FlowKind.HEADERS, "user:alice", "github")

    async with serving(app) as base_url, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True)
        try:
            # JavaScript off: the form must work as plain HTML (the CSP forbids scripts anyway).
            context = await browser.new_context(java_script_enabled=False, viewport={"width": 760, "height": 640})
            page = await context.new_page()
            console_errors: list[str] = []
            page.on("console", lambda message: console_errors.append(message.text) if message.type == "error" else None)

            response = await page.goto(f"{base_url}/forms/credentials/{flow.id}")
            assert response is not None and response.status == 200
            assert await page.title() == "Connect to github · mcpgw"

            # A value no HTTP header can carry comes back as an error, with the inputs emptied.
            await page.get_by_label("X-Api-Token").fill("tökén")
            await page.get_by_label("X-Org").fill("acme")
            async with page.expect_navigation():
                await page.get_by_role("button", name="Save").click()
            assert (
                "X-Api-Token: contains characters that cannot be sent" in await page.get_by_role("alert").inner_text()
            )
            assert await page.get_by_label("X-Api-Token").input_value() == ""
            assert await page.get_by_label("X-Org").input_value() == ""
            await page.screenshot(path=ARTIFACTS / "credential-form-error.png", full_page=True)
            assert saved == []

            await page.get_by_label("X-Api-Token").fill("ghp_browser-test-token")
            await page.get_by_label("X-Org").fill("acme")
            await page.screenshot(path=ARTIFACTS / "credential-form-filled.png", full_page=True)

            async with page.expect_navigation():
                await page.get_by_role("button", name="Save").click()
            body = await page.locator("main").inner_text()
            assert "Saved your credentials for github. You can return to your client." in body
            assert "ghp_browser-test-token" not in await page.content()
            await page.screenshot(path=ARTIFACTS / "credential-form-saved.png", full_page=True)

            # The page's own CSP blocked nothing it needs (the 400 above is logged as a failed load; that is fine).
            assert [m for m in console_errors if "Content Security Policy" in m or "Refused" in m] == []
            await context.close()
        finally:
            await browser.close()

    assert saved == [(flow, {"X-Api-Token": "ghp_browser-test-token", "X-Org": "acme"})]
    assert flow.done.is_set()
    assert len(flows) == 0
