"""The gateway's OAuth client (mcp_gateway/credentials/oauth/) against a real authorization server and a real
OAuth-protected MCP upstream, over real sockets: discovery, registration, consent, code exchange, refresh."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from mcp_gateway.config import OAuthClientSettings
from mcp_gateway.credentials.oauth import (
    AuthServer,
    ClientRegistration,
    TokenSet,
    authorization_url,
    client_for,
    code_from_callback,
    discover,
    exchange_code,
    obtain_client,
    refresh,
    register_client,
    requested_scopes,
)
from mcp_gateway.errors import OAuthError
from tests.oauth.authorization_server import MiniAuthorizationServer
from tests.oauth.fixtures import (
    CallbackReceiver,
    OAuthStack,
    callback_receiver,
    complete_consent,
    oauth_stack,
)
from tests.oauth.protected_upstream import token_hash
from tests.serving import free_port

pytestmark = pytest.mark.anyio

NO_CONFIG = OAuthClientSettings()


@dataclass
class Env:
    """One authorization server + protected upstream, a redirect URI that records callbacks, an HTTP client."""

    stack: OAuthStack
    receiver: CallbackReceiver
    http: httpx2.AsyncClient

    @property
    def auth_server(self) -> MiniAuthorizationServer:
        return self.stack.auth_server

    @property
    def upstream_url(self) -> str:
        return self.stack.upstream.url


@contextlib.asynccontextmanager
async def environment(auth: dict[str, Any] | None = None, upstream: dict[str, Any] | None = None) -> AsyncIterator[Env]:
    """A fresh stack built with the given `MiniAuthorizationServer` / `ProtectedUpstream` options."""
    async with (
        oauth_stack(auth, upstream) as stack,
        callback_receiver() as receiver,
        httpx2.AsyncClient(timeout=30) as http,
    ):
        yield Env(stack, receiver, http)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with environment() as value:
        yield value


async def _consent(
    env: Env, server: AuthServer, client: ClientRegistration, user: str, *, scopes: tuple[str, ...] = ()
) -> TokenSet:
    """The whole authorization code flow, the way the gateway will drive it."""
    state = f"flow-{len(env.receiver.received)}"
    url, verifier = authorization_url(server, client, state=state, scopes=scopes)
    final = await complete_consent(url, user, env.http)
    assert final.status_code == 200, final.text
    params = env.receiver.received[-1]
    assert params["state"] == state
    return await exchange_code(server, client, code=code_from_callback(params), code_verifier=verifier, http=env.http)


async def _registered(env: Env) -> tuple[AuthServer, ClientRegistration]:
    server = await discover(env.upstream_url, NO_CONFIG, env.http)
    client = await register_client(server, env.receiver.url, env.http)
    return server, client


async def _whoami(url: str, access_token: str) -> tuple[str, Any]:
    """Call the protected upstream with the official SDK client and the token as a bearer header."""
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {access_token}"}, timeout=30) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        result = await session.call_tool("whoami", {})
        assert not result.is_error
        text = "".join(block.text for block in result.content if block.type == "text")
        return text, result.structured_content


async def _status_with(url: str, access_token: str, http: httpx2.AsyncClient) -> int:
    """The upstream's HTTP status for an initialize request carrying `access_token`."""
    response = await http.post(
        url,
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        },
        headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json, text/event-stream"},
    )
    return response.status_code


# --- discovery ------------------------------------------------------------------------------------


async def test_discovery_follows_the_401_challenge(env: Env) -> None:
    server = await discover(env.upstream_url, NO_CONFIG, env.http)

    issuer = env.auth_server.issuer
    assert server.issuer == issuer
    assert server.authorization_endpoint == f"{issuer}/authorize"
    assert server.token_endpoint == f"{issuer}/token"
    assert server.registration_endpoint == f"{issuer}/register"
    assert server.resource == env.upstream_url
    assert server.code_challenge_methods == ("S256",)
    assert server.token_endpoint_auth_methods == ("client_secret_basic", "client_secret_post", "none")
    log = env.stack.upstream.http_log
    assert log[0] == ("POST", "/mcp", 401)
    assert log[1] == ("GET", "/.well-known/oauth-protected-resource/mcp", 200)
    assert len(log) == 2


