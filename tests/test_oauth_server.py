"""The gateway's own OAuth server for /mcp, driven by the official SDK client's OAuth support and by hand.

The consent page is submitted as a browser would (GET sets the CSRF cookie, POST sends the form);
everything else is real HTTP against a running gateway with enforcement on.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import anyio
import httpx2
import pytest
from mcp.client.auth import OAuthClientProvider
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from pydantic import AnyUrl

from mcp_gateway.http.gateway import Gateway
from tests.conftest import RunningGateway, lab, running_gateway, tool_names
from tests.oauth.fixtures import authorization_server
from tests.serving import free_port

pytestmark = pytest.mark.anyio

REDIRECT = "http://localhost:53682/callback"
MCPGW = Path(sys.executable).parent / "mcpgw"
AUTH = {"enforce_auth_on_inference": True}


class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


async def consent(authorize_url: str, virtual_key: str | None, *, method: str = "virtual_key") -> httpx2.Response:
    """Open the authorization URL as a browser, submit the consent form; the answer (a redirect to the client)."""
    async with httpx2.AsyncClient(timeout=30, follow_redirects=False) as browser:
        answer = await browser.get(authorize_url)
        while answer.status_code in (302, 303, 307) and "/oauth/consent" in answer.headers["location"]:
            answer = await browser.get(httpx2.URL(authorize_url).join(answer.headers["location"]))
        assert answer.status_code == 200, answer.text
        page = answer.text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
        request = re.search(r'name="request" value="([^"]+)"', page)
        assert csrf and request, page
        form = {"csrf_token": csrf.group(1), "request": request.group(1), "method": method}
        if virtual_key is not None:
            form["virtual_key"] = virtual_key
        return await browser.post(answer.url, data=form)


class Browser:
    """The redirect and callback handlers of `OAuthClientProvider`: a person who pastes `key` on the consent page."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.result: AuthorizationCodeResult | None = None
        self.pages = 0

    async def redirect(self, url: str) -> None:
        self.pages += 1
        answer = await consent(url, self.key)
        assert answer.status_code == 303, answer.text
        query = parse_qs(urlparse(answer.headers["location"]).query)
        self.result = AuthorizationCodeResult(
            code=query["code"][0], state=query.get("state", [None])[0], iss=query.get("iss", [None])[0]
        )

    async def callback(self) -> AuthorizationCodeResult:
        assert self.result is not None
        return self.result


def client_provider(gw: RunningGateway, storage: MemoryStorage, browser: Browser) -> OAuthClientProvider:
    metadata = OAuthClientMetadata(
        client_name="sdk test client",
        redirect_uris=[AnyUrl(REDIRECT)],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
    )
    return OAuthClientProvider(gw.url, metadata, storage, browser.redirect, browser.callback)


@contextlib.asynccontextmanager
async def oauth_session(gw: RunningGateway, auth: httpx2.Auth) -> AsyncIterator[ClientSession]:
    async with (
        httpx2.AsyncClient(auth=auth, timeout=30) as http,
        streamable_http_client(gw.url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def make_key(gateway: Gateway, grants: dict[str, list[str]]) -> tuple[str, str]:
    assert gateway.store is not None
    record, key = await gateway.store.create_virtual_key(f"oauth-{secrets.token_hex(3)}", mcp_configs=grants)
    await gateway.sync()
    return record.id, key


async def test_the_sdk_client_signs_in_with_a_virtual_key_and_gets_that_keys_tools() -> None:
    async with running_gateway({"lab": lab()}, auth=AUTH) as gw:
        key_id, key = await make_key(gw.gateway, {"lab": ["echo"]})
        storage, browser = MemoryStorage(), Browser(key)
        async with oauth_session(gw, client_provider(gw, storage, browser)) as session:
            assert tool_names(await session.list_tools()) == ["lab-echo"]
            echoed = await session.call_tool("lab-echo", {"text": "signed in"})
            assert echoed.content[0].text == "signed in"  # type: ignore[union-attr]
        assert browser.pages == 1 and storage.tokens is not None and storage.client is not None
        assert storage.client.client_id.startswith("mcpgw-client-")
        # The second connection reuses the stored token: no consent page.
        async with oauth_session(gw, client_provider(gw, storage, browser)) as session:
            assert tool_names(await session.list_tools()) == ["lab-echo"]
        assert browser.pages == 1
        # Refresh (rotation), then revocation: the token stops working at once.
        first = storage.tokens
        async with httpx2.AsyncClient(base_url=gw.base_url) as http:
            refreshed = await http.post(
                "/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": first.refresh_token,
                    "client_id": storage.client.client_id,
                },
            )
            assert refreshed.status_code == 200, refreshed.text
            tokens = refreshed.json()
            assert tokens["refresh_token"] != first.refresh_token and tokens["token_type"] == "Bearer"
            bearer = {"authorization": f"Bearer {tokens['access_token']}"}
            assert (await list_status(http, bearer)) == 200
            revoked = await http.post(
                "/revoke", data={"token": tokens["refresh_token"], "client_id": storage.client.client_id}
            )
            assert revoked.status_code == 200
            assert (await list_status(http, bearer)) == 401
        assert gw.gateway.store is not None
        [grant] = await gw.gateway.store.list_oauth_grants(virtual_key_id=key_id, include_revoked=True)
        assert grant.revoked_at is not None and grant.client_name == "sdk test client"


async def list_status(http: httpx2.AsyncClient, headers: dict[str, str]) -> int:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    answer = await http.post("/mcp", json=body, headers={**headers, "accept": "application/json, text/event-stream"})
    return answer.status_code


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


async def register(http: httpx2.AsyncClient, redirect: str = REDIRECT) -> str:
    answer = await http.post(
        "/register", json={"client_name": "hand", "redirect_uris": [redirect], "token_endpoint_auth_method": "none"}
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["client_id"])


async def authorize(
    gw: RunningGateway,
    client_id: str,
    challenge: str,
    key: str,
    *,
    resource: str | None = None,
    redirect: str = REDIRECT,
) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "s1",
        "resource": resource or gw.url,
    }
    answer = await consent(str(httpx2.URL(gw.base_url + "/authorize", params=params)), key)
    assert answer.status_code == 303, answer.text
    query = parse_qs(urlparse(answer.headers["location"]).query)
    assert query["state"] == ["s1"] and query["iss"] == [gw.base_url]
    return query["code"][0]


