"""Identity resolution: header precedence, modes, enforcement, SSO JWTs — one layer, no network."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from mcp_gateway.errors import AuthError
from mcp_gateway.identity import (
    AuthSettings,
    IdentityMode,
    IdentityResolver,
    JwtSettings,
    JwtVerifier,
    KeyGrant,
    UserAccess,
    hash_key,
)

pytestmark = pytest.mark.anyio

TEAM_KEY = "sk-mcpgw-team-key"
ALICE_KEY = "sk-mcpgw-alice-key"
OFF_KEY = "sk-mcpgw-disabled"
CAROL_KEY = "sk-mcpgw-carol-key"
KEYS = {
    hash_key(TEAM_KEY): KeyGrant("vk1", "team", True, None, {"lab": ("echo",)}),
    hash_key(ALICE_KEY): KeyGrant("vk2", "alice's", True, "alice", {"lab": ("*",)}),
    hash_key(OFF_KEY): KeyGrant("vk3", "old", False, None, {}),
    hash_key(CAROL_KEY): KeyGrant("vk4", "carol's", True, "carol", {"lab": ("*",)}, user_active=False),
}
SIGNING_KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)
ISSUER = "https://idp.example.test"


async def lookup(key_hash: str) -> KeyGrant | None:
    return KEYS.get(key_hash)


async def user_grants(user_id: str, claims: Mapping[str, Any]) -> UserAccess:
    return UserAccess(active=user_id != "carol", grants={"lab": ("tool_*",)} if user_id == "bob" else {})


def resolver(*, enforce: bool = True, sso: bool = False) -> IdentityResolver:
    verifier = None
    if sso:
        public = {"keys": [SIGNING_KEY.as_dict(private=False)]}
        verifier = JwtVerifier(JwtSettings(issuer=ISSUER, audience="mcpgw", jwks=public))
    return IdentityResolver(AuthSettings(enforce_auth_on_inference=enforce), lookup, user_grants, verifier)


def token(**claims: Any) -> str:
    base = {"iss": ISSUER, "aud": "mcpgw", "sub": "bob", "exp": int(time.time()) + 600, "email": "bob@example.test"}
    return jwt.encode({"alg": "RS256", "kid": "k1"}, {**base, **claims}, SIGNING_KEY)


@pytest.mark.parametrize(
    "headers",
    [
        {"x-bf-vk": TEAM_KEY},
        {"authorization": f"Bearer {TEAM_KEY}"},
        {"x-api-key": TEAM_KEY},
    ],
)
async def test_each_vk_header_form_identifies_the_key(headers: dict[str, str]) -> None:
    identity = await resolver().resolve(headers)
    assert identity.mode is IdentityMode.VK
    assert identity.subject == "vk1" and identity.grants == {"lab": ("echo",)}


async def test_header_precedence_x_bf_vk_then_bearer_then_api_key() -> None:
    both = await resolver().resolve({"x-bf-vk": TEAM_KEY, "authorization": f"Bearer {ALICE_KEY}"})
    assert both.subject == "vk1"
    bearer_first = await resolver().resolve({"authorization": f"Bearer {ALICE_KEY}", "x-api-key": TEAM_KEY})
    assert bearer_first.subject == "alice"


async def test_user_owned_key_makes_the_caller_that_user() -> None:
    identity = await resolver().resolve({"authorization": f"Bearer {ALICE_KEY}"})
    assert identity.mode is IdentityMode.USER and identity.user_id == "alice"
    assert identity.virtual_key is not None and identity.virtual_key.id == "vk2"


async def test_unknown_and_inactive_keys_are_refused() -> None:
    with pytest.raises(AuthError, match="virtual key not found"):
        await resolver().resolve({"x-bf-vk": "sk-mcpgw-nope"})
    with pytest.raises(AuthError, match="virtual key not found"):
        await resolver(enforce=False).resolve({"x-api-key": "not-even-a-vk"})
    with pytest.raises(AuthError, match="virtual key is inactive"):
        await resolver().resolve({"authorization": f"Bearer {OFF_KEY}"})


async def test_enforcement_refuses_session_and_anonymous_with_the_accepted_headers() -> None:
    with pytest.raises(AuthError) as session:
        await resolver().resolve({"x-bf-mcp-session-id": "abc"})
    assert "enforce_auth_on_inference" in session.value.message and "x-bf-vk" in session.value.message
    with pytest.raises(AuthError) as anonymous:
        await resolver().resolve({})
    assert "Authorization: Bearer <vk>" in anonymous.value.message and "X-Api-Key" in anonymous.value.message


async def test_without_enforcement_session_and_anonymous_are_allowed() -> None:
    session = await resolver(enforce=False).resolve({"x-bf-mcp-session-id": "my-opaque-id"})
    assert session.mode is IdentityMode.SESSION
    assert session.subject and "my-opaque-id" not in session.subject, "the raw session id must not be kept"
    same = await resolver(enforce=False).resolve({"x-bf-mcp-session-id": "my-opaque-id"})
    assert same.key == session.key
    anonymous = await resolver(enforce=False).resolve({})
    assert anonymous.mode is IdentityMode.ANONYMOUS and anonymous.grants is None


async def test_a_bearer_that_is_not_a_vk_is_ignored() -> None:
    identity = await resolver(enforce=False).resolve({"authorization": "Bearer some-upstream-token"})
    assert identity.mode is IdentityMode.ANONYMOUS
    with pytest.raises(AuthError, match="authentication required"):
        await resolver().resolve({"authorization": "Bearer some-upstream-token"})


async def test_narrowing_headers_are_parsed() -> None:
    identity = await resolver().resolve(
        {"x-bf-vk": TEAM_KEY, "x-bf-mcp-include-clients": "lab, notes", "x-bf-mcp-include-tools": "lab-echo,notes-*"}
    )
    assert identity.include_clients == frozenset({"lab", "notes"})
    assert identity.include_tools == ("lab-echo", "notes-*")


async def test_sso_jwt_identifies_a_user_with_their_grants() -> None:
    identity = await resolver(sso=True).resolve({"authorization": f"Bearer {token()}"})
    assert identity.mode is IdentityMode.USER and identity.subject == "bob"
    assert identity.grants == {"lab": ("tool_*",)}


async def test_a_disabled_user_is_refused_by_sso_token_and_by_the_keys_they_own() -> None:
    with pytest.raises(AuthError, match="user carol is disabled"):
        await resolver(sso=True).resolve({"authorization": f"Bearer {token(sub='carol')}"})
    with pytest.raises(AuthError, match="belongs to user carol, who is disabled"):
        await resolver().resolve({"x-bf-vk": CAROL_KEY})
    assert (await resolver().resolve({"x-bf-vk": ALICE_KEY})).user_id == "alice"


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"iss": "https://evil.example"}, "iss"),
        ({"aud": "someone-else"}, "aud"),
        ({"exp": int(time.time()) - 3600}, "expired"),
    ],
)
async def test_sso_jwt_with_wrong_issuer_audience_or_expiry_is_refused(claims: dict[str, Any], reason: str) -> None:
    with pytest.raises(AuthError, match="SSO token rejected") as caught:
        await resolver(sso=True).resolve({"authorization": f"Bearer {token(**claims)}"})
    assert reason in caught.value.message.lower()


async def test_sso_jwt_signed_by_another_key_is_refused() -> None:
    other = RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)
    forged = jwt.encode({"alg": "RS256", "kid": "k1"}, {"iss": ISSUER, "aud": "mcpgw", "sub": "mallory"}, other)
    with pytest.raises(AuthError, match="SSO token rejected"):
        await resolver(sso=True).resolve({"authorization": f"Bearer {forged}"})
