"""Finding an upstream's authorization server: RFC 9728 protected resource metadata, then RFC 8414 (or
OpenID) authorization server metadata.

Everything the gateway later trusts (where users consent, where codes and secrets are sent) comes from
these documents, so each one is checked against what was asked for before it is used: the resource
must be the upstream, the issuer the one named, and the server must support PKCE with S256.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx2

from mcp_gateway.config import OAuthClientSettings
from mcp_gateway.credentials.oauth.model import AuthServer, _same_issuer, _str_tuple
from mcp_gateway.credentials.oauth.transport import REQUEST_TIMEOUT, _describe, _get_json_document, _where
from mcp_gateway.errors import OAuthError

_PROBE_BODY = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "mcpgw", "version": "0"}},
}
_BEARER_SCHEME = re.compile(r"(?:^|,)\s*bearer(?:\s+|$)", re.IGNORECASE)
_AUTH_PARAM = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)')


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
