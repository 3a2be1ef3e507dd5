"""Who is calling: request headers → `Identity`. Nothing else in the gateway reads auth headers.

Precedence, first match wins:
1. A virtual key, from `x-bf-vk`, then `Authorization: Bearer sk-mcpgw-…`, then `X-Api-Key`.
   A key owned by a user makes the caller that user (mode `user`); otherwise mode `vk`.
2. An SSO user: `Authorization: Bearer <JWT>` validated against the configured issuer/JWKS.
3. `x-bf-mcp-session-id: <opaque>` (mode `session`) — only when `enforce_auth_on_inference` is off.
4. Nothing: mode `anonymous` — likewise only when enforcement is off.

A bearer token that is neither a VK nor (with SSO configured) a JWT is ignored: it is never
forwarded to any upstream. Secrets never leave this module: an `Identity` carries the VK's id
and a hash of the session id, not the key or the raw session id.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import httpx2
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from pydantic import BaseModel, ConfigDict, Field

from mcp_gateway.errors import AuthError, IdentityRequired

if TYPE_CHECKING:
    from mcp_gateway.store.records import VirtualKeyRecord

logger = logging.getLogger(__name__)

VK_PREFIX = "sk-mcpgw-"
VK_HEADER = "x-bf-vk"
API_KEY_HEADER = "x-api-key"
SESSION_HEADER = "x-bf-mcp-session-id"
INCLUDE_CLIENTS_HEADER = "x-bf-mcp-include-clients"
INCLUDE_TOOLS_HEADER = "x-bf-mcp-include-tools"

ACCEPTED_CREDENTIALS = (
    "send a virtual key as 'Authorization: Bearer <vk>', 'x-bf-vk: <vk>' or 'X-Api-Key: <vk>'"
    ", or an SSO token as 'Authorization: Bearer <jwt>'"
)


class IdentityMode(enum.StrEnum):
    USER = "user"  # an SSO user, or the owner of a user-owned virtual key
    VK = "vk"  # a virtual key that belongs to no user
    SESSION = "session"  # an opaque client-chosen session id, re-sent on every call
    ANONYMOUS = "anonymous"  # nothing at all


@dataclass(frozen=True, slots=True)
class KeyGrant:
    """What the identity layer needs to know about a virtual key (never the key itself)."""

    id: str
    name: str
    active: bool
    user_id: str | None
    mcp_configs: Mapping[str, tuple[str, ...]]
    user_active: bool = True
    """False when the key's owner is disabled: the key is refused with them."""
    llm: Mapping[str, Any] | None = None
    """The key's LLM policy (allowed models, budgets) as stored; None: no limits."""


@dataclass(frozen=True, slots=True)
class UserAccess:
    """What the identity layer needs to know about an SSO user."""

    active: bool
    grants: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Identity:
    mode: IdentityMode
    subject: str | None
    """User id, VK id, or a hash of the session id; None when anonymous."""
    virtual_key: KeyGrant | None = None
    user_id: str | None = None
    grants: Mapping[str, tuple[str, ...]] | None = None
    """upstream → tool patterns from the VK (or the SSO user); None: only global upstreams."""
    include_clients: frozenset[str] | None = None
    include_tools: tuple[str, ...] | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Stable, secret-free id of the principal, e.g. for binding sessions and pooling credentials."""
        return f"{self.mode.value}:{self.subject or '-'}"

    def describe(self) -> str:
        return f"{self.mode.value} {self.subject}" if self.subject else self.mode.value


class JwtSettings(BaseModel):
    """SSO: which JWTs identify users."""

    model_config = ConfigDict(extra="forbid")

    issuer: str
    audience: str | None = None
    jwks_url: str | None = None
    jwks: dict[str, Any] | None = Field(default=None, description="Inline JWK set instead of jwks_url.")
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256", "EdDSA"])
    user_claim: str = "sub"
    email_claim: str = "email"
    jwks_cache_seconds: float = 600


class SsoSettings(BaseModel):
    """Sign-in through the company's identity provider on the consent page (OpenID Connect, code + PKCE)."""

    model_config = ConfigDict(extra="forbid")

    issuer: str = Field(description="The IdP's issuer URL; its /.well-known/openid-configuration is read.")
    client_id: str
    client_secret: str | None = Field(default=None, description="For confidential clients; ${VAR} allowed.")
    scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile"])
    user_claim: str = Field(default="sub", description="The userinfo claim that becomes the mcpgw user id.")
    email_claim: str = "email"
    label: str = Field(default="your company account", description="Shown on the button: 'Sign in with …'.")


