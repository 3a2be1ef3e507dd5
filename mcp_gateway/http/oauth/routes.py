"""The OAuth server's HTTP face: metadata (RFC 9728, 8414), `/register` (RFC 7591), the consent page,
and the SDK's `/authorize`, `/token`, `/revoke` over `provider.GatewayOAuthProvider`.

`/register` is the gateway's own: client ids are stateless (see `oauth_server/tokens.py`), so
registering writes nothing and costs a MAC; only public clients (`token_endpoint_auth_method:
none`, PKCE) with https or loopback redirect URIs are accepted. Errors are JSON (RFC 6749/7591):
an HTML or plain-text error makes Claude Code show "Failed to connect".

The consent page (`GET`/`POST /oauth/consent`) is server-rendered, needs no JavaScript, and is
CSRF-protected by a double-submit token (cookie + field). The person proves who they are with a
virtual key (or, where allowed, continues as a new anonymous session); the client then gets a
code for that identity at its redirect URI.
"""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlparse

from mcp.server.auth.routes import create_auth_routes
from mcp.server.auth.settings import ClientRegistrationOptions, RevocationOptions
from pydantic import AnyHttpUrl
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from mcp_gateway.http.oauth.provider import SCOPE, GatewayOAuthProvider, redirect_uri_allowed
from mcp_gateway.http.oauth.sso import CALLBACK_PATH, SsoClient, SsoError
from mcp_gateway.http.web.pages import SECURITY_HEADERS, render_page, result_page
from mcp_gateway.identity import VK_PREFIX, KeyGrant, hash_key
from mcp_gateway.store.errors import StoreError

logger = logging.getLogger(__name__)

CSRF_COOKIE = "mcpgw_oauth_csrf"
CSRF_FIELD = "csrf_token"
_MAX_REGISTRATION = 16 * 1024
_MAX_REDIRECT_URIS = 10

KeyLookup = Callable[[str], Awaitable[KeyGrant | None]]


