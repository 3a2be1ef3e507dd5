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

This package holds no state: storing registrations and tokens (encrypted) and tracking consent flows
belong to the caller.

It is split by concept, so that each part can be read against its own RFCs: `model` (the stored values
and `OAuthError`), `discovery` (RFC 9728 / RFC 8414), `registration` (the client's identity, RFC 7591),
`tokens` (consent URL, code exchange, refresh) and `transport` (HTTP with timeouts, size caps and
redaction). Callers import from here only; the submodules are not an API.
"""

from mcp_gateway.credentials.oauth.discovery import discover
from mcp_gateway.credentials.oauth.model import AUTH_METHODS, AuthMethod, AuthServer, ClientRegistration, TokenSet
from mcp_gateway.credentials.oauth.registration import client_for, obtain_client, register_client, requested_scopes
from mcp_gateway.credentials.oauth.tokens import (
    PKCE_VERIFIER_LENGTH,
    authorization_url,
    code_from_callback,
    exchange_code,
    refresh,
)
from mcp_gateway.credentials.oauth.transport import MAX_RESPONSE_BYTES, PROVIDER_TEXT_LIMIT, REQUEST_TIMEOUT
from mcp_gateway.errors import OAuthError

__all__ = [
    "AUTH_METHODS",
    "MAX_RESPONSE_BYTES",
    "PKCE_VERIFIER_LENGTH",
    "PROVIDER_TEXT_LIMIT",
    "REQUEST_TIMEOUT",
    "AuthMethod",
    "AuthServer",
    "ClientRegistration",
    "OAuthError",
    "TokenSet",
    "authorization_url",
    "client_for",
    "code_from_callback",
    "discover",
    "exchange_code",
    "obtain_client",
    "refresh",
    "register_client",
    "requested_scopes",
]