class OAuthServerSettings(BaseModel):
    """The gateway as an OAuth 2.1 authorization server for its own `/mcp` (MCP hosts' "Authenticate")."""

    model_config = ConfigDict(extra="forbid")

    access_token_seconds: int = Field(default=600, ge=30, le=86400, description="Lifetime of an access token.")
    refresh_token_days: float = Field(default=30, gt=0, description="Lifetime of a refresh token (rotated on use).")
    allow_anonymous: bool = Field(
        default=False,
        description="The consent page offers 'continue without an account': the client gets a token for a new "
        "anonymous session (sees only upstreams with allow_on_all_virtual_keys).",
    )
    sso: SsoSettings | None = Field(
        default=None, description="Offer sign-in with the company's identity provider on the consent page."
    )


class AuthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enforce_auth_on_inference: bool = True
    jwt: JwtSettings | None = None
    mcp_auth: Literal["headers", "oauth", "both"] = Field(
        default="both",
        description="What /mcp accepts: virtual keys and SSO tokens in headers, tokens issued by this gateway's "
        "OAuth server (MCP hosts' sign-in), or both.",
    )
    oauth: OAuthServerSettings = Field(default_factory=OAuthServerSettings)


KeyLookup = Callable[[str], Awaitable[KeyGrant | None]]
"""Find a virtual key by the SHA-256 hex of the full key."""

UserLookup = Callable[[str, Mapping[str, Any]], Awaitable[UserAccess | None]]
"""Record an SSO user's sign-in (id, claims) and say whether they may come in, with which grants."""

KeyByIdLookup = Callable[[str], Awaitable[KeyGrant | None]]
"""Find a virtual key by its id (for tokens issued by this gateway's OAuth server)."""


class IssuedTokens(Protocol):
    """This gateway's own access tokens (`oauth_server.tokens.TokenKeys` with the revocation list)."""

    def is_ours(self, token: str) -> bool: ...

    def claims(self, token: str) -> dict[str, Any] | None:
        """The claims of a valid, unrevoked token; None otherwise."""
        ...

    def audience_ok(self, audience: object, headers: Mapping[str, str]) -> bool:
        """Whether a token for `audience` may be used on the `/mcp` these headers reached (RFC 8707)."""
        ...


