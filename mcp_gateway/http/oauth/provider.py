"""The gateway's OAuth server behind the MCP SDK's authorization-server routes (`/authorize`, `/token`, `/revoke`).

Why the SDK's routes and not authlib's server: authlib's authorization-server core is synchronous
(its grant and model hooks cannot await the async store), while the SDK's handlers are async
Starlette endpoints over a provider protocol — the same code MCP clients (the SDK's own client,
Claude Code) are built against, with the RFC 6749/7591/7009 error bodies they expect. The
gateway supplies the provider: stateless clients (`tokens.TokenKeys.seal`), the consent step,
codes and refresh tokens in the store (hashed), access tokens as JWTs (`oauth_server/tokens.py`).

Refresh tokens rotate on every use; a used one presented again (a stolen copy, or a client bug)
revokes its whole grant (RFC 9700 §4.14.2). A reused authorization code revokes the grant made
from it. A refresh for a key or user that is now disabled is refused and revokes the grant.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlparse

from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    AuthorizeError,
    RefreshToken,
    TokenError,
)
from mcp.shared.auth import InvalidRedirectUriError, OAuthClientInformationFull, OAuthToken
from pydantic import AnyUrl

from mcp_gateway.identity import KeyGrant, OAuthServerSettings, UserAccess
from mcp_gateway.oauth_server.tokens import CODE_PREFIX, REFRESH_PREFIX, TokenKeys, digest, new_secret
from mcp_gateway.store import Store

CLIENT_PREFIX = "mcpgw-client-"
CONSENT_PREFIX = "mcpgw-consent-"
SCOPE = "mcp"
CONSENT_SECONDS = 900
CODE_SECONDS = 120
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


class GatewayClient(OAuthClientInformationFull):
    """A registered client; loopback redirect URIs match on any port (RFC 8252 §7.3)."""

    def validate_redirect_uri(self, redirect_uri: AnyUrl | None) -> AnyUrl:
        if redirect_uri is not None and self.redirect_uris:
            wanted = urlparse(str(redirect_uri))
            for registered in self.redirect_uris:
                known = urlparse(str(registered))
                if wanted.hostname in LOOPBACK_HOSTS and (known.scheme, known.hostname, known.path) == (
                    wanted.scheme,
                    wanted.hostname,
                    wanted.path,
                ):
                    return redirect_uri
        return super().validate_redirect_uri(redirect_uri)


class GatewayCode(AuthorizationCode):
    request: dict[str, Any]
    code_hash: str


class GatewayRefresh(RefreshToken):
    grant_id: str
    request: dict[str, Any]


class GatewayOAuthProvider:
    """`OAuthAuthorizationServerProvider` over the store and the gateway's token keys."""

    def __init__(
        self,
        settings: OAuthServerSettings,
        public_url: str | None,
        store: Callable[[], Store],
        keys: Callable[[], TokenKeys],
        key_by_id: Callable[[str], Awaitable[KeyGrant | None]],
        user_by_id: Callable[[str], Awaitable[UserAccess | None]],
        revoked: Callable[[str], None] = lambda grant_id: None,
    ) -> None:
        """`revoked`: told of each grant revoked here, so this process refuses its tokens at once
        (other replicas follow the store within one poll)."""
        self.settings = settings
        self.public_url = public_url.rstrip("/") if public_url else None
        """How users reach the gateway; None: each request's own scheme and host (issuer, resource)."""
        self._store = store
        self._keys = keys
        self.keys = keys
        """The gateway's token keys (raises `NotReady` while not running)."""
        self._key_by_id = key_by_id
        self._user_by_id = user_by_id
        self._revoked = revoked

    # -- clients ------------------------------------------------------------------------------

    def client_id_for(self, name: str | None, redirect_uris: list[str]) -> str:
        return self._keys().seal({"n": name, "r": redirect_uris, "t": int(time.time())}, prefix=CLIENT_PREFIX)

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        payload = self._keys().unseal(client_id, prefix=CLIENT_PREFIX)
        if payload is None:
            return None
        return GatewayClient(
            client_id=client_id,
            client_name=payload.get("n"),
            redirect_uris=[AnyUrl(uri) for uri in payload.get("r") or []],
            token_endpoint_auth_method="none",
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            scope=SCOPE,
            client_id_issued_at=payload.get("t"),
        )

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        raise NotImplementedError("registration is served by mcpgw's own /register (stateless client ids)")

    # -- authorize → consent ------------------------------------------------------------------

    def resource_ok(self, resource: str) -> bool:
        """A resource (RFC 8707) this server issues tokens for: its `/mcp`."""
        if self.public_url is not None:
            return resource.rstrip("/") == self.public_url + "/mcp"
        parsed = urlparse(resource)
        return parsed.scheme in ("http", "https") and bool(parsed.netloc) and parsed.path.rstrip("/") == "/mcp"

    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        if params.resource is not None and not self.resource_ok(params.resource):
            raise AuthorizeError("invalid_target", "this server issues tokens for its own /mcp only")
        request = {
            "client_id": client.client_id,
            "client_name": client.client_name,
            "redirect_uri": str(params.redirect_uri),
            "explicit": params.redirect_uri_provided_explicitly,
            "challenge": params.code_challenge,
            "state": params.state,
            "scopes": params.scopes or [SCOPE],
            "resource": params.resource.rstrip("/") if params.resource else None,
            "exp": int(time.time()) + CONSENT_SECONDS,
        }
        sealed = self._keys().seal(request, prefix=CONSENT_PREFIX)
        # Relative: the consent page is on whatever host the client used for /authorize.
        return f"/oauth/consent?{urlencode({'request': sealed})}"

    def consent_request(self, sealed: str) -> dict[str, Any] | None:
        """The authorization request behind a consent page, if it is genuine and not stale."""
        request = self._keys().unseal(sealed, prefix=CONSENT_PREFIX)
        if request is None or int(request.get("exp", 0)) < time.time():
            return None
        return request

    def issuer_for(self, base_url: str) -> str:
        return self.public_url or base_url.rstrip("/")

    async def issue_code(self, request: dict[str, Any], subject: dict[str, str], base_url: str) -> str:
        """After consent: a code for `subject` ({"vk": id} | {"uid": id} | {"sid": id}); the redirect URL.

        `base_url`: where the consent page was served (the issuer when no public URL is set).
        """
        code = new_secret(CODE_PREFIX)
        expires = datetime.now(UTC) + timedelta(seconds=CODE_SECONDS)
        issuer = self.issuer_for(base_url)
        resource = request.get("resource") or issuer + "/mcp"
        stored = {**request, "subject": subject, "resource": resource, "iss": issuer}
        await self._store().create_oauth_code(digest(code), stored, expires)
        query = {"code": code, "iss": issuer}
        if request.get("state") is not None:
            query["state"] = request["state"]
        redirect = str(request["redirect_uri"])
        return redirect + ("&" if urlparse(redirect).query else "?") + urlencode(query)

    # -- token endpoint -----------------------------------------------------------------------

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> GatewayCode | None:
        code_hash = digest(authorization_code)
        used = await self._store().use_oauth_code(code_hash)
        if used is None:
            return None
        if used.reused:
            if used.grant_id is not None:
                await self._revoke(used.grant_id, "authorization code used twice")
            return None
        request = dict(used.request)
        if request.get("client_id") != client.client_id:
            return None
        return GatewayCode(
            code=authorization_code,
            scopes=list(request.get("scopes") or [SCOPE]),
            expires_at=time.time() + CODE_SECONDS,
            client_id=str(request["client_id"]),
            code_challenge=str(request["challenge"]),
            redirect_uri=AnyUrl(request["redirect_uri"]),
            redirect_uri_provided_explicitly=bool(request.get("explicit")),
            resource=request.get("resource"),
            subject=_subject_text(request["subject"]),
            request=request,
            code_hash=code_hash,
        )

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: AuthorizationCode
    ) -> OAuthToken:
        assert isinstance(authorization_code, GatewayCode)
        request = authorization_code.request
        subject: dict[str, str] = request["subject"]
        refresh = new_secret(REFRESH_PREFIX)
        fields = {
            "client_id": client.client_id,
            "client_name": client.client_name,
            "redirect_host": urlparse(request["redirect_uri"]).netloc,
            "subject_kind": {"vk": "vk", "uid": "user", "sid": "session"}[next(iter(subject))],
            "virtual_key_id": subject.get("vk"),
            "user_id": subject.get("uid"),
            "session_id": subject.get("sid"),
            "resource": request.get("resource"),
            "scope": " ".join(authorization_code.scopes),
        }
        grant = await self._store().create_oauth_grant(
            authorization_code.code_hash, fields, digest(refresh), self._refresh_expiry()
        )
        return self._tokens(client.client_id, grant.id, subject, request, refresh)

    async def load_refresh_token(self, client: OAuthClientInformationFull, refresh_token: str) -> GatewayRefresh | None:
        store = self._store()
        found = await store.use_refresh_token(digest(refresh_token))
        if found is None:
            return None
        used, grant = found
        if grant.revoked_at is not None or grant.client_id != client.client_id:
            return None
        if used.reused:
            await self._revoke(grant.id, "refresh token used twice")
            return None
        owners = (("vk", grant.virtual_key_id), ("uid", grant.user_id), ("sid", grant.session_id))
        subject = {kind: value for kind, value in owners if value}
        if not await self._still_allowed(subject):
            await self._revoke(grant.id, "the key or user was disabled")
            return None
        resource = grant.resource or ""
        issuer = resource[: -len("/mcp")] if resource.endswith("/mcp") else resource
        scopes = (grant.scope or SCOPE).split()
        request = {"subject": subject, "resource": resource, "iss": issuer, "scopes": scopes}
        return GatewayRefresh(
            token=refresh_token,
            client_id=grant.client_id,
            scopes=scopes,
            resource=grant.resource,
            subject=_subject_text(subject),
            grant_id=grant.id,
            request=request,
        )

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: RefreshToken, scopes: list[str]
    ) -> OAuthToken:
        assert isinstance(refresh_token, GatewayRefresh)
        fresh = new_secret(REFRESH_PREFIX)
        await self._store().rotate_refresh_token(refresh_token.grant_id, digest(fresh), self._refresh_expiry())
        request = refresh_token.request
        return self._tokens(client.client_id, refresh_token.grant_id, request["subject"], request, fresh)

    async def load_access_token(self, token: str) -> AccessToken | None:
        keys = self._keys()
        claims = keys.verify(token) if keys.is_ours(token) else None
        if claims is None:
            return None
        return AccessToken(
            token=token,
            client_id=str(claims.get("client_id", "")),
            scopes=str(claims.get("scope", SCOPE)).split(),
            expires_at=claims.get("exp"),
            resource=claims.get("aud"),
            subject=claims.get("sub"),
            claims=claims,
        )

    async def revoke_for(self, client: OAuthClientInformationFull, token: str) -> None:
        """Revoke the grant behind an access or refresh token of `client` (unknown tokens: nothing, per RFC 7009)."""
        access = await self.load_access_token(token)
        if access is not None:
            if access.client_id == client.client_id:
                await self.revoke_token(access)
            return
        found = await self._store().use_refresh_token(digest(token))
        if found is not None and found[1].client_id == client.client_id:
            await self._revoke(found[1].id, "revoked by the client")

    async def revoke_token(self, token: AccessToken | RefreshToken) -> None:
        if isinstance(token, GatewayRefresh):
            grant_id: object = token.grant_id
        else:
            grant_id = (token.claims or {}).get("gid") if isinstance(token, AccessToken) else None
        if isinstance(grant_id, str):
            await self._revoke(grant_id, "revoked by the client")

    async def exchange_identity_assertion(self, *args: Any, **kwargs: Any) -> OAuthToken:
        raise TokenError("unsupported_grant_type", "identity assertions are not accepted here")

    # -- helpers ------------------------------------------------------------------------------

    async def _still_allowed(self, subject: dict[str, str]) -> bool:
        if "vk" in subject:
            key = await self._key_by_id(subject["vk"])
            return key is not None and key.active and key.user_active
        if "uid" in subject:
            user = await self._user_by_id(subject["uid"])
            return user is None or user.active
        return True

    async def _revoke(self, grant_id: str, reason: str) -> None:
        await self._store().revoke_oauth_grant(grant_id, reason)
        self._revoked(grant_id)

    def _refresh_expiry(self) -> datetime:
        return datetime.now(UTC) + timedelta(days=self.settings.refresh_token_days)

    def _tokens(
        self, client_id: str, grant_id: str, subject: dict[str, str], request: dict[str, Any], refresh: str
    ) -> OAuthToken:
        scope = " ".join(request.get("scopes") or [SCOPE])
        claims = {
            "iss": request["iss"],
            "aud": request["resource"],
            "sub": _subject_text(subject),
            "client_id": client_id,
            "gid": grant_id,
            "scope": scope,
            **subject,
        }
        lifetime = self.settings.access_token_seconds
        access, _ = self._keys().access_token(claims, lifetime)
        return OAuthToken(
            access_token=access, token_type="Bearer", expires_in=lifetime, refresh_token=refresh, scope=scope
        )


def _subject_text(subject: dict[str, str]) -> str:
    kind, value = next(iter(subject.items()))
    return f"{kind}:{value}"


def redirect_uri_allowed(uri: str) -> bool:
    """Registration: https anywhere, http only on loopback (RFC 8252), private-use schemes (com.example.app:/)."""
    parsed = urlparse(uri)
    if parsed.scheme == "https":
        return bool(parsed.netloc) and not parsed.fragment
    if parsed.scheme == "http":
        return parsed.hostname in LOOPBACK_HOSTS and not parsed.fragment
    return "." in parsed.scheme and not parsed.fragment


__all__ = ["GatewayOAuthProvider", "InvalidRedirectUriError", "redirect_uri_allowed"]