@pytest.mark.parametrize(
    ("location", "expected_requests"),
    [
        ("path", [("GET", "/.well-known/oauth-protected-resource/mcp", 200)]),
        (
            "root",
            [
                ("GET", "/.well-known/oauth-protected-resource/mcp", 404),
                ("GET", "/.well-known/oauth-protected-resource", 200),
            ],
        ),
    ],
)
async def test_discovery_falls_back_to_well_known_metadata(
    location: str, expected_requests: list[tuple[str, str, int]]
) -> None:
    async with environment(upstream={"prm_location": location}) as env:
        server = await discover(env.upstream_url, NO_CONFIG, env.http)

        assert server.issuer == env.auth_server.issuer
        assert server.resource == env.upstream_url
        log = env.stack.upstream.http_log
        assert log[0] == ("POST", "/mcp", 401)
        assert log[1:] == expected_requests


async def test_upstream_without_resource_metadata_needs_a_configured_authorization_server() -> None:
    async with environment(upstream={"prm_location": "none"}) as env:
        with pytest.raises(OAuthError, match=r"auth\.authorization_server"):
            await discover(env.upstream_url, NO_CONFIG, env.http)

        configured = OAuthClientSettings(authorization_server=env.auth_server.issuer)
        server = await discover(env.upstream_url, configured, env.http)
        assert server.token_endpoint == env.auth_server.endpoint("token")
        assert server.resource == env.upstream_url


@pytest.mark.parametrize(
    ("issuer_path", "metadata_at"), [("", "rfc8414"), ("/tenant", "rfc8414"), ("", "openid"), ("/tenant", "openid")]
)
async def test_authorization_server_metadata_locations(issuer_path: str, metadata_at: str) -> None:
    async with environment(auth={"issuer_path": issuer_path, "metadata_at": metadata_at}) as env:
        server = await discover(env.upstream_url, NO_CONFIG, env.http)

        assert server.issuer == env.auth_server.issuer
        assert server.issuer.endswith(issuer_path)
        assert server.authorization_endpoint == f"{env.auth_server.issuer}/authorize"
        # The metadata is served at one location only, so finding it proves the URL construction; the
        # path-issuer flow must also work end to end (endpoints under the path).
        client = await register_client(server, env.receiver.url, env.http)
        token = await _consent(env, server, client, "alice")
        assert (await _whoami(env.upstream_url, token.access_token))[0] == "alice"


async def test_issuer_mismatch_is_refused(env: Env) -> None:
    env.auth_server.metadata_overrides = {"issuer": "http://127.0.0.1:9/impostor"}

    with pytest.raises(OAuthError, match="issuer") as caught:
        await discover(env.upstream_url, NO_CONFIG, env.http)
    assert "refusing" in str(caught.value)


async def test_authorization_server_without_s256_is_refused(env: Env) -> None:
    env.auth_server.metadata_overrides = {"code_challenge_methods_supported": ["plain"]}
    with pytest.raises(OAuthError, match="S256"):
        await discover(env.upstream_url, NO_CONFIG, env.http)

    env.auth_server.metadata_overrides = {"code_challenge_methods_supported": None}  # not advertised at all
    server = await discover(env.upstream_url, NO_CONFIG, env.http)
    assert server.code_challenge_methods is None
    with pytest.raises(OAuthError, match="PKCE"):
        await discover(env.upstream_url, NO_CONFIG, env.http, require_pkce_metadata=True)


async def test_protected_resource_metadata_for_another_resource_is_refused() -> None:
    # The root metadata describes .../mcp; a client asking about .../other/mcp must not use it (RFC 9728 §3.3).
    async with environment(upstream={"prm_location": "root"}) as env:
        other = env.stack.upstream.base_url + "/other/mcp"
        with pytest.raises(OAuthError, match="not for"):
            await discover(other, NO_CONFIG, env.http)
        assert ("GET", "/.well-known/oauth-protected-resource", 200) in env.stack.upstream.http_log