async def exchange(http: httpx2.AsyncClient, client_id: str, code: str, verifier: str) -> httpx2.Response:
    return await http.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": client_id,
            "code_verifier": verifier,
        },
    )


async def test_metadata_and_the_401_that_points_to_it() -> None:
    async with (
        running_gateway({"lab": lab()}, auth=AUTH) as gw,
        httpx2.AsyncClient(base_url=gw.base_url) as http,
    ):
        refused = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        assert refused.status_code == 401
        assert (
            f'resource_metadata="{gw.base_url}/.well-known/oauth-protected-resource/mcp"'
            in refused.headers["www-authenticate"]
        )
        resource = (await http.get("/.well-known/oauth-protected-resource/mcp")).json()
        assert resource["resource"] == gw.url and resource["authorization_servers"] == [gw.base_url]
        server = (await http.get("/.well-known/oauth-authorization-server")).json()
        assert server["issuer"] == gw.base_url and server["code_challenge_methods_supported"] == ["S256"]
        assert server["registration_endpoint"] == f"{gw.base_url}/register"
        # Registration errors are JSON (RFC 7591), and registering stores nothing.
        bad = await http.post("/register", json={"redirect_uris": ["http://evil.example/cb"]})
        assert bad.status_code == 400 and bad.json()["error"] == "invalid_redirect_uri"
        secret = await http.post(
            "/register", json={"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "client_secret_post"}
        )
        assert secret.status_code == 400 and secret.json()["error"] == "invalid_client_metadata"
        assert (await http.post("/register", content=b"nope")).json()["error"] == "invalid_client_metadata"
        assert gw.gateway.store is not None
        revision = await gw.gateway.store.revision()
        for _ in range(50):
            await register(http)
        assert await gw.gateway.store.revision() == revision


async def test_codes_and_refresh_tokens_are_single_use_and_reuse_revokes_the_family() -> None:
    async with (
        running_gateway({"lab": lab()}, auth=AUTH) as gw,
        httpx2.AsyncClient(base_url=gw.base_url) as http,
    ):
        _, key = await make_key(gw.gateway, {"lab": ["echo"]})
        client_id = await register(http)
        verifier, challenge = pkce()
        code = await authorize(gw, client_id, challenge, key)
        wrong = await exchange(http, client_id, code, pkce()[0])
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"  # wrong PKCE verifier
        code = await authorize(gw, client_id, challenge, key)
        tokens = (await exchange(http, client_id, code, verifier)).json()
        again = await exchange(http, client_id, code, verifier)
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"  # the code was used
        assert await list_status(http, {"authorization": f"Bearer {tokens['access_token']}"}) == 401  # its grant too
        code = await authorize(gw, client_id, challenge, key)
        tokens = (await exchange(http, client_id, code, verifier)).json()
        form = {"grant_type": "refresh_token", "client_id": client_id}
        second = (await http.post("/token", data={**form, "refresh_token": tokens["refresh_token"]})).json()
        reused = await http.post("/token", data={**form, "refresh_token": tokens["refresh_token"]})
        assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
        # The reuse revoked the whole family: the rotated refresh token and its access token are dead too.
        assert (await http.post("/token", data={**form, "refresh_token": second["refresh_token"]})).status_code == 400
        assert await list_status(http, {"authorization": f"Bearer {second['access_token']}"}) == 401


async def test_redirects_resources_expiry_and_disabled_keys_are_refused() -> None:
    async with (
        running_gateway({"lab": lab()}, auth=AUTH) as gw,
        httpx2.AsyncClient(base_url=gw.base_url) as http,
    ):
        key_id, key = await make_key(gw.gateway, {"lab": ["echo"]})
        client_id = await register(http)
        verifier, challenge = pkce()
        # A redirect URI that was not registered: no redirect at all, an error page.
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": "https://attacker.example/cb",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        assert (await http.get("/authorize", params=params)).status_code == 400
        # Loopback redirect URIs match on any port (RFC 8252).
        other_port = REDIRECT.replace("53682", "61000")
        code = await authorize(gw, client_id, challenge, key, redirect=other_port)
        assert code
        # A token for another resource is refused by /mcp.
        code = await authorize(gw, client_id, challenge, key, resource="http://elsewhere.example:9/mcp")
        foreign = (await exchange(http, client_id, code, verifier)).json()
        assert await list_status(http, {"authorization": f"Bearer {foreign['access_token']}"}) == 401
        # An expired token.
        keys = gw.gateway.oauth_keys
        assert keys is not None
        expired, _ = keys.access_token({"aud": gw.url, "vk": key_id, "gid": "g"}, -10)
        assert await list_status(http, {"authorization": f"Bearer {expired}"}) == 401
        # A good token stops working the moment its key is disabled; refreshing it is refused.
        code = await authorize(gw, client_id, challenge, key)
        tokens = (await exchange(http, client_id, code, verifier)).json()
        bearer = {"authorization": f"Bearer {tokens['access_token']}"}
        assert await list_status(http, bearer) == 200
        headers = {"authorization": "Bearer test-admin-token"}
        disabled = await http.put(f"/api/virtual-keys/{key_id}", json={"active": False}, headers=headers)
        assert disabled.status_code == 200, disabled.text
        assert await list_status(http, bearer) == 401
        form = {"grant_type": "refresh_token", "client_id": client_id, "refresh_token": tokens["refresh_token"]}
        assert (await http.post("/token", data=form)).status_code == 400
        # A bad key on the consent page: the form again, with the reason.
        page = await consent(
            str(httpx2.URL(gw.base_url + "/authorize", params={**params, "redirect_uri": REDIRECT})), key
        )
        assert page.status_code == 400 and "disabled" in page.text


async def test_people_and_admins_list_and_revoke_sign_ins_with_the_api_and_the_cli() -> None:
    async with (
        running_gateway({"lab": lab()}, auth=AUTH) as gw,
        httpx2.AsyncClient(base_url=gw.base_url) as http,
    ):
        _, key = await make_key(gw.gateway, {"lab": ["echo"]})
        _, other = await make_key(gw.gateway, {"lab": ["echo"]})
        client_id = await register(http)
        verifier, challenge = pkce()
        tokens = []
        for _ in range(2):
            code = await authorize(gw, client_id, challenge, key)
            tokens.append((await exchange(http, client_id, code, verifier)).json())
        mine = (await http.get("/api/me/grants", headers={"authorization": f"Bearer {key}"})).json()
        assert len(mine) == 2 and {g["client_name"] for g in mine} == {"hand"}
        assert (await http.get("/api/me/grants", headers={"authorization": f"Bearer {other}"})).json() == []
        stranger = await http.delete(f"/api/me/grants/{mine[0]['id']}", headers={"authorization": f"Bearer {other}"})
        assert stranger.status_code == 404
        done = await http.delete(f"/api/me/grants/{mine[0]['id']}", headers={"authorization": f"Bearer {key}"})
        assert done.status_code == 200 and done.json()["revoked_reason"] == "revoked by its owner"
        admin = {"authorization": "Bearer test-admin-token"}
        listed = (await http.get("/api/oauth/grants", headers=admin)).json()
        assert [g["id"] for g in listed] == [mine[1]["id"]]
        # The CLI, straight on the store: list, revoke; the gateway follows within a store poll.
        env = {**os.environ, "DATABASE_URL": str(gw.gateway.database_url)}
        shown = await anyio.run_process([str(MCPGW), "grants", "list", "--json"], env=env, check=False)
        assert [g["id"] for g in json.loads(shown.stdout)] == [mine[1]["id"]], shown.stderr
        revoked = await anyio.run_process([str(MCPGW), "grants", "revoke", mine[1]["id"]], env=env, check=False)
        assert revoked.returncode == 0, revoked.stderr
        missing = await anyio.run_process([str(MCPGW), "grants", "revoke", "nope"], env=env, check=False)
        assert missing.returncode == 1 and b"no sign-in with id nope" in missing.stderr
        bearer = {"authorization": f"Bearer {tokens[1]['access_token']}"}
        with anyio.fail_after(10):
            while await list_status(http, bearer) != 401:
                await anyio.sleep(0.2)
        assert await list_status(http, {"authorization": f"Bearer {tokens[0]['access_token']}"}) == 401


async def follow_until_client(http: httpx2.AsyncClient, response: httpx2.Response) -> httpx2.Response:
    """Follow redirects (gateway ⇄ IdP) until the one to the MCP client's redirect URI, which is not followed."""
    while response.status_code in (302, 303, 307) and not response.headers["location"].startswith(REDIRECT):
        response = await http.get(response.url.join(response.headers["location"]))
    return response


async def test_a_person_signs_in_with_the_company_identity_provider_and_gets_their_users_tools() -> None:
    port = free_port()
    async with authorization_server(metadata_at="both", scopes_supported=("openid", "email", "profile")) as idp:
        sso_client = idp.add_client([f"http://127.0.0.1:{port}/oauth/sso/callback"], auth_method="none")
        auth = {**AUTH, "oauth": {"sso": {"issuer": idp.issuer, "client_id": sso_client.client_id, "label": "Acme"}}}
        async with (
            running_gateway({"lab": lab()}, auth=auth, port=port) as gw,
            httpx2.AsyncClient(base_url=gw.base_url) as http,
        ):
            assert gw.gateway.store is not None
            await gw.gateway.store.upsert_user("alice")
            await gw.gateway.store.set_user_mcp_configs("alice", {"lab": ["echo"]})
            await gw.gateway.sync()
            client_id = await register(http)
            verifier, challenge = pkce()
            params = {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": REDIRECT,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "state": "s2",
                "resource": gw.url,
            }

            async def sign_in(user: str) -> httpx2.Response:
                async with httpx2.AsyncClient(timeout=30) as browser:
                    page = await follow_until_client(
                        browser, await browser.get(f"{gw.base_url}/authorize", params=params)
                    )
                    assert "Sign in with Acme" in page.text, page.text
                    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
                    request = re.search(r'name="request" value="([^"]+)"', page.text)
                    assert csrf and request
                    form = {"csrf_token": csrf.group(1), "request": request.group(1), "method": "sso"}
                    idp_page = await follow_until_client(browser, await browser.post(page.url, data=form))
                    assert idp_page.status_code == 200 and "Authorize" in idp_page.text, idp_page.text
                    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', idp_page.text))
                    approved = await browser.post(
                        idp_page.url.join("/authorize"), data={**fields, "user": user, "decision": "approve"}
                    )
                    return await follow_until_client(browser, approved)

            done = await sign_in("alice")
            assert done.status_code == 303, done.text
            query = parse_qs(urlparse(done.headers["location"]).query)
            assert query["state"] == ["s2"]
            tokens = (await exchange(http, client_id, query["code"][0], verifier)).json()
            async with oauth_session(gw, BearerAuth(tokens["access_token"])) as session:
                assert tool_names(await session.list_tools()) == ["lab-echo"]  # alice's grants
            [grant] = await gw.gateway.store.list_oauth_grants(user_id="alice")
            assert grant.subject_kind == "user"
            alice = await gw.gateway.store.get_user("alice")
            assert alice is not None and alice.email == "alice@example.com"
            # A user disabled on the gateway cannot sign in, and their tokens stop working.
            await gw.gateway.store.set_user_active("alice", False)
            await gw.gateway.sync()
            refused = await sign_in("alice")
            assert refused.status_code == 403 and "disabled" in refused.text
            assert await list_status(http, {"authorization": f"Bearer {tokens['access_token']}"}) == 401


class BearerAuth(httpx2.Auth):
    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx2.Request) -> Any:
        request.headers["authorization"] = f"Bearer {self.token}"
        yield request


def test_the_sso_client_secret_comes_from_the_environment() -> None:
    from mcp_gateway.config import GatewayConfig, expand_environment
    from mcp_gateway.errors import ConfigError

    sso = {"issuer": "https://idp.example", "client_id": "mcpgw", "client_secret": "${SSO_SECRET}"}
    config = GatewayConfig.model_validate({"auth": {"oauth": {"sso": sso}}})
    expanded = expand_environment(config, {"SSO_SECRET": "s3cr3t"}, source="gateway.yaml")
    assert expanded.auth.oauth.sso is not None and expanded.auth.oauth.sso.client_secret == "s3cr3t"
    with pytest.raises(ConfigError, match=r"auth\.oauth\.sso\.client_secret: environment variable SSO_SECRET"):
        expand_environment(config, {}, source="gateway.yaml")