OAUTH_REJECTED = "the access token is invalid, expired or revoked; sign in again (your MCP client's Authenticate)"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class JwtVerifier:
    """Validates SSO JWTs (signature, issuer, audience, expiry) against a cached JWK set."""

    def __init__(self, settings: JwtSettings, *, clock: Callable[[], float] = time.time) -> None:
        if settings.jwks is None and settings.jwks_url is None:
            raise ValueError("auth.jwt needs jwks_url or jwks")
        self.settings = settings
        self._clock = clock
        self._keys: KeySet | None = KeySet.import_key_set(settings.jwks) if settings.jwks else None  # type: ignore[arg-type]
        self._fetched_at = 0.0

    @staticmethod
    def looks_like_jwt(token: str) -> bool:
        return token.count(".") == 2 and token.startswith("ey")

    async def _key_set(self, *, refresh: bool = False) -> KeySet:
        if self.settings.jwks is not None and self._keys is not None:
            return self._keys
        stale = self._clock() - self._fetched_at > self.settings.jwks_cache_seconds
        if self._keys is None or stale or refresh:
            assert self.settings.jwks_url is not None
            try:
                async with httpx2.AsyncClient(timeout=10) as client:
                    response = await client.get(self.settings.jwks_url)
                    response.raise_for_status()
                    self._keys = KeySet.import_key_set(response.json())
                    self._fetched_at = self._clock()
            except (httpx2.HTTPError, ValueError, JoseError) as exc:
                logger.warning("cannot fetch JWKS from %s: %s", self.settings.jwks_url, exc)
                if self._keys is None:
                    raise AuthError(
                        "SSO token cannot be checked right now (identity provider keys unavailable)"
                    ) from None
        return self._keys

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims; raises AuthError with a reason a user can act on."""
        keys = await self._key_set()
        try:
            try:
                decoded = jwt.decode(token, keys, algorithms=self.settings.algorithms)
            except JoseError as exc:
                if "key" not in str(exc).lower() or self.settings.jwks_url is None:
                    raise
                decoded = jwt.decode(token, await self._key_set(refresh=True), algorithms=self.settings.algorithms)
            options: dict[str, Any] = {
                "iss": {"essential": True, "value": self.settings.issuer},
                "exp": {"essential": True},
            }
            if self.settings.audience:
                options["aud"] = {"essential": True, "value": self.settings.audience}
            jwt.JWTClaimsRegistry(now=int(self._clock()), leeway=30, **options).validate(decoded.claims)
        except JoseError as exc:
            raise AuthError(f"SSO token rejected: {exc.description or exc.error}") from None
        except ValueError:
            raise AuthError("SSO token rejected: malformed token") from None
        return dict(decoded.claims)


class IdentityResolver:
    """Headers → Identity, with the enforcement rule applied."""

    def __init__(
        self,
        settings: AuthSettings,
        lookup_key: KeyLookup,
        lookup_user: UserLookup | None = None,
        jwt_verifier: JwtVerifier | None = None,
        *,
        lookup_key_by_id: KeyByIdLookup | None = None,
        issued: Callable[[], IssuedTokens | None] | None = None,
    ) -> None:
        """`issued`: this gateway's OAuth tokens, once the server's keys are loaded (None before)."""
        self.settings = settings
        self._lookup_key = lookup_key
        self._lookup_user = lookup_user
        self._jwt = jwt_verifier
        self._lookup_key_by_id = lookup_key_by_id
        self._issued = issued

    async def resolve(self, headers: Mapping[str, str], *, face: str = "mcp") -> Identity:
        """Raises AuthError (→ HTTP 401) when credentials are invalid, or missing while enforced.

        `face`: `mcp` applies `auth.mcp_auth` (headers, OAuth tokens issued here, or both); tokens
        issued here are only ever valid for `/mcp` (their audience), never on other faces.
        """
        narrowing = _narrowing(headers)
        authorization = headers.get("authorization", "")
        scheme, _, bearer = authorization.partition(" ")
        bearer = bearer.strip() if scheme.lower() == "bearer" else ""
        mode = self.settings.mcp_auth if face == "mcp" else "headers"

        issued = self._issued() if self._issued is not None and mode != "headers" else None
        if bearer and issued is not None and not bearer.startswith(VK_PREFIX) and issued.is_ours(bearer):
            return await self._from_issued(issued, bearer, headers, narrowing)
        key = headers.get(VK_HEADER) or (bearer if bearer.startswith(VK_PREFIX) else "") or headers.get(API_KEY_HEADER)
        if key and mode == "oauth":
            raise AuthError("this gateway's /mcp accepts only sign-in tokens: use your MCP client's Authenticate")
        if key:
            return await self._from_key(key.strip(), narrowing)
        if bearer and self._jwt is not None and self._jwt.looks_like_jwt(bearer):
            claims = await self._jwt.verify(bearer)
            subject = claims.get(self._jwt.settings.user_claim)
            if not isinstance(subject, str) or not subject:
                raise AuthError(f"SSO token rejected: no '{self._jwt.settings.user_claim}' claim")
            access = await self._lookup_user(subject, claims) if self._lookup_user else None
            if access is not None and not access.active:
                raise AuthError(f"user {subject} is disabled on this gateway")
            grants = access.grants if access is not None else None
            return Identity(IdentityMode.USER, subject, user_id=subject, claims=claims, grants=grants, **narrowing)

        session = headers.get(SESSION_HEADER, "").strip()
        if self.settings.enforce_auth_on_inference:
            if session:
                raise AuthError(
                    "session mode (x-bf-mcp-session-id) needs enforce_auth_on_inference: false on this gateway; "
                    + ACCEPTED_CREDENTIALS
                )
            raise AuthError("authentication required: " + ACCEPTED_CREDENTIALS)
        if session:
            return Identity(IdentityMode.SESSION, hash_key(session)[:32], **narrowing)
        return Identity(IdentityMode.ANONYMOUS, None, **narrowing)

    async def _from_issued(
        self, issued: IssuedTokens, token: str, headers: Mapping[str, str], narrowing: dict[str, Any]
    ) -> Identity:
        claims = issued.claims(token)
        if claims is None or not issued.audience_ok(claims.get("aud"), headers):
            raise AuthError(OAUTH_REJECTED)
        if isinstance(claims.get("vk"), str):
            grant = await self._lookup_key_by_id(claims["vk"]) if self._lookup_key_by_id else None
            if grant is None or not grant.active:
                raise AuthError("the virtual key this sign-in was made with is disabled or deleted; sign in again")
            if not grant.user_active:
                raise AuthError(f"virtual key belongs to user {grant.user_id}, who is disabled on this gateway")
            return dataclasses.replace(key_identity(grant, **narrowing), claims=claims)
        if isinstance(claims.get("uid"), str):
            user_id = claims["uid"]
            access = await self._lookup_user(user_id, {}) if self._lookup_user else None
            if access is not None and not access.active:
                raise AuthError(f"user {user_id} is disabled on this gateway")
            grants = access.grants if access is not None else None
            return Identity(IdentityMode.USER, user_id, user_id=user_id, claims=claims, grants=grants, **narrowing)
        if isinstance(claims.get("sid"), str):
            return Identity(IdentityMode.SESSION, claims["sid"], claims=claims, **narrowing)
        raise AuthError(OAUTH_REJECTED)

    async def _from_key(self, key: str, narrowing: dict[str, Any]) -> Identity:
        grant = await self._lookup_key(hash_key(key)) if key.startswith(VK_PREFIX) else None
        if grant is None:
            raise AuthError("virtual key not found")
        if not grant.active:
            raise AuthError("virtual key is inactive")
        if not grant.user_active:
            raise AuthError(f"virtual key belongs to user {grant.user_id}, who is disabled on this gateway")
        return key_identity(grant, **narrowing)


def key_grant(record: VirtualKeyRecord, *, user_active: bool = True) -> KeyGrant:
    """What identity needs to know of a stored key (`user_active`: its owner's standing, when known)."""
    return KeyGrant(
        id=record.id,
        name=record.name,
        active=record.active,
        user_id=record.user_id,
        mcp_configs=dict(record.mcp_configs),
        user_active=user_active,
        llm=record.llm,
    )


def key_identity(grant: KeyGrant, **narrowing: Any) -> Identity:
    """The caller a virtual key makes: its owner (mode `user`) when it has one, else the key itself (mode `vk`)."""
    if grant.user_id:
        return Identity(
            IdentityMode.USER,
            grant.user_id,
            virtual_key=grant,
            user_id=grant.user_id,
            grants=grant.mcp_configs,
            **narrowing,
        )
    return Identity(IdentityMode.VK, grant.id, virtual_key=grant, grants=grant.mcp_configs, **narrowing)


def _narrowing(headers: Mapping[str, str]) -> dict[str, Any]:
    clients = headers.get(INCLUDE_CLIENTS_HEADER)
    tools = headers.get(INCLUDE_TOOLS_HEADER)
    return {
        "include_clients": frozenset(_split(clients)) if clients is not None else None,
        "include_tools": tuple(_split(tools)) if tools is not None else None,
    }


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


IDENTITY_HINT = (  # how an anonymous caller gets an identity: shown in tool errors
    "send a Virtual Key (x-bf-vk), authenticate as a user, or set x-bf-mcp-session-id to any opaque string "
    "you'll re-send on subsequent calls"
)


def owner_label(identity: Identity | None) -> str:
    """How the form names the credential's owner: something the person recognises (never a secret)."""
    if identity is None:
        return ""
    if identity.virtual_key is not None:
        owner = f"the virtual key '{identity.virtual_key.name}'"
        return owner + (f" of user {identity.user_id}" if identity.user_id else "")
    if identity.mode is IdentityMode.USER and identity.user_id:
        email = identity.claims.get("email")
        return f"user {identity.user_id}" + (f" ({email})" if isinstance(email, str) else "")
    if identity.mode is IdentityMode.SESSION:
        return "the MCP session id (x-bf-mcp-session-id) your client sends"
    return ""


def identity_key(identity: Identity | None, upstream: str, what: str) -> str:
    """The vault owner for this caller; anonymous callers have none and are told how to get one."""
    if identity is None or identity.mode is IdentityMode.ANONYMOUS or not identity.subject:
        raise IdentityRequired(upstream, f"per-user {what} for {upstream} requires an identity: {IDENTITY_HINT}")
    return identity.key


IDENTITY_SCOPE_KEY = "mcpgw.identity"
"""Where a face's identity middleware leaves the caller's `Identity` in the ASGI scope's `state`."""


HEADERS_SCOPE_KEY = "mcpgw.headers"


def headers_in_scope(scope: MutableMapping[str, Any]) -> dict[str, str]:
    """An ASGI request's headers by lower-case name, decoded once per request and kept in the scope's state.

    The identity middleware reads them to resolve the caller, and the face behind it (routing
    rules, pass-through headers) reads them again: one decode serves both.
    """
    state = scope.setdefault("state", {})
    headers: dict[str, str] | None = state.get(HEADERS_SCOPE_KEY)
    if headers is None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        state[HEADERS_SCOPE_KEY] = headers
    return headers


def identity_in_scope(scope: Mapping[str, Any]) -> Identity | None:
    """The caller the identity middleware resolved for this request; None if the request did not pass it.

    Here rather than beside the middleware (`http/identify.py`) so that every face — the LLM
    routes included, which must not import `mcp_gateway.http` — reads the caller the same way.
    """
    identity = scope.get("state", {}).get(IDENTITY_SCOPE_KEY)
    return identity if isinstance(identity, Identity) else None
