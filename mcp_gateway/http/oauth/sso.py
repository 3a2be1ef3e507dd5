"""Sign-in with the company's identity provider on the consent page: OpenID Connect, authorization code + PKCE.

The consent page's "Sign in with …" sends the browser to the IdP; its answer comes back to
`/oauth/sso/callback`, where the gateway redeems the code (PKCE, and the client secret when one is
configured), asks the IdP's userinfo endpoint who signed in, records the user (`sub` → mcpgw user
id, with their email) and hands the MCP client a code for that user.

Nothing is kept on the server between the two legs: `state` carries the (sealed) MCP authorization
request and a nonce; the PKCE verifier is derived from the nonce with the gateway's secret, so it is
never in a URL; a cookie holding the nonce binds the callback to the browser that started it (no
login CSRF). Userinfo over the IdP's TLS is the identity source (no ID-token parsing needed).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx2
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mcp_gateway.http.oauth.provider import GatewayOAuthProvider
from mcp_gateway.http.web.pages import result_page
from mcp_gateway.identity import SsoSettings
from mcp_gateway.oauth_server.tokens import TokenKeys

logger = logging.getLogger(__name__)

STATE_PREFIX = "mcpgw-sso-"
NONCE_COOKIE = "mcpgw_sso"
CALLBACK_PATH = "/oauth/sso/callback"
_DISCOVERY_TTL = 3600.0

SignIn = Callable[[str, str | None], Awaitable[bool]]
"""Record a user's sign-in (id, email); False when the user is disabled on this gateway."""


class SsoError(Exception):
    """The IdP could not be used; the message is for the person on the page."""


class SsoClient:
    """The gateway as an OpenID Connect relying party for one IdP."""

    def __init__(
        self, settings: SsoSettings, provider: GatewayOAuthProvider, keys: Callable[[], TokenKeys], sign_in: SignIn
    ) -> None:
        self.settings = settings
        self._provider = provider
        self._keys = keys
        self._sign_in = sign_in
        self._metadata: dict[str, Any] | None = None
        self._fetched = 0.0
        self._lock = anyio.Lock()

    async def metadata(self) -> dict[str, Any]:
        async with self._lock:
            if self._metadata is None or time.monotonic() - self._fetched > _DISCOVERY_TTL:
                issuer = self.settings.issuer.rstrip("/")
                try:
                    async with httpx2.AsyncClient(timeout=10) as http:
                        answer = await http.get(f"{issuer}/.well-known/openid-configuration")
                        answer.raise_for_status()
                        document = answer.json()
                except (httpx2.HTTPError, ValueError) as exc:
                    raise SsoError(f"the identity provider at {issuer} cannot be reached ({exc})") from None
                if not all(document.get(k) for k in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint")):
                    raise SsoError(
                        "the identity provider's configuration lacks an authorization, token or userinfo URL"
                    )
                self._metadata, self._fetched = document, time.monotonic()
            return self._metadata

    def _verifier(self, nonce: str) -> str:
        secret = self._keys().seal({"pkce": nonce}, prefix="pkce-")
        return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest()).decode().rstrip("=")

    async def start(self, sealed_request: str, base_url: str) -> Response:
        """The redirect to the IdP for the MCP authorization request `sealed_request`."""
        document = await self.metadata()
        nonce = secrets.token_urlsafe(16)
        state = self._keys().seal({"r": sealed_request, "n": nonce, "t": int(time.time())}, prefix=STATE_PREFIX)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(self._verifier(nonce).encode()).digest())
        query = {
            "response_type": "code",
            "client_id": self.settings.client_id,
            "redirect_uri": self._callback(base_url),
            "scope": " ".join(self.settings.scopes),
            "state": state,
            "code_challenge": challenge.decode().rstrip("="),
            "code_challenge_method": "S256",
        }
        response = RedirectResponse(f"{document['authorization_endpoint']}?{urlencode(query)}", status_code=303)
        response.set_cookie(NONCE_COOKIE, nonce, path=CALLBACK_PATH, httponly=True, samesite="lax", max_age=900)
        return response

    async def callback(self, request: Request) -> Response:
        params = request.query_params
        state = self._keys().unseal(params.get("state", ""), prefix=STATE_PREFIX)
        nonce = request.cookies.get(NONCE_COOKIE, "")
        if state is None or not nonce or not hmac.compare_digest(str(state.get("n", "")), nonce):
            return _failed(
                "This sign-in was not started in this browser, or it expired. Start again from your MCP client."
            )
        if params.get("error"):
            reason = str(params.get("error_description") or params["error"]).rstrip(".")
            return _failed(f"The identity provider did not sign you in: {reason}.")
        auth_request = self._provider.consent_request(str(state.get("r", "")))
        if auth_request is None or not params.get("code"):
            return _failed("This sign-in expired (it lasts 15 minutes). Start again from your MCP client.")
        base_url = str(request.base_url)
        try:
            user_id, email = await self._identify(params["code"], nonce, base_url)
        except SsoError as exc:
            logger.warning("sso: %s", exc)
            return _failed(str(exc))
        if not await self._sign_in(user_id, email):
            return _failed(f"The user {user_id} is disabled on this gateway.", status=403)
        location = await self._provider.issue_code(auth_request, {"uid": user_id}, base_url)
        response = RedirectResponse(location, status_code=303)
        response.delete_cookie(NONCE_COOKIE, path=CALLBACK_PATH)
        return response

    async def _identify(self, code: str, nonce: str, base_url: str) -> tuple[str, str | None]:
        document = await self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self._callback(base_url),
            "code_verifier": self._verifier(nonce),
            "client_id": self.settings.client_id,
        }
        secret = self.settings.client_secret
        try:
            async with httpx2.AsyncClient(timeout=15) as http:
                if secret:
                    answer = await http.post(
                        document["token_endpoint"], data=form, auth=(self.settings.client_id, secret)
                    )
                else:
                    answer = await http.post(document["token_endpoint"], data=form)
                if answer.status_code != 200:
                    raise SsoError(f"the identity provider refused the sign-in code (HTTP {answer.status_code})")
                token = answer.json().get("access_token")
                info = await http.get(document["userinfo_endpoint"], headers={"authorization": f"Bearer {token}"})
                if info.status_code != 200:
                    raise SsoError(f"the identity provider would not say who signed in (HTTP {info.status_code})")
                claims = info.json()
        except (httpx2.HTTPError, ValueError) as exc:
            raise SsoError(f"the identity provider cannot be reached ({exc})") from None
        user_id = claims.get(self.settings.user_claim)
        if not isinstance(user_id, str) or not user_id:
            raise SsoError(f"the identity provider's answer has no '{self.settings.user_claim}'")
        email = claims.get(self.settings.email_claim)
        return user_id, email if isinstance(email, str) else None

    def _callback(self, base_url: str) -> str:
        return self._provider.issuer_for(base_url) + CALLBACK_PATH


def _failed(message: str, *, status: int = 400) -> Response:
    return result_page("Sign-in not completed", message, ok=False, status_code=status)
