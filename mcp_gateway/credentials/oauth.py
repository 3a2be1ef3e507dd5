"""The gateway as an OAuth 2.1 client of an upstream's authorization server.

An upstream MCP server behind OAuth tells its clients where to get tokens (MCP authorization spec,
2025-06-18 / 2025-11-25): a request without a token gets 401 with `WWW-Authenticate: Bearer
resource_metadata="…"`, that RFC 9728 document names the authorization server, whose RFC 8414 (or
OpenID) metadata names its endpoints. The gateway then registers itself (RFC 7591) unless a client id is
configured, sends each user to the consent page (authorization code + PKCE S256, RFC 8707 `resource`),
exchanges the code and refreshes the tokens before they expire.

The protocol pieces come from authlib (PKCE, grant/token request encoding); HTTP goes through the
caller's `httpx2.AsyncClient`, with a timeout on every request. Every failure is an `OAuthError` whose
message names the endpoint and is safe to show to an end user: it never contains tokens, codes, code
verifiers or client secrets (text from the provider is scrubbed of them and shortened).

This module holds no state: storing registrations and tokens (encrypted) and tracking consent flows
belong to the caller.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import quote, urlsplit, urlunsplit

import anyio
import httpx2
from authlib.common.security import generate_token  # type: ignore[import-untyped]  # authlib ships no types
from authlib.oauth2.rfc6749.parameters import (  # type: ignore[import-untyped]
    prepare_grant_uri,
    prepare_token_request,
)
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]

from mcp_gateway.config import OAuthClientSettings

REQUEST_TIMEOUT = 15.0
"""Seconds for any one request to a provider: a consent flow or a tool call is waiting on it."""
MAX_RESPONSE_BYTES = 1024 * 1024
"""Metadata and token responses are small; a larger body is a misconfigured URL, not worth reading."""
PKCE_VERIFIER_LENGTH = 64  # RFC 7636 §4.1: 43-128 characters from the unreserved set
PROVIDER_TEXT_LIMIT = 200

AuthMethod = Literal["none", "client_secret_basic", "client_secret_post"]
AUTH_METHODS: tuple[AuthMethod, ...] = ("client_secret_basic", "client_secret_post", "none")
"""Token endpoint client authentication methods the gateway can use, in order of preference."""

_PROBE_BODY = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "mcpgw", "version": "0"}},
}
_BEARER_SCHEME = re.compile(r"(?:^|,)\s*bearer(?:\s+|$)", re.IGNORECASE)
_AUTH_PARAM = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)')


class OAuthError(Exception):
    """An OAuth step failed; `str(error)` is safe to show to the end user.

    `error` is the provider's OAuth error code when it sent one (`invalid_grant`, …). `transient` marks
    failures worth retrying later (network, timeouts, 5xx) as opposed to ones that need a person
    (re-consent, configuration).
    """

    def __init__(self, message: str, *, error: str | None = None, transient: bool = False) -> None:
        super().__init__(message)
        self.error = error
        self.transient = transient


# --- value types ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthServer:
    """What the gateway needs to know about one upstream's authorization server."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    registration_endpoint: str | None
    resource: str
    """RFC 8707 resource indicator sent with every request: the upstream's canonical URL."""
    scopes_supported: tuple[str, ...] | None
    code_challenge_methods: tuple[str, ...] | None
    token_endpoint_auth_methods: tuple[str, ...] | None = None
    """As advertised; None means the RFC 8414 default (client_secret_basic)."""
    suggested_scopes: tuple[str, ...] = ()
    """What the upstream asks for: the `scope` of its 401 challenge, else its RFC 9728 `scopes_supported`."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.authorization_endpoint,
            "token_endpoint": self.token_endpoint,
            "registration_endpoint": self.registration_endpoint,
            "resource": self.resource,
            "scopes_supported": _list_or_none(self.scopes_supported),
            "code_challenge_methods": _list_or_none(self.code_challenge_methods),
            "token_endpoint_auth_methods": _list_or_none(self.token_endpoint_auth_methods),
            "suggested_scopes": list(self.suggested_scopes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuthServer:
        return cls(
            issuer=_required_str(data, "issuer"),
            authorization_endpoint=_required_str(data, "authorization_endpoint"),
            token_endpoint=_required_str(data, "token_endpoint"),
            registration_endpoint=_optional_str(data, "registration_endpoint"),
            resource=_required_str(data, "resource"),
            scopes_supported=_str_tuple(data.get("scopes_supported")),
            code_challenge_methods=_str_tuple(data.get("code_challenge_methods")),
            token_endpoint_auth_methods=_str_tuple(data.get("token_endpoint_auth_methods")),
            suggested_scopes=_str_tuple(data.get("suggested_scopes")) or (),
        )


@dataclass(frozen=True, repr=False)
class ClientRegistration:
    """The gateway's identity at one authorization server: configured, or obtained by RFC 7591."""

    client_id: str
    client_secret: str | None
    redirect_uri: str
    auth_method: AuthMethod | None = None
    """Token endpoint authentication; None: client_secret_basic with a secret, none without."""
    secret_expires_at: float | None = None
    """RFC 7591 `client_secret_expires_at` (epoch seconds); None: never. Re-register once it has passed."""

    @property
    def token_endpoint_auth_method(self) -> AuthMethod:
        if self.auth_method is not None:
            return self.auth_method
        return "client_secret_basic" if self.client_secret else "none"

    def secret_expired(self, now: float) -> bool:
        return self.secret_expires_at is not None and now >= self.secret_expires_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "redirect_uri": self.redirect_uri,
            "auth_method": self.auth_method,
            "secret_expires_at": self.secret_expires_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClientRegistration:
        method = _optional_str(data, "auth_method")
        if method is not None and _auth_method_named(method) is None:
            raise ValueError(f"unsupported token endpoint auth method {method!r}")
        return cls(
            client_id=_required_str(data, "client_id"),
            client_secret=_optional_str(data, "client_secret"),
            redirect_uri=_required_str(data, "redirect_uri"),
            auth_method=_auth_method_named(method),
            secret_expires_at=_optional_number(data, "secret_expires_at"),
        )

    def __repr__(self) -> str:
        secret = "set" if self.client_secret else "none"
        return (
            f"ClientRegistration(client_id={self.client_id!r}, client_secret=<{secret}>, "
            f"redirect_uri={self.redirect_uri!r}, auth_method={self.token_endpoint_auth_method!r})"
        )


