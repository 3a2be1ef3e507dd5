"""The gateway's identity at an authorization server: a configured client, else one registered by
RFC 7591 dynamic client registration.

Kept apart from the token requests because it happens once per authorization server (the caller stores
the result), and because choosing how the client authenticates is decided here, from what the server
advertises, rather than at every token request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx2

from mcp_gateway.config import OAuthClientSettings
from mcp_gateway.credentials.oauth.model import AuthMethod, AuthServer, ClientRegistration, _auth_method_named
from mcp_gateway.credentials.oauth.transport import _json_object, _send, _where
from mcp_gateway.errors import OAuthError


def client_for(settings: OAuthClientSettings, server: AuthServer, redirect_uri: str) -> ClientRegistration | None:
    """The configured client (id, optional secret), or None when one must be registered dynamically."""
    if not settings.client_id:
        return None
    method = _auth_method(server, has_secret=bool(settings.client_secret))
    return ClientRegistration(settings.client_id, settings.client_secret or None, redirect_uri, method)


async def register_client(
    server: AuthServer,
    redirect_uri: str,
    http: httpx2.AsyncClient,
    *,
    client_name: str = "mcpgw",
    scopes: Sequence[str] = (),
) -> ClientRegistration:
    """Register the gateway at `server` (RFC 7591) as a confidential client when the server allows it."""
    if not server.registration_endpoint:
        raise OAuthError(
            f"the authorization server {_where(server.issuer)} does not support dynamic client registration; "
            "configure auth.client_id (and auth.client_secret) for this upstream"
        )
    method = _auth_method(server, has_secret=True, registering=True)
    request: dict[str, Any] = {
        "redirect_uris": [redirect_uri],
        "client_name": client_name,
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": method,
    }
    if scopes:
        request["scope"] = " ".join(scopes)
    what = "client registration endpoint"
    status, body = await _send(http, "POST", server.registration_endpoint, what=what, json=request)
    data = _json_object(status, body, server.registration_endpoint, what=what, expected=(200, 201))
    client_id = data.get("client_id")
    secret = data.get("client_secret")
    if not isinstance(client_id, str) or not client_id:
        raise OAuthError(f"the {what} at {_where(server.registration_endpoint)} returned no client_id")
    granted = _auth_method_named(data.get("token_endpoint_auth_method", method))
    if granted is None:
        raise OAuthError(
            f"the {what} at {_where(server.registration_endpoint)} assigned a token endpoint auth method "
            "the gateway does not support"
        )
    if granted != "none" and not isinstance(secret, str):
        raise OAuthError(f"the {what} at {_where(server.registration_endpoint)} returned no client_secret")
    expires = data.get("client_secret_expires_at")
    return ClientRegistration(
        client_id=client_id,
        client_secret=secret if granted != "none" else None,
        redirect_uri=redirect_uri,
        auth_method=granted,
        secret_expires_at=float(expires) if isinstance(expires, int | float) and expires > 0 else None,
    )


async def obtain_client(
    settings: OAuthClientSettings,
    server: AuthServer,
    redirect_uri: str,
    http: httpx2.AsyncClient,
    *,
    client_name: str = "mcpgw",
) -> ClientRegistration:
    """The configured client, else a dynamically registered one; a clear error when neither is possible."""
    configured = client_for(settings, server, redirect_uri)
    if configured is not None:
        return configured
    return await register_client(server, redirect_uri, http, client_name=client_name, scopes=settings.scopes)


def requested_scopes(settings: OAuthClientSettings, server: AuthServer) -> tuple[str, ...]:
    """Configured scopes win; otherwise what the upstream asked for (MCP 2025-11-25 scope selection)."""
    return tuple(settings.scopes) or server.suggested_scopes


def _auth_method(server: AuthServer, *, has_secret: bool, registering: bool = False) -> AuthMethod:
    """A secret goes in the Basic header if the server takes it there, else in the form; a server that only
    takes public clients gets registered as one."""
    if not has_secret:
        return "none"
    supported = server.token_endpoint_auth_methods or ("client_secret_basic",)  # RFC 8414 §2 default
    for method in ("client_secret_basic", "client_secret_post"):
        if method in supported:
            return method
    if registering and "none" in supported:
        return "none"
    return "client_secret_basic"  # nothing we know is listed: the one every server must accept