async def test_unreachable_upstream_is_a_transient_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp"
    async with httpx2.AsyncClient() as http:
        with pytest.raises(OAuthError, match="cannot reach") as caught:
            await discover(url, NO_CONFIG, http)
    assert caught.value.transient


async def test_scopes_come_from_the_upstream_unless_configured() -> None:
    async with environment(upstream={"required_scopes": ["mcp:tools"]}) as env:
        server = await discover(env.upstream_url, NO_CONFIG, env.http)
        assert server.suggested_scopes == ("mcp:tools",)
        assert requested_scopes(NO_CONFIG, server) == ("mcp:tools",)
        assert requested_scopes(OAuthClientSettings(scopes=["profile"]), server) == ("profile",)

        client = await register_client(server, env.receiver.url, env.http)
        unscoped = await _consent(env, server, client, "alice")
        assert await _status_with(env.upstream_url, unscoped.access_token, env.http) == 403  # insufficient_scope
        scoped = await _consent(env, server, client, "alice", scopes=requested_scopes(NO_CONFIG, server))
        assert scoped.scope == "mcp:tools"
        assert (await _whoami(env.upstream_url, scoped.access_token))[0] == "alice"


# --- client identity ------------------------------------------------------------------------------


async def test_dynamic_client_registration(env: Env) -> None:
    server = await discover(env.upstream_url, NO_CONFIG, env.http)
    assert client_for(NO_CONFIG, server, env.receiver.url) is None  # nothing configured: DCR is needed

    client = await register_client(server, env.receiver.url, env.http, client_name="mcpgw-test", scopes=["mcp:tools"])

    registered = env.auth_server.clients[client.client_id]
    assert registered.redirect_uris == [env.receiver.url]
    assert registered.client_name == "mcpgw-test"
    assert registered.scope == "mcp:tools"
    assert set(registered.grant_types) == {"authorization_code", "refresh_token"}
    assert client.client_secret and client.client_secret == registered.client_secret
    assert client.token_endpoint_auth_method == registered.token_endpoint_auth_method == "client_secret_basic"
    assert client.redirect_uri == env.receiver.url


async def test_registration_prefers_client_secret_post_when_basic_is_not_offered(env: Env) -> None:
    env.auth_server.metadata_overrides = {"token_endpoint_auth_methods_supported": ["client_secret_post", "none"]}
    server, client = await _registered(env)

    assert client.token_endpoint_auth_method == "client_secret_post"
    await _consent(env, server, client, "alice")
    assert env.auth_server.auth_methods_used == ["client_secret_post"]


async def test_without_registration_endpoint_nor_client_id_the_error_says_what_to_configure() -> None:
    async with environment(auth={"allow_registration": False}) as env:
        server = await discover(env.upstream_url, NO_CONFIG, env.http)
        assert server.registration_endpoint is None

        with pytest.raises(OAuthError, match=r"auth\.client_id"):
            await obtain_client(NO_CONFIG, server, env.receiver.url, env.http)


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post", "none"])
async def test_configured_client_without_registration(method: str) -> None:
    async with environment(auth={"allow_registration": False}) as env:
        env.auth_server.metadata_overrides = {
            "token_endpoint_auth_methods_supported": [method] if method != "none" else ["client_secret_basic", "none"]
        }
        registered = env.auth_server.add_client([env.receiver.url], auth_method=method)
        settings = OAuthClientSettings(client_id=registered.client_id, client_secret=registered.client_secret)
        server = await discover(env.upstream_url, settings, env.http)

        client = await obtain_client(settings, server, env.receiver.url, env.http)

        assert client.client_id == registered.client_id
        assert client.token_endpoint_auth_method == method
        token = await _consent(env, server, client, "carol")
        assert env.auth_server.auth_methods_used == [method]
        assert (await _whoami(env.upstream_url, token.access_token))[0] == "carol"
        assert len(env.auth_server.clients) == 2  # the introspection client and this one: nothing registered


# --- authorization code flow ----------------------------------------------------------------------