@dataclass(frozen=True, repr=False)
class TokenSet:
    """One user's tokens for one upstream."""

    access_token: str
    refresh_token: str | None
    expires_at: float | None
    """Epoch seconds; None when the provider did not say (use the token until the upstream refuses it)."""
    token_type: str
    scope: str | None

    def expires_soon(self, now: float, skew: float = 60.0) -> bool:
        """True when the access token expires within `skew` seconds: refresh before use, not after a 401."""
        return self.expires_at is not None and now + skew >= self.expires_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at,
            "token_type": self.token_type,
            "scope": self.scope,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenSet:
        return cls(
            access_token=_required_str(data, "access_token"),
            refresh_token=_optional_str(data, "refresh_token"),
            expires_at=_optional_number(data, "expires_at"),
            token_type=_required_str(data, "token_type"),
            scope=_optional_str(data, "scope"),
        )

    def __repr__(self) -> str:
        refresh = "set" if self.refresh_token else "none"
        return (
            f"TokenSet(access_token=<hidden>, refresh_token=<{refresh}>, expires_at={self.expires_at!r}, "
            f"token_type={self.token_type!r}, scope={self.scope!r})"
        )


# --- discovery ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ResourceInfo:
    resource: str
    authorization_servers: tuple[str, ...]
    scopes: tuple[str, ...]


