"""The authorization code flow with PKCE: the consent URL, the redirect back, and the token endpoint
(code exchange and refresh).

This is where codes, verifiers, refresh tokens and client secrets are sent, so each request names the
secrets it carries and the provider's error text is scrubbed of them before it reaches a message.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx2
from authlib.common.security import generate_token  # type: ignore[import-untyped]  # authlib ships no types
from authlib.oauth2.rfc6749.parameters import (  # type: ignore[import-untyped]
    prepare_grant_uri,
    prepare_token_request,
)
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]

from mcp_gateway.credentials.oauth.model import AuthServer, ClientRegistration, TokenSet, _same_issuer
from mcp_gateway.credentials.oauth.transport import _json_object, _provider_text, _send, _where
from mcp_gateway.errors import OAuthError

PKCE_VERIFIER_LENGTH = 64  # RFC 7636 §4.1: 43-128 characters from the unreserved set


def authorization_url(
    server: AuthServer, client: ClientRegistration, *, state: str, scopes: Sequence[str]
) -> tuple[str, str]:
    """The consent URL to send the user to, and the PKCE code verifier to keep (secretly) for the exchange."""
    if not state:
        raise ValueError("state must not be empty: it ties the callback to its flow")
    verifier: str = generate_token(PKCE_VERIFIER_LENGTH)
    url: str = prepare_grant_uri(
        server.authorization_endpoint,
        client_id=client.client_id,
        response_type="code",
        redirect_uri=client.redirect_uri,
        scope=list(scopes) or None,
        state=state,
        code_challenge=create_s256_code_challenge(verifier),
        code_challenge_method="S256",
        resource=server.resource,
    )
    return url, verifier


def code_from_callback(params: Mapping[str, str], server: AuthServer | None = None) -> str:
    """The authorization code from the redirect's query; the provider's refusal as an `OAuthError`.

    Checking `state` (which flow this is) is the caller's job. With `server`, an RFC 9207 `iss` parameter
    must name that server: a mismatch means the response came from another provider (mix-up attack).
    """
    issuer = params.get("iss")
    if server is not None and issuer is not None and not _same_issuer(issuer, server.issuer):
        raise OAuthError("the authorization response came from another authorization server than expected")
    error = params.get("error")
    if error:
        description = params.get("error_description")
        detail = f" ({_provider_text(description)})" if description else ""
        raise OAuthError(f"the authorization server refused: {_provider_text(error)}{detail}", error=error)
    code = params.get("code")
    if not code:
        raise OAuthError("the authorization server's redirect carried no code")
    return code


async def exchange_code(
    server: AuthServer,
    client: ClientRegistration,
    *,
    code: str,
    code_verifier: str,
    http: httpx2.AsyncClient,
) -> TokenSet:
    """Trade the authorization code (and the PKCE verifier) for tokens."""
    params = {"code": code, "redirect_uri": client.redirect_uri, "code_verifier": code_verifier}
    data = await _token_request(server, client, "authorization_code", params, http, hide=(code, code_verifier))
    return _token_set(data, server, previous=None)


async def refresh(
    server: AuthServer, client: ClientRegistration, token: TokenSet, http: httpx2.AsyncClient
) -> TokenSet:
    """New tokens from the refresh token; any failure (typically invalid_grant) means the user must consent again.

    A provider that does not rotate refresh tokens omits one from the response: the old one stays valid
    and is kept.
    """
    if not token.refresh_token:
        raise OAuthError("there is no refresh token; the user must authorize again", error="no_refresh_token")
    params = {"refresh_token": token.refresh_token}
    data = await _token_request(server, client, "refresh_token", params, http, hide=(token.refresh_token,))
    return _token_set(data, server, previous=token)


async def _token_request(
    server: AuthServer,
    client: ClientRegistration,
    grant_type: str,
    params: Mapping[str, str],
    http: httpx2.AsyncClient,
    *,
    hide: Sequence[str],
) -> dict[str, Any]:
    fields = dict(params)
    fields["resource"] = server.resource
    headers = {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"}
    method = client.token_endpoint_auth_method
    if method == "client_secret_basic":
        # RFC 6749 §2.3.1: each part form-encoded before base64; percent-encoding is read right by both kinds
        # of decoder in use (plain unquote and form decoding).
        pair = f"{quote(client.client_id, safe='')}:{quote(client.client_secret or '', safe='')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    else:
        fields["client_id"] = client.client_id
        if method == "client_secret_post":
            fields["client_secret"] = client.client_secret or ""
    body: str = prepare_token_request(grant_type, **fields)
    secrets = (*hide, client.client_secret or "")
    what = "token endpoint"
    status, content = await _send(http, "POST", server.token_endpoint, what=what, content=body, headers=headers)
    return _json_object(status, content, server.token_endpoint, what=what, expected=(200,), hide=secrets)


def _token_set(data: Mapping[str, Any], server: AuthServer, previous: TokenSet | None) -> TokenSet:
    where = _where(server.token_endpoint)
    access = data.get("access_token")
    token_type = data.get("token_type")
    if not isinstance(access, str) or not access:
        raise OAuthError(f"the token endpoint at {where} returned no access_token")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise OAuthError(f"the token endpoint at {where} returned a token of unsupported type {str(token_type)[:20]!r}")
    refresh_token = data.get("refresh_token")
    if not isinstance(refresh_token, str) or not refresh_token:
        refresh_token = previous.refresh_token if previous else None
    expires_in = data.get("expires_in")
    if isinstance(expires_in, str) and expires_in.isdigit():  # some providers send it as a string
        expires_in = int(expires_in)
    expires_at = time.time() + float(expires_in) if isinstance(expires_in, int | float) else None
    scope = data.get("scope")
    if not isinstance(scope, str):
        scope = previous.scope if previous else None
    return TokenSet(access, refresh_token, expires_at, "Bearer", scope)
