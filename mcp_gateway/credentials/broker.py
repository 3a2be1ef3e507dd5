"""Hands a per-user upstream session its caller's own credentials, or a link that collects them.

Everything that touches a plaintext credential on its way to an upstream goes through here: the
vault is read, OAuth tokens are refreshed (one refresh at a time per caller and upstream), and
when nothing usable is stored a flow starts and the caller gets its link inside a
`CredentialRequired` error. Messages never contain a credential; only the link, which is meant
for the caller's eyes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import anyio
import httpx2

from mcp_gateway.config import OAuthClientSettings, PerUserHeaders
from mcp_gateway.credentials import oauth
from mcp_gateway.credentials.flows import FlowKind, FlowRegistry, PendingFlow
from mcp_gateway.errors import CredentialError, CredentialRequired
from mcp_gateway.vault import CredentialState, Vault

logger = logging.getLogger(__name__)

HEADERS_KIND = "headers"
OAUTH_KIND = "oauth"
CLIENT_KIND = "oauth_client"
GATEWAY_PRINCIPAL = "gateway"
"""Vault owner of the gateway's own OAuth client registrations (one per upstream and redirect URI)."""
SHARED_PRINCIPAL = "shared"
"""Vault owner of a shared (`auth: oauth`) upstream's token."""
CALLBACK_PATH = "/oauth/callback"
FORM_PATH = "/forms/credentials/"