async def test_authorization_url_carries_pkce_state_and_resource(env: Env) -> None:
    server, client = await _registered(env)

    url, verifier = authorization_url(server, client, state="flow-42", scopes=["mcp:tools", "profile"])
    other_url, other_verifier = authorization_url(server, client, state="flow-43", scopes=[])

    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == server.authorization_endpoint
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    expected_challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert query == {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": env.receiver.url,
        "scope": "mcp:tools profile",
        "state": "flow-42",
        "code_challenge": expected_challenge,
        "code_challenge_method": "S256",
        "resource": env.upstream_url,
    }
    assert 43 <= len(verifier) <= 128
    assert other_verifier != verifier
    assert "scope" not in parse_qs(urlsplit(other_url).query)


async def test_full_flow_then_the_upstream_knows_the_user(env: Env) -> None:
    server, client = await _registered(env)
    before = time.time()

    token = await _consent(env, server, client, "alice")

    assert token.token_type == "Bearer"
    assert token.refresh_token
    assert token.expires_at is not None and before + 3590 <= token.expires_at <= time.time() + 3600
    [fields] = env.auth_server.token_request_fields
    assert fields["grant_type"] == "authorization_code"
    assert fields["resource"] == env.upstream_url  # RFC 8707 in the token request too, as MCP requires
    text, structured = await _whoami(env.upstream_url, token.access_token)
    assert text == "alice"
    assert structured == {"user": "alice"}
    calls = env.stack.upstream.calls
    assert [(c.user, c.token_hash, c.tool) for c in calls] == [("alice", token_hash(token.access_token), "whoami")]
    published = (await env.http.get(f"{env.stack.upstream.base_url}/test/calls")).json()
    assert published == [{"user": "alice", "token_hash": token_hash(token.access_token), "tool": "whoami"}]


async def test_two_users_get_their_own_tokens(env: Env) -> None:
    server, client = await _registered(env)

    alice = await _consent(env, server, client, "alice")
    bob = await _consent(env, server, client, "bob")

    assert alice.access_token != bob.access_token
    assert (await _whoami(env.upstream_url, bob.access_token))[0] == "bob"
    assert (await _whoami(env.upstream_url, alice.access_token))[0] == "alice"


async def test_token_for_another_resource_is_refused_by_the_upstream(env: Env) -> None:
    server, client = await _registered(env)
    elsewhere = dataclasses.replace(server, resource="http://127.0.0.1:1/elsewhere")

    token = await _consent(env, elsewhere, client, "alice")

    assert await _status_with(env.upstream_url, token.access_token, env.http) == 401
    assert any("audience" in reason for reason in env.stack.upstream.rejections)


async def test_denied_consent_is_reported(env: Env) -> None:
    server, client = await _registered(env)
    url, _ = authorization_url(server, client, state="flow-deny", scopes=[])

    await complete_consent(url, "alice", env.http, decision="deny")

    params = env.receiver.received[-1]
    assert params["state"] == "flow-deny"
    with pytest.raises(OAuthError, match="access_denied") as caught:
        code_from_callback(params)
    assert caught.value.error == "access_denied"


async def test_wrong_code_verifier_is_rejected(env: Env) -> None:
    server, client = await _registered(env)
    url, verifier = authorization_url(server, client, state="flow-pkce", scopes=[])
    await complete_consent(url, "alice", env.http)
    code = code_from_callback(env.receiver.received[-1])
    wrong = verifier[::-1]

    with pytest.raises(OAuthError) as caught:
        await exchange_code(server, client, code=code, code_verifier=wrong, http=env.http)

    assert caught.value.error == "invalid_grant"
    assert env.auth_server.tokens_issued["authorization_code"] == 0


# --- refresh --------------------------------------------------------------------------------------


