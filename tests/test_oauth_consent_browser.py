"""The gateway's OAuth consent page in a real browser: headless Debian Chromium, driven by Playwright.

test_oauth_server.py submits the page with httpx; this one proves a person can: the CSRF cookie set
by the GET comes back with the POST (SameSite=Strict, path-scoped), a wrong key is refused on the
page, and the page's CSP (`form-action 'self' http://localhost:*`) lets the answer's 303 reach the
client's loopback callback, with JavaScript off. The code that lands there is exchanged for a token
that opens /mcp. A screenshot of the page lands in tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import httpx2
import pytest
from playwright.async_api import async_playwright
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.conftest import lab, running_gateway
from tests.serving import free_port, serve_asgi
from tests.test_forms_browser import ARTIFACTS, CHROMIUM, require_chromium
from tests.test_oauth_server import AUTH, list_status, make_key, pkce

pytestmark = pytest.mark.anyio

CLIENT_NAME = "Browser Test Client"
STATE = "browser-state-7f3a"


async def test_a_person_signs_a_client_in_on_the_consent_page_in_chromium() -> None:
    require_chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    callbacks: list[str] = []

    async def callback(request: Request) -> Response:
        callbacks.append(request.url.query)
        return PlainTextResponse("signed in")

    port = free_port()
    redirect = f"http://localhost:{port}/callback"
    client_app = Starlette(routes=[Route("/callback", callback, methods=["GET"])])

    async with (
        running_gateway({"lab": lab()}, auth=AUTH) as gw,
        serve_asgi(client_app, port, lifespan="off"),
        httpx2.AsyncClient(base_url=gw.base_url, timeout=30) as http,
    ):
        _, key = await make_key(gw.gateway, {"lab": ["echo"]})
        registered = await http.post(
            "/register",
            json={"client_name": CLIENT_NAME, "redirect_uris": [redirect], "token_endpoint_auth_method": "none"},
        )
        assert registered.status_code == 201, registered.text
        client_id = str(registered.json()["client_id"])
        verifier, challenge = pkce()
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": STATE,
            "resource": gw.url,
        }
        authorize_url = str(httpx2.URL(gw.base_url + "/authorize", params=params))

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True
            )
            try:
                # JavaScript off: the page must work as plain HTML (the CSP forbids scripts anyway).
                context = await browser.new_context(java_script_enabled=False, viewport={"width": 760, "height": 760})
                page = await context.new_page()
                console_errors: list[str] = []
                page.on(
                    "console", lambda message: console_errors.append(message.text) if message.type == "error" else None
                )

                response = await page.goto(authorize_url)
                assert response is not None and response.status == 200
                assert urlparse(page.url).path == "/oauth/consent"
                assert await page.title() == "Sign in · mcpgw"
                body = await page.locator("main").inner_text()
                assert f"Sign in {CLIENT_NAME} to mcpgw" in body
                assert f"it will receive the answer at localhost:{port}" in body
                await page.screenshot(path=ARTIFACTS / "oauth-consent.png", full_page=True)

                # A key the gateway does not know: the page comes back with the error, nothing is issued.
                await page.get_by_label("Your virtual key").fill("sk-mcpgw-wrong")
                async with page.expect_navigation():
                    await page.get_by_role("button", name="Allow").click()
                assert urlparse(page.url).path == "/oauth/consent"
                assert "No such virtual key on this gateway." in await page.get_by_role("alert").inner_text()
                assert await page.get_by_label("Your virtual key").input_value() == ""
                await page.screenshot(path=ARTIFACTS / "oauth-consent-error.png", full_page=True)
                assert callbacks == []

                await page.get_by_label("Your virtual key").fill(key)
                async with page.expect_navigation(url=f"{redirect}?**"):
                    await page.get_by_role("button", name="Allow").click()
                assert await page.locator("body").inner_text() == "signed in"
                landed = urlparse(page.url)
                assert (landed.hostname, landed.port, landed.path) == ("localhost", port, "/callback")
                await page.screenshot(path=ARTIFACTS / "oauth-consent-done.png", full_page=True)

                # The page's own CSP blocked nothing it needs (the 400 above is logged as a failed load; that is fine).
                assert [m for m in console_errors if "Content Security Policy" in m or "Refused" in m] == []
                await context.close()
            finally:
                await browser.close()

        assert len(callbacks) == 1
        query = parse_qs(callbacks[0])
        assert query == parse_qs(landed.query)
        assert query["state"] == [STATE] and query["iss"] == [gw.base_url]
        [code] = query["code"]

        exchanged = await http.post(
            "/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect,
                "client_id": client_id,
                "code_verifier": verifier,
            },
        )
        assert exchanged.status_code == 200, exchanged.text
        tokens = exchanged.json()
        assert tokens["token_type"] == "Bearer" and key not in exchanged.text
        assert await list_status(http, {"authorization": f"Bearer {tokens['access_token']}"}) == 200
        assert await list_status(http, {"authorization": "Bearer not-a-token"}) == 401