class CredentialBroker:
    """Per-user headers and OAuth tokens for upstream sessions; `clock` is injectable for expiry tests."""

    def __init__(
        self,
        vault: Vault,
        flows: FlowRegistry,
        *,
        public_url: str | None = None,
        http: httpx2.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.vault = vault
        self.flows = flows
        self.public_url = public_url.rstrip("/") if public_url else None
        self._http = http or httpx2.AsyncClient(timeout=httpx2.Timeout(15.0))
        self._clock = clock
        self._servers: dict[str, oauth.AuthServer] = {}
        self._locks: dict[tuple[str, str], anyio.Lock] = {}

    async def aclose(self) -> None:
        await self._http.aclose()

    def now(self) -> float:
        return self._clock()

    def base_url(self, caller_base: str | None) -> str:
        return self.public_url or (caller_base or "http://127.0.0.1:8080").rstrip("/")

    # --- per-user headers -----------------------------------------------------------------------

    async def headers(
        self, owner: str, upstream: str, auth: PerUserHeaders, caller_base: str | None, owner_label: str = ""
    ) -> dict[str, str]:
        """The caller's saved header values, or `CredentialRequired` with a link to the form."""
        credential = await self.vault.get(owner, upstream, HEADERS_KIND)
        if credential is not None and credential.state is CredentialState.ACTIVE:
            values = credential.secret
            if all(isinstance(values.get(key), str) and values[key] for key in auth.header_keys):
                return {key: values[key] for key in auth.header_keys}
        refused = credential is not None and credential.state is CredentialState.NEEDS_REAUTH
        raise self._form_link(owner, upstream, auth, caller_base, refused=refused, owner_label=owner_label)

    def _form_link(
        self,
        owner: str,
        upstream: str,
        auth: PerUserHeaders,
        caller_base: str | None,
        *,
        refused: bool,
        owner_label: str,
    ) -> CredentialRequired:
        flow = self.flows.start(FlowKind.HEADERS, owner, upstream, owner_label=owner_label)
        url = f"{self.base_url(caller_base)}{FORM_PATH}{flow.id}"
        why = (
            f"{upstream} refused the credentials you saved"
            if refused
            else f"{upstream} needs your own credentials ({', '.join(auth.header_keys)})"
        )
        return self._required(upstream, flow, url, f"{why}. Open this link, enter them")

    async def save_headers(self, flow: PendingFlow, values: Mapping[str, str]) -> None:
        await self.vault.put(flow.identity_key, flow.upstream, HEADERS_KIND, dict(values))
        logger.info("stored per-user headers for %s (%s)", flow.upstream, flow.identity_key)

    async def reject(self, owner: str, upstream: str, kind: str) -> None:
        """The upstream refused a stored credential: it needs the person again."""
        await self.vault.mark_needs_reauth(owner, upstream, kind)
        logger.warning("upstream %s refused the stored %s credential of %s", upstream, kind, owner)

    # --- OAuth ----------------------------------------------------------------------------------

    async def access_token(
        self,
        owner: str,
        upstream: str,
        settings: OAuthClientSettings,
        upstream_url: str,
        caller_base: str | None,
        *,
        force_refresh: bool = False,
    ) -> oauth.TokenSet:
        """A current access token for `owner`, refreshed when close to expiry (or when forced after a 401).

        Raises `CredentialRequired` with a consent link when there is none or it cannot be refreshed.
        """
        token = await self._stored_token(owner, upstream)
        if token is not None and not force_refresh and not token.expires_soon(self._clock()):
            return token
        async with self._lock(owner, upstream):
            # Another task may have refreshed while this one waited for the lock.
            latest = await self._stored_token(owner, upstream)
            seen = token.access_token if token else None
            if latest is not None and latest.access_token != seen and not latest.expires_soon(self._clock()):
                return latest
            if latest is None:
                refused = await self.vault.get(owner, upstream, OAUTH_KIND) is not None  # kept as needs_reauth
                raise await self.consent_link(owner, upstream, settings, upstream_url, caller_base, expired=refused)
            if latest.refresh_token is None:
                await self.reject(owner, upstream, OAUTH_KIND)
                raise await self.consent_link(owner, upstream, settings, upstream_url, caller_base, expired=True)
            try:
                # The token belongs to the client that obtained it: refresh as that client.
                server, client = await self._issuer_of(owner, upstream, settings, upstream_url, caller_base)
                refreshed = await oauth.refresh(server, client, latest, self._http)
            except oauth.OAuthError as exc:
                logger.warning("upstream %s: token refresh for %s failed: %s", upstream, owner, exc)
                await self.reject(owner, upstream, OAUTH_KIND)
                raise await self.consent_link(
                    owner, upstream, settings, upstream_url, caller_base, expired=True
                ) from None
            await self._store_token(owner, upstream, refreshed, server, client)
            return refreshed

    async def _stored_token(self, owner: str, upstream: str) -> oauth.TokenSet | None:
        credential = await self.vault.get(owner, upstream, OAUTH_KIND)
        if credential is None or credential.state is not CredentialState.ACTIVE:
            return None
        return oauth.TokenSet.from_dict(credential.secret["token"])

    async def _issuer_of(
        self, owner: str, upstream: str, settings: OAuthClientSettings, upstream_url: str, caller_base: str | None
    ) -> tuple[oauth.AuthServer, oauth.ClientRegistration]:
        """The authorization server and client a stored token was issued through."""
        credential = await self.vault.get(owner, upstream, OAUTH_KIND)
        if credential is not None and "server" in credential.secret and "client" in credential.secret:
            return (
                oauth.AuthServer.from_dict(credential.secret["server"]),
                oauth.ClientRegistration.from_dict(credential.secret["client"]),
            )
        server = await self._server(upstream, settings, upstream_url)
        return server, await self._client(upstream, settings, server, caller_base)

    async def _store_token(
        self,
        owner: str,
        upstream: str,
        token: oauth.TokenSet,
        server: oauth.AuthServer,
        client: oauth.ClientRegistration,
    ) -> None:
        expires = datetime.fromtimestamp(token.expires_at, UTC) if token.expires_at else None
        secret = {"token": token.to_dict(), "server": server.to_dict(), "client": client.to_dict()}
        await self.vault.put(owner, upstream, OAUTH_KIND, secret, expires_at=expires)

    async def consent_link(
        self,
        owner: str,
        upstream: str,
        settings: OAuthClientSettings,
        upstream_url: str,
        caller_base: str | None,
        *,
        expired: bool = False,
    ) -> CredentialError:
        """A `CredentialRequired` carrying the provider's consent URL for a fresh flow."""
        try:
            server = await self._server(upstream, settings, upstream_url)
            client = await self._client(upstream, settings, server, caller_base)
        except oauth.OAuthError as exc:
            return CredentialError(upstream, f"cannot start signing in to {upstream}: {exc}")
        flow = self.flows.start(FlowKind.OAUTH, owner, upstream)
        url, verifier = oauth.authorization_url(
            server, client, state=flow.id, scopes=oauth.requested_scopes(settings, server)
        )
        flow.data = {"verifier": verifier, "server": server, "client": client}
        why = (
            f"your sign-in to {upstream} has expired or was revoked"
            if expired
            else f"{upstream} needs you to sign in with your own account"
        )
        return self._required(upstream, flow, url, f"{why}. Open this link to authorize mcpgw")

    async def complete_oauth(self, state: str, code: str) -> PendingFlow:
        """The provider sent the caller back: exchange the code and keep the tokens for that flow's owner."""
        flow = self.flows.consume(state, FlowKind.OAUTH)
        if flow is None:
            raise oauth.OAuthError("this sign-in link has expired or was already used; call the tool again")
        data: dict[str, Any] = flow.data
        token = await oauth.exchange_code(
            data["server"], data["client"], code=code, code_verifier=data["verifier"], http=self._http
        )
        await self._store_token(flow.identity_key, flow.upstream, token, data["server"], data["client"])
        logger.info("stored OAuth tokens for %s (%s)", flow.upstream, flow.identity_key)
        flow.done.set()
        return flow

    async def _server(self, upstream: str, settings: OAuthClientSettings, upstream_url: str) -> oauth.AuthServer:
        server = self._servers.get(upstream)
        if server is None:
            server = await oauth.discover(upstream_url, settings, self._http)
            self._servers[upstream] = server
        return server

    async def _client(
        self, upstream: str, settings: OAuthClientSettings, server: oauth.AuthServer, caller_base: str | None
    ) -> oauth.ClientRegistration:
        redirect_uri = self.base_url(caller_base) + CALLBACK_PATH
        configured = oauth.client_for(settings, server, redirect_uri)
        if configured is not None:
            return configured
        async with self._lock(GATEWAY_PRINCIPAL, upstream):
            stored = await self.vault.get(GATEWAY_PRINCIPAL, upstream, CLIENT_KIND)
            if stored is not None:
                registration = oauth.ClientRegistration.from_dict(stored.secret)
                if registration.redirect_uri == redirect_uri and stored.secret.get("issuer") == server.issuer:
                    return registration
            registration = await oauth.register_client(server, redirect_uri, self._http, scopes=settings.scopes)
            await self.vault.put(
                GATEWAY_PRINCIPAL, upstream, CLIENT_KIND, {**registration.to_dict(), "issuer": server.issuer}
            )
            return registration

    def forget(self, upstream: str) -> None:
        """Drop what was discovered about an upstream's authorization server (its config changed)."""
        self._servers.pop(upstream, None)

    def _lock(self, owner: str, upstream: str) -> anyio.Lock:
        return self._locks.setdefault((owner, upstream), anyio.Lock())

    def _required(self, upstream: str, flow: PendingFlow, url: str, ask: str) -> CredentialRequired:
        minutes = max(1, round(self.flows.ttl / 60))
        message = f"{ask}, then call the tool again: {url} (the link works once and expires in {minutes} minutes)"
        return CredentialRequired(upstream, message, url=url, done=flow.done)