async def test_refresh_before_expiry_rotates_tokens(env: Env) -> None:
    env.auth_server.access_token_ttl = 2
    server, client = await _registered(env)
    token = await _consent(env, server, client, "alice")
    assert token.expires_soon(time.time())  # 2 s left is within the default 60 s skew
    assert not token.expires_soon(time.time(), skew=0)

    renewed = await refresh(server, client, token, env.http)

    assert renewed.access_token != token.access_token
    assert renewed.refresh_token and renewed.refresh_token != token.refresh_token
    assert env.auth_server.token_requests["refresh_token"] == 1
    assert env.auth_server.token_request_fields[-1]["resource"] == env.upstream_url
    assert (await _whoami(env.upstream_url, renewed.access_token))[0] == "alice"
    with pytest.raises(OAuthError) as caught:  # the rotated-out refresh token is dead
        await refresh(server, client, token, env.http)
    assert caught.value.error == "invalid_grant"


async def test_refresh_keeps_the_refresh_token_when_not_rotated(env: Env) -> None:
    env.auth_server.rotate_refresh_tokens = False
    server, client = await _registered(env)
    token = await _consent(env, server, client, "alice")

    first = await refresh(server, client, token, env.http)
    second = await refresh(server, client, first, env.http)

    assert first.refresh_token == second.refresh_token == token.refresh_token
    assert len({token.access_token, first.access_token, second.access_token}) == 3
    assert first.scope == token.scope


async def test_expired_access_token_is_refused_and_refresh_recovers(env: Env) -> None:
    env.auth_server.access_token_ttl = 1
    server, client = await _registered(env)
    token = await _consent(env, server, client, "alice")
    assert token.expires_at is not None
    await anyio.sleep(max(0.0, token.expires_at - time.time()) + 0.2)

    assert await _status_with(env.upstream_url, token.access_token, env.http) == 401

    env.auth_server.access_token_ttl = 3600
    renewed = await refresh(server, client, token, env.http)
    assert (await _whoami(env.upstream_url, renewed.access_token))[0] == "alice"


async def test_refresh_after_revocation_needs_reauthorization(env: Env) -> None:
    server, client = await _registered(env)
    alice = await _consent(env, server, client, "alice")
    bob = await _consent(env, server, client, "bob")
    assert env.auth_server.revoke_refresh_tokens("alice") == 1

    with pytest.raises(OAuthError) as caught:
        await refresh(server, client, alice, env.http)

    assert caught.value.error == "invalid_grant"
    assert not caught.value.transient
    message = str(caught.value)
    assert server.token_endpoint in message
    assert alice.refresh_token and alice.refresh_token not in message
    assert client.client_secret and client.client_secret not in message
    assert (await refresh(server, client, bob, env.http)).access_token  # bob is unaffected


async def test_refresh_without_refresh_token_fails_clearly(env: Env) -> None:
    server, client = await _registered(env)
    token = TokenSet("at", None, None, "Bearer", None)

    with pytest.raises(OAuthError, match="authorize again"):
        await refresh(server, client, token, env.http)
    assert env.auth_server.token_requests["refresh_token"] == 0


# --- failures never leak secrets ------------------------------------------------------------------


async def test_errors_name_the_endpoint_but_never_the_secrets(env: Env) -> None:
    server, client = await _registered(env)
    url, verifier = authorization_url(server, client, state="flow-x", scopes=[])
    await complete_consent(url, "alice", env.http)
    code = code_from_callback(env.receiver.received[-1])
    secret = client.client_secret
    assert secret

    wrong_secret = dataclasses.replace(client, client_secret="not-the-" + secret)
    with pytest.raises(OAuthError) as bad_client:
        await exchange_code(server, wrong_secret, code=code, code_verifier=verifier, http=env.http)
    assert bad_client.value.error == "invalid_client"

    # A provider that echoes what it received must not get the secret, code or verifier into the message.
    echoed = f"bad credentials {secret} for code {code} and verifier {verifier}"
    env.auth_server.token_endpoint_override = (
        400,
        "application/json",
        json.dumps({"error": "invalid_request", "error_description": echoed}),
    )
    with pytest.raises(OAuthError) as echoing:
        await exchange_code(server, client, code=code, code_verifier=verifier, http=env.http)
    assert echoing.value.error == "invalid_request"
    assert "[redacted]" in str(echoing.value)

    for error in (bad_client.value, echoing.value):
        message = str(error)
        assert server.token_endpoint in message
        for sensitive in (secret, "not-the-" + secret, code, verifier):
            assert sensitive not in message
            assert sensitive not in repr(error)