def oauth_routes(
    provider: GatewayOAuthProvider, lookup_key: KeyLookup, *, allow_anonymous: bool, sso: SsoClient | None = None
) -> list[BaseRoute]:
    """Every OAuth route; `lookup_key` finds a virtual key by its hash (the identity layer's cache);
    `sso`: sign-in with the company's identity provider, offered on the consent page."""
    page = ConsentPage(allow_anonymous, sso)
    # The SDK's handlers for /authorize, /token and /revoke; its metadata and /register are replaced
    # below (the metadata names the host each request came in on when no public URL is set).
    sdk_routes = create_auth_routes(
        provider,
        AnyHttpUrl(provider.public_url or "http://localhost"),
        client_registration_options=ClientRegistrationOptions(
            enabled=True, valid_scopes=[SCOPE], default_scopes=[SCOPE]
        ),
        revocation_options=RevocationOptions(enabled=True),
    )
    kept = [r for r in sdk_routes if isinstance(r, Route) and r.path in ("/authorize", "/token")]

    def issuer_of(request: Request) -> str:
        return provider.issuer_for(str(request.base_url))

    async def server_metadata(request: Request) -> Response:
        issuer = issuer_of(request)
        return _metadata(
            {
                "issuer": issuer,
                "authorization_endpoint": f"{issuer}/authorize",
                "token_endpoint": f"{issuer}/token",
                "registration_endpoint": f"{issuer}/register",
                "revocation_endpoint": f"{issuer}/revoke",
                "scopes_supported": [SCOPE],
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "token_endpoint_auth_methods_supported": ["none"],
                "revocation_endpoint_auth_methods_supported": ["none"],
                "code_challenge_methods_supported": ["S256"],
                "authorization_response_iss_parameter_supported": True,
            }
        )

    async def resource_metadata(request: Request) -> Response:
        issuer = issuer_of(request)
        return _metadata(
            {
                "resource": f"{issuer}/mcp",
                "authorization_servers": [issuer],
                "scopes_supported": [SCOPE],
                "bearer_methods_supported": ["header"],
                "resource_name": "mcpgw",
            }
        )

    async def register(request: Request) -> Response:
        body = await request.body()
        if len(body) > _MAX_REGISTRATION:
            return _oauth_error("invalid_client_metadata", "the registration request is too large")
        try:
            metadata = json.loads(body)
        except ValueError:
            return _oauth_error("invalid_client_metadata", "the body must be a JSON object")
        if not isinstance(metadata, dict):
            return _oauth_error("invalid_client_metadata", "the body must be a JSON object")
        uris = metadata.get("redirect_uris")
        if not isinstance(uris, list) or not uris or len(uris) > _MAX_REDIRECT_URIS:
            return _oauth_error("invalid_redirect_uri", "give 1 to 10 redirect_uris")
        for uri in uris:
            if not isinstance(uri, str) or not redirect_uri_allowed(uri):
                return _oauth_error(
                    "invalid_redirect_uri",
                    f"redirect URI {uri!r} is not allowed: use https, or http on a loopback address (RFC 8252)",
                )
        method = metadata.get("token_endpoint_auth_method", "none")
        if method != "none":
            return _oauth_error(
                "invalid_client_metadata",
                "only public clients are accepted: token_endpoint_auth_method must be 'none' (PKCE protects the code)",
            )
        grants = metadata.get("grant_types") or ["authorization_code", "refresh_token"]
        if "authorization_code" not in grants:
            return _oauth_error("invalid_client_metadata", "grant_types must include 'authorization_code'")
        name = metadata.get("client_name")
        name = name[:100] if isinstance(name, str) and name.strip() else None
        client_id = provider.client_id_for(name, uris)
        answer = {
            "client_id": client_id,
            "client_id_issued_at": int(time.time()),
            "client_name": name,
            "redirect_uris": uris,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "scope": SCOPE,
        }
        return JSONResponse({k: v for k, v in answer.items() if v is not None}, status_code=201)

    async def revoke(request: Request) -> Response:
        """RFC 7009 for public clients (the SDK's handler insists on a `client_secret` field they do not have)."""
        form = await request.form()
        token, client_id = form.get("token"), form.get("client_id")
        if not isinstance(token, str) or not token or not isinstance(client_id, str) or not client_id:
            return _oauth_error("invalid_request", "give the token to revoke and your client_id")
        client = await provider.get_client(client_id)
        if client is None:
            return _oauth_error("invalid_client", "unknown client_id", status=401)
        await provider.revoke_for(client, token)
        return Response(status_code=200, headers={"Cache-Control": "no-store"})

    async def consent(request: Request) -> Response:
        if request.method == "GET":
            sealed = request.query_params.get("request", "")
            auth_request = provider.consent_request(sealed)
            if auth_request is None:
                return _stale()
            token = secrets.token_urlsafe(24)
            response = page.render(request, sealed, auth_request, token, errors=[])
            response.set_cookie(
                CSRF_COOKIE,
                token,
                path="/oauth/consent",
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
                max_age=900,
            )
            return response
        form = await request.form()
        sealed = str(form.get("request", ""))
        auth_request = provider.consent_request(sealed)
        if auth_request is None:
            return _stale()
        sent, cookie = str(form.get(CSRF_FIELD, "")), request.cookies.get(CSRF_COOKIE, "")
        if not sent or not hmac.compare_digest(sent, cookie):
            return result_page(
                "Sign-in not completed",
                "This form was not sent from the page the gateway showed (missing or wrong form token). "
                "Start the sign-in again from your MCP client.",
                ok=False,
                status_code=403,
            )
        method = form.get("method")
        if method == "sso" and sso is not None:
            try:
                return await sso.start(sealed, str(request.base_url))
            except SsoError as exc:
                return page.render(request, sealed, auth_request, sent, errors=[str(exc)], status=502)
        if method == "anonymous" and allow_anonymous:
            subject = {"sid": "oauth-" + secrets.token_hex(12)}
        else:
            key = str(form.get("virtual_key", "")).strip()
            problem, grant = await _check_key(lookup_key, key)
            if grant is None:
                return page.render(request, sealed, auth_request, sent, errors=[problem], status=400)
            subject = {"vk": grant.id}
        try:
            location = await provider.issue_code(auth_request, subject, str(request.base_url))
        except StoreError:
            logger.exception("oauth: cannot store an authorization code")
            return result_page(
                "Sign-in not completed", "The gateway cannot reach its database; try again.", ok=False, status_code=503
            )
        response = RedirectResponse(location, status_code=303)
        response.delete_cookie(CSRF_COOKIE, path="/oauth/consent")
        return response

    return [
        *kept,
        Route("/.well-known/oauth-authorization-server", server_metadata, methods=["GET"]),
        Route("/.well-known/oauth-protected-resource", resource_metadata, methods=["GET"]),
        Route("/.well-known/oauth-protected-resource/mcp", resource_metadata, methods=["GET"]),
        Route("/register", register, methods=["POST"]),
        Route("/revoke", revoke, methods=["POST"]),
        Route("/oauth/consent", consent, methods=["GET", "POST"]),
        *([Route(CALLBACK_PATH, sso.callback, methods=["GET"])] if sso is not None else []),
    ]


