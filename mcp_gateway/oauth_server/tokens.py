"""The OAuth server's keys and what it signs: access tokens, client ids, consent requests.

Access tokens are JWTs (RFC 9068 `at+jwt`, ES256) verifiable with the gateway's own key and no
store lookup, so `/mcp` stays as fast with a token as with a virtual key. Claims: `iss`, `aud`
(the resource the client asked for, RFC 8707), `sub`, `exp`, `iat`, `jti`, `client_id`, `gid`
(the grant: what revocation and disabling act on) and who the token stands for — `vk` (a virtual
key's id), `uid` (a user) or `sid` (an anonymous session).

Client ids are stateless (registration writes nothing: `claude mcp list` registers on every run,
and a flood of registrations must not fill the store): the client's name and redirect URIs,
MAC'd. Consent requests travel from `/authorize` to the consent page the same way.

The keys (an EC P-256 signing key and a MAC secret) are made on first start and kept encrypted
in the vault (owner `gateway`, upstream `mcpgw-oauth`, kind `signing_key`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from typing import Any
from urllib.parse import urlparse

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from mcp_gateway.vault import Vault

VAULT_OWNER = "gateway"
VAULT_NAME = "mcpgw-oauth"
VAULT_KIND = "signing_key"
TOKEN_TYPE = "at+jwt"
REFRESH_PREFIX = "mcpgw-rt-"
CODE_PREFIX = "mcpgw-code-"


class TokenKeys:
    """The signing key and MAC secret; `verify` is what identity uses on every OAuth-authenticated request."""

    def __init__(self, signing_key: ECKey, kid: str, mac_secret: bytes) -> None:
        self._key = signing_key
        self.kid = kid
        self._mac = mac_secret

    @classmethod
    def generate(cls) -> TokenKeys:
        return cls(ECKey.generate_key("P-256", private=True), uuid.uuid4().hex[:16], secrets.token_bytes(32))

    @classmethod
    async def load_or_create(cls, vault: Vault) -> TokenKeys:
        stored = await vault.get(VAULT_OWNER, VAULT_NAME, VAULT_KIND)
        if stored is not None:
            secret = stored.secret
            return cls(ECKey.import_key(secret["jwk"]), str(secret["kid"]), base64.b64decode(secret["mac"]))
        keys = cls.generate()
        await vault.put(
            VAULT_OWNER,
            VAULT_NAME,
            VAULT_KIND,
            {"jwk": keys._key.as_dict(private=True), "kid": keys.kid, "mac": base64.b64encode(keys._mac).decode()},
        )
        return keys

    def access_token(self, claims: Mapping[str, Any], lifetime: int) -> tuple[str, int]:
        """A signed access token and its expiry (epoch seconds)."""
        now = int(time.time())
        expires = now + lifetime
        body = {**claims, "iat": now, "exp": expires, "jti": secrets.token_hex(8)}
        header = {"alg": "ES256", "kid": self.kid, "typ": TOKEN_TYPE}
        return jwt.encode(header, body, self._key), expires

    def verify(self, token: str) -> dict[str, Any] | None:
        """The claims of one of this gateway's access tokens that is still valid; None for anything else."""
        try:
            decoded = jwt.decode(token, self._key, algorithms=["ES256"])
        except (JoseError, ValueError):
            return None
        if decoded.header.get("kid") != self.kid or decoded.header.get("typ") != TOKEN_TYPE:
            return None
        claims = decoded.claims
        expires = claims.get("exp")
        if not isinstance(expires, int) or expires < time.time():
            return None
        return dict(claims)

    def is_ours(self, token: str) -> bool:
        """Cheap pre-check (no signature): a JWT whose header names this gateway's key."""
        head = token.partition(".")[0]
        try:
            header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
        except ValueError:
            return False
        return isinstance(header, dict) and header.get("kid") == self.kid and header.get("typ") == TOKEN_TYPE

    def seal(self, payload: Mapping[str, Any], *, prefix: str) -> str:
        """`payload` as URL-safe text only this gateway can have made (readable, not secret)."""
        body = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")
        return f"{prefix}{body}.{self._tag(prefix + body)}"

    def unseal(self, text: str, *, prefix: str) -> dict[str, Any] | None:
        if not text.startswith(prefix) or "." not in text:
            return None
        body, _, tag = text.rpartition(".")
        if not hmac.compare_digest(tag, self._tag(body)):
            return None
        payload = body[len(prefix) :]
        try:
            value = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def _tag(self, text: str) -> str:
        digest = hmac.new(self._mac, text.encode(), hashlib.sha256).digest()[:18]
        return base64.urlsafe_b64encode(digest).decode()


def new_secret(prefix: str) -> str:
    """A refresh token or an authorization code: 256 random bits; only its SHA-256 is stored."""
    return prefix + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class IssuedTokenCheck:
    """`identity.IssuedTokens`: this gateway's access tokens, minus those of revoked grants.

    `revoked` is the set of grants revoked within the last access-token lifetime (older ones'
    tokens have expired anyway), refreshed whenever the gateway follows the store.
    """

    def __init__(self, keys: TokenKeys, public_url: str | None, revoked: Callable[[], AbstractSet[str]]) -> None:
        self._keys = keys
        self._public_url = public_url.rstrip("/") if public_url else None
        self._revoked = revoked

    def is_ours(self, token: str) -> bool:
        return self._keys.is_ours(token)

    def claims(self, token: str) -> dict[str, Any] | None:
        claims = self._keys.verify(token)
        if claims is None or claims.get("gid") in self._revoked():
            return None
        return claims

    def audience_ok(self, audience: object, headers: Mapping[str, str]) -> bool:
        if not isinstance(audience, str):
            return False
        if self._public_url is not None:
            return audience == self._public_url + "/mcp"
        # Without a configured public URL the resource is the host the client used; the scheme is
        # not in the headers (a proxy may have ended TLS), so the host and path decide.
        parsed = urlparse(audience)
        return parsed.netloc == headers.get("host", "") and parsed.path == "/mcp"