async def discover(
    upstream_url: str,
    settings: OAuthClientSettings,
    http: httpx2.AsyncClient,
    *,
    require_pkce_metadata: bool = False,
) -> AuthServer:
    """Find the authorization server of `upstream_url` and read its metadata.

    The upstream's RFC 9728 metadata comes from its 401 challenge, else from the well-known URLs; a
    configured `settings.authorization_server` takes precedence over the one it names (and makes the
    metadata optional). Metadata is refused when its issuer is not the one asked for (RFC 8414 §3.3) or
    when it lists PKCE methods without S256. An authorization server that lists no PKCE methods at all is
    accepted (many providers omit the field yet support S256) unless `require_pkce_metadata`, which is
    what the 2025-11-25 MCP spec asks of clients.
    """
    challenge_scopes, info = await _protected_resource(upstream_url, http)
    issuer = settings.authorization_server or (info.authorization_servers[0] if info else None)
    if not issuer:
        raise OAuthError(
            f"{_where(upstream_url)} does not say which authorization server issues its tokens "
            "(no OAuth protected resource metadata, RFC 9728); set auth.authorization_server for this upstream"
        )
    metadata = await _authorization_server_metadata(issuer, http)
    resource = info.resource if info else _canonical(upstream_url)
    suggested = challenge_scopes or (info.scopes if info else ())
    return _auth_server(metadata, resource, suggested, require_pkce_metadata=require_pkce_metadata)