async def _check_key(lookup_key: KeyLookup, key: str) -> tuple[str, KeyGrant | None]:
    if not key.startswith(VK_PREFIX):
        return f"That is not a virtual key (they start with {VK_PREFIX}).", None
    grant = await lookup_key(hash_key(key))
    if grant is None:
        return "No such virtual key on this gateway.", None
    if not grant.active:
        return "This virtual key is disabled.", None
    if not grant.user_active:
        return "The owner of this virtual key is disabled on this gateway.", None
    return "", grant


class ConsentPage:
    """The consent page: who is asking, and the ways this gateway offers to prove who you are."""

    def __init__(self, allow_anonymous: bool, sso: SsoClient | None) -> None:
        self.allow_anonymous = allow_anonymous
        self.sso = sso

    def render(
        self,
        request: Request,
        sealed: str,
        auth_request: dict[str, Any],
        csrf: str,
        *,
        errors: list[str],
        status: int = 200,
    ) -> Response:
        redirect = urlparse(auth_request["redirect_uri"])
        response = render_page(
            "oauth_consent.html",
            status_code=status,
            title="Sign in",
            client_name=auth_request.get("client_name") or "An MCP client",
            redirect_host=redirect.netloc or redirect.scheme,
            request=sealed,
            csrf_field=CSRF_FIELD,
            csrf_token=csrf,
            action=str(request.url.path),
            allow_anonymous=self.allow_anonymous,
            sso_label=self.sso.settings.label if self.sso is not None else None,
            errors=errors,
        )
        # The form's answer is a redirect (to the client, or to the IdP): CSP form-action must allow it.
        targets = [f"{redirect.scheme}://{redirect.hostname}:*" if redirect.hostname else f"{redirect.scheme}:"]
        if self.sso is not None:
            idp = urlparse(self.sso.settings.issuer)
            targets.append(f"{idp.scheme}://{idp.netloc}")
        response.headers["Content-Security-Policy"] = SECURITY_HEADERS["Content-Security-Policy"].replace(
            "form-action 'self'", "form-action 'self' " + " ".join(targets)
        )
        return response


def _metadata(body: dict[str, Any]) -> Response:
    return JSONResponse(body, headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"})


def challenge(provider: GatewayOAuthProvider, scope: Any) -> str:
    """`WWW-Authenticate` for a 401 on `/mcp`: where the client finds how to sign in (RFC 9728 §5.1)."""
    base = provider.public_url or str(Request(scope).base_url).rstrip("/")
    return f'Bearer realm="mcpgw", resource_metadata="{base}/.well-known/oauth-protected-resource/mcp"'


def _stale() -> Response:
    return result_page(
        "Sign-in expired",
        "This sign-in link is not valid any more (it lasts 15 minutes). Start the sign-in again from your MCP client.",
        ok=False,
        status_code=400,
    )


def _oauth_error(error: str, description: str, *, status: int = 400) -> Response:
    """An OAuth error body (RFC 6749 §5.2, RFC 7591 §3.2.2): JSON, never HTML or text."""
    return JSONResponse({"error": error, "error_description": description}, status_code=status)