async def test_non_json_and_server_errors_from_the_token_endpoint(env: Env) -> None:
    server, client = await _registered(env)
    token = await _consent(env, server, client, "alice")

    env.auth_server.token_endpoint_override = (200, "text/html", "<html>maintenance</html>")
    with pytest.raises(OAuthError, match="JSON") as not_json:
        await refresh(server, client, token, env.http)
    assert server.token_endpoint in str(not_json.value)

    env.auth_server.token_endpoint_override = (503, "text/plain", "down")
    with pytest.raises(OAuthError, match="503") as unavailable:
        await refresh(server, client, token, env.http)
    assert unavailable.value.transient

    env.auth_server.token_endpoint_override = (200, "application/json", json.dumps({"token_type": "Bearer"}))
    with pytest.raises(OAuthError, match="access_token"):
        await refresh(server, client, token, env.http)

    dead = dataclasses.replace(server, token_endpoint=f"http://127.0.0.1:{free_port()}/token")
    with pytest.raises(OAuthError, match="cannot reach") as unreachable:
        await refresh(dead, client, token, env.http)
    assert unreachable.value.transient
    assert token.refresh_token and token.refresh_token not in str(unreachable.value)


# --- value types ----------------------------------------------------------------------------------


def test_token_set_round_trips_and_hides_tokens() -> None:
    token = TokenSet("access-secret-value", "refresh-secret-value", 1_000.0, "Bearer", "mcp:tools")

    assert TokenSet.from_dict(json.loads(json.dumps(token.to_dict()))) == token
    for text in (repr(token), str(token)):
        assert "access-secret-value" not in text
        assert "refresh-secret-value" not in text
    assert token.expires_soon(now=950.0)
    assert not token.expires_soon(now=900.0)
    assert token.expires_soon(now=995.0, skew=0.0) is False
    assert TokenSet("a", None, None, "Bearer", None).expires_soon(now=1e12) is False
    with pytest.raises(ValueError):
        TokenSet.from_dict({"access_token": "a"})


def test_client_registration_round_trips_and_hides_the_secret() -> None:
    client = ClientRegistration("cid", "very-secret", "http://127.0.0.1/cb", "client_secret_post", 5.0)
    public = ClientRegistration("pid", None, "http://127.0.0.1/cb")

    assert ClientRegistration.from_dict(json.loads(json.dumps(client.to_dict()))) == client
    assert ClientRegistration.from_dict(public.to_dict()) == public
    assert "very-secret" not in repr(client)
    assert public.token_endpoint_auth_method == "none"
    assert ClientRegistration("c", "s", "http://x/cb").token_endpoint_auth_method == "client_secret_basic"
    assert client.secret_expired(now=6.0) and not client.secret_expired(now=4.0)
    with pytest.raises(ValueError):
        ClientRegistration.from_dict({**client.to_dict(), "auth_method": "private_key_jwt"})


def _example_server() -> AuthServer:
    return AuthServer(
        issuer="https://as.example",
        authorization_endpoint="https://as.example/authorize",
        token_endpoint="https://as.example/token",
        registration_endpoint=None,
        resource="https://mcp.example/mcp",
        scopes_supported=("a", "b"),
        code_challenge_methods=None,
        token_endpoint_auth_methods=("client_secret_post",),
        suggested_scopes=("a",),
    )


def test_auth_server_round_trips() -> None:
    server = _example_server()
    assert AuthServer.from_dict(json.loads(json.dumps(server.to_dict()))) == server


def test_callback_from_another_issuer_is_refused() -> None:
    server = _example_server()

    assert code_from_callback({"code": "c1", "state": "s", "iss": server.issuer}, server) == "c1"
    assert code_from_callback({"code": "c2", "state": "s"}, server) == "c2"  # RFC 9207 `iss` is optional
    with pytest.raises(OAuthError, match="another authorization server"):
        code_from_callback({"code": "c3", "iss": "https://impostor.example"}, server)
    with pytest.raises(OAuthError, match="no code"):
        code_from_callback({"state": "s"})