async def _protected_resource(
    upstream_url: str, http: httpx2.AsyncClient
) -> tuple[tuple[str, ...], _ResourceInfo | None]:
    """(scopes from the 401 challenge, RFC 9728 metadata or None when the upstream publishes none)."""
    metadata_url, challenge_scopes = await _challenge(upstream_url, http)
    parts = urlsplit(upstream_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    candidates = [metadata_url] if metadata_url else []
    path = parts.path.rstrip("/")
    if path:
        candidates.append(f"{origin}/.well-known/oauth-protected-resource{path}")
    candidates.append(f"{origin}/.well-known/oauth-protected-resource")
    for url in dict.fromkeys(candidates):
        document = await _get_json_document(url, http, what="protected resource metadata")
        if document is None:
            continue
        resource = document.get("resource")
        if not isinstance(resource, str) or not _resource_covers(resource, upstream_url):
            raise OAuthError(
                f"the protected resource metadata at {_where(url)} is for {_where(str(resource))}, "
                f"not for {_where(upstream_url)}; refusing to use it"
            )
        servers = _str_tuple(document.get("authorization_servers")) or ()
        return challenge_scopes, _ResourceInfo(resource, servers, _str_tuple(document.get("scopes_supported")) or ())
    return challenge_scopes, None


async def _challenge(upstream_url: str, http: httpx2.AsyncClient) -> tuple[str | None, tuple[str, ...]]:
    """Ask the upstream without a token, as an MCP client would start, and read its Bearer challenge."""
    try:
        with anyio.fail_after(2 * REQUEST_TIMEOUT):
            return await _probe(upstream_url, http)
    except (httpx2.HTTPError, TimeoutError) as exc:
        raise OAuthError(f"cannot reach {_where(upstream_url)}: {_describe(exc)}", transient=True) from None


async def _probe(upstream_url: str, http: httpx2.AsyncClient) -> tuple[str | None, tuple[str, ...]]:
    # Streamed and closed after the headers: an unprotected SSE upstream would never end its body.
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with http.stream("POST", upstream_url, json=_PROBE_BODY, headers=headers, timeout=REQUEST_TIMEOUT) as post:
        if post.status_code != 405:
            return _bearer_challenge(post)
    # A legacy HTTP+SSE endpoint only takes GET.
    sse = {"Accept": "text/event-stream"}
    async with http.stream("GET", upstream_url, headers=sse, timeout=REQUEST_TIMEOUT) as get:
        return _bearer_challenge(get)


def _bearer_challenge(response: httpx2.Response) -> tuple[str | None, tuple[str, ...]]:
    if response.status_code not in (401, 403):
        return None, ()
    for value in response.headers.get_list("www-authenticate"):
        bearer = _BEARER_SCHEME.search(value)  # the header may list several challenges
        if bearer is None:
            continue
        rest = value[bearer.end() :]
        params = {key.lower(): raw.strip('"').replace('\\"', '"') for key, raw in _AUTH_PARAM.findall(rest)}
        scopes = tuple(params.get("scope", "").split())
        return params.get("resource_metadata") or None, scopes
    return None, ()


def _metadata_urls(issuer: str) -> list[str]:
    """RFC 8414 §3.1 path insertion first, then OpenID Connect Discovery (both spellings for path issuers)."""
    parts = urlsplit(issuer)
    origin = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    if not path:
        return [f"{origin}/.well-known/oauth-authorization-server", f"{origin}/.well-known/openid-configuration"]
    return [
        f"{origin}/.well-known/oauth-authorization-server{path}",
        f"{origin}/.well-known/openid-configuration{path}",
        f"{origin}{path}/.well-known/openid-configuration",
    ]


async def _authorization_server_metadata(issuer: str, http: httpx2.AsyncClient) -> dict[str, Any]:
    if urlsplit(issuer).scheme not in ("http", "https") or urlsplit(issuer).query or urlsplit(issuer).fragment:
        raise OAuthError(f"the authorization server {issuer!r} is not a valid issuer URL")
    urls = _metadata_urls(issuer)
    for url in urls:
        document = await _get_json_document(url, http, what="authorization server metadata")
        if document is None:
            continue
        advertised = document.get("issuer")
        if not isinstance(advertised, str) or not _same_issuer(advertised, issuer):
            raise OAuthError(
                f"the authorization server metadata at {_where(url)} names issuer {_where(str(advertised))}, "
                f"not {_where(issuer)}; refusing it (RFC 8414 §3.3)"
            )
        return document
    raise OAuthError(
        f"no authorization server metadata for {_where(issuer)} (tried {', '.join(_where(u) for u in urls)})"
    )


def _auth_server(
    metadata: Mapping[str, Any], resource: str, suggested: tuple[str, ...], *, require_pkce_metadata: bool
) -> AuthServer:
    issuer = str(metadata["issuer"])
    endpoints = {}
    for key in ("authorization_endpoint", "token_endpoint"):
        value = metadata.get(key)
        if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https"):
            raise OAuthError(f"the authorization server {_where(issuer)} publishes no valid {key}")
        endpoints[key] = value
    registration = metadata.get("registration_endpoint")
    if registration is not None and (
        not isinstance(registration, str) or urlsplit(registration).scheme not in ("http", "https")
    ):
        registration = None
    methods = _str_tuple(metadata.get("code_challenge_methods_supported"))
    if methods is not None and "S256" not in methods:
        raise OAuthError(
            f"the authorization server {_where(issuer)} does not support PKCE with S256 "
            f"(it lists {', '.join(methods) or 'no methods'}); the gateway requires S256"
        )
    if methods is None and require_pkce_metadata:
        raise OAuthError(f"the authorization server {_where(issuer)} does not advertise PKCE support")
    response_types = _str_tuple(metadata.get("response_types_supported"))
    if response_types is not None and "code" not in response_types:
        raise OAuthError(f"the authorization server {_where(issuer)} does not support the authorization code flow")
    return AuthServer(
        issuer=issuer,
        authorization_endpoint=endpoints["authorization_endpoint"],
        token_endpoint=endpoints["token_endpoint"],
        registration_endpoint=registration,
        resource=resource,
        scopes_supported=_str_tuple(metadata.get("scopes_supported")),
        code_challenge_methods=methods,
        token_endpoint_auth_methods=_str_tuple(metadata.get("token_endpoint_auth_methods_supported")),
        suggested_scopes=suggested,
    )


# --- the client's identity ------------------------------------------------------------------------


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


def _auth_method_named(value: Any) -> AuthMethod | None:
    return cast(AuthMethod, value) if value in AUTH_METHODS else None


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


# --- authorization code flow ----------------------------------------------------------------------


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


# --- HTTP plumbing --------------------------------------------------------------------------------


async def _send(http: httpx2.AsyncClient, method: str, url: str, *, what: str, **kwargs: Any) -> tuple[int, bytes]:
    """One request with a timeout and a size cap; network failures become transient `OAuthError`s.

    httpx2's timeout bounds each phase (connect, each read…); the overall deadline also stops a server
    that trickles its answer.
    """
    try:
        with anyio.fail_after(2 * REQUEST_TIMEOUT):
            async with http.stream(
                method, url, timeout=REQUEST_TIMEOUT, follow_redirects=method == "GET", **kwargs
            ) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise OAuthError(f"the {what} at {_where(url)} sent an oversized response")
                return response.status_code, bytes(body)
    except (httpx2.HTTPError, TimeoutError) as exc:
        raise OAuthError(f"cannot reach the {what} at {_where(url)}: {_describe(exc)}", transient=True) from None


async def _get_json_document(url: str, http: httpx2.AsyncClient, *, what: str) -> dict[str, Any] | None:
    """A metadata document, or None when this well-known location has none (so the next one is tried)."""
    status, body = await _send(http, "GET", url, what=what)
    if status >= 500:
        raise OAuthError(f"the {what} at {_where(url)} failed with HTTP {status}", transient=True)
    if status != 200:
        return None
    try:
        document = json.loads(body)
    except ValueError:
        return None  # e.g. a single-page app answering every path with HTML
    return document if isinstance(document, dict) else None


def _json_object(
    status: int,
    body: bytes,
    url: str,
    *,
    what: str,
    expected: tuple[int, ...],
    hide: Sequence[str] = (),
) -> dict[str, Any]:
    where = _where(url)
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if status not in expected:
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            error = data["error"]
            description = data.get("error_description")
            detail = f" ({_provider_text(description, hide)})" if isinstance(description, str) and description else ""
            raise OAuthError(
                f"the {what} at {where} refused the request: {_provider_text(error, hide)}{detail}",
                error=error,
                transient=status >= 500,
            )
        raise OAuthError(f"the {what} at {where} answered HTTP {status}", transient=status >= 500 or status == 429)
    if not isinstance(data, dict):
        raise OAuthError(f"the {what} at {where} did not answer with a JSON object")
    return data


def _where(url: str) -> str:
    """A URL for messages: without query or fragment, where a misconfigured provider might echo secrets."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(invalid URL)"
    if not parts.scheme or not parts.netloc:
        return repr(url[:80])
    host = parts.netloc.rpartition("@")[2]  # never user:password@
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _provider_text(text: str, hide: Sequence[str] = ()) -> str:
    """Text written by the provider, made fit for an end user's eyes: no secrets, no control characters, short."""
    for secret in hide:
        if secret:
            text = text.replace(secret, "[redacted]")
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return text if len(text) <= PROVIDER_TEXT_LIMIT else text[:PROVIDER_TEXT_LIMIT] + "…"


def _describe(exc: Exception) -> str:
    if isinstance(exc, httpx2.TimeoutException | TimeoutError):
        return f"timed out after {REQUEST_TIMEOUT:g} s"
    return type(exc).__name__


# --- small helpers --------------------------------------------------------------------------------


def _canonical(url: str) -> str:
    """RFC 8707 / MCP canonical server URI: lower-case scheme and host, no fragment."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, parts.query, ""))


def _resource_covers(resource: str, upstream_url: str) -> bool:
    """RFC 9728 §3.3: the metadata must be about the URL asked for (or a parent path of it, on the same origin)."""
    a, b = urlsplit(_canonical(resource)), urlsplit(_canonical(upstream_url))
    if (a.scheme, a.netloc) != (b.scheme, b.netloc):
        return False
    parent, child = a.path.rstrip("/"), b.path.rstrip("/")
    return child == parent or child.startswith(parent + "/")


def _same_issuer(advertised: str, expected: str) -> bool:
    """Exact match, except a trailing slash: URL libraries add or drop it on a path-less issuer."""
    return advertised == expected or advertised.rstrip("/") == expected.rstrip("/")


def _str_tuple(value: Any) -> tuple[str, ...] | None:
    if not isinstance(value, list | tuple):
        return None
    return tuple(item for item in value if isinstance(item, str))


def _list_or_none(value: tuple[str, ...] | None) -> list[str] | None:
    return None if value is None else list(value)


def _required_str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"stored OAuth data lacks {key!r}")
    return value


def _optional_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"stored OAuth data has a malformed {key!r}")
    return value or None


def _optional_number(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"stored OAuth data has a malformed {key!r}")
    return float(value)
