"""A real OAuth 2.1 authorization server for tests, built on authlib's server side and served by Starlette.

The gateway's OAuth client must be tested against something that behaves like a provider — checks PKCE,
binds codes to redirect URIs, rotates and revokes refresh tokens — not against mocks that agree with
whatever the client sends. authlib implements the protocol (grants, PKCE, RFC 7591 registration, RFC 7662
introspection); authlib has no Starlette integration, so this module adds the small glue it asks of a
framework (`create_oauth2_request`, `create_json_request`, `handle_response`) plus in-memory storage.

authlib's server is synchronous and reads request data through properties, while Starlette reads bodies
asynchronously: each handler therefore reads the whole request first (`_read`) and hands authlib an
already-parsed snapshot. Everything lives in memory in one event loop, so no locking is needed.

Endpoints (under the optional `issuer_path`): `/authorize` (GET: consent page, or immediate approval with
`login_hint=<user>`; POST: the consent form), `/token`, `/register` (unless disabled), `/introspect`, and the
RFC 8414 metadata at `/.well-known/oauth-authorization-server{issuer_path}` (and/or OpenID's
`{issuer_path}/.well-known/openid-configuration`).

Run standalone: `python -m tests.oauth.authorization_server --port 9000`.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import anyio
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    InvalidRequestError,
    JsonPayload,
    JsonRequest,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, RefreshTokenGrant
from authlib.oauth2.rfc7591 import ClientRegistrationEndpoint, InvalidClientMetadataError
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from tests.serving import free_port, serve_asgi

DEFAULT_INTROSPECTION_CLIENT = ("protected-upstream", "introspection-secret")
"""The resource server's credentials for /introspect; fixed so separately started processes agree on them."""

CODE_TTL = 600.0
ALL_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")

MetadataLocation = Literal["rfc8414", "openid", "both"]


class InvalidTargetError(OAuth2Error):
    """RFC 8707 §2: the `resource` is not acceptable (or differs from the one the grant was issued for)."""

    error = "invalid_target"


# --- storage models (the mixin methods authlib calls) -------------------------------------------


@dataclass
class RegisteredClient:
    """A client, registered dynamically or added by a test; implements authlib's `ClientMixin` protocol."""

    client_id: str
    client_secret: str | None
    redirect_uris: list[str]
    token_endpoint_auth_method: str = "client_secret_basic"
    grant_types: list[str] = field(default_factory=lambda: ["authorization_code", "refresh_token"])
    response_types: list[str] = field(default_factory=lambda: ["code"])
    client_name: str = ""
    scope: str = ""
    may_introspect: bool = False

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        return scope or self.scope

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # OAuth 2.1: exact string match

    def check_client_secret(self, client_secret: str) -> bool:
        return self.client_secret is not None and secrets.compare_digest(self.client_secret, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if endpoint == "token":
            return method == self.token_endpoint_auth_method
        if endpoint == "introspection":
            return self.may_introspect and method == "client_secret_basic"
        return False

    def check_response_type(self, response_type: str) -> bool:
        return response_type in self.response_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


@dataclass
class AuthorizationCode:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    code_challenge: str
    code_challenge_method: str
    resource: str | None
    expires_at: float

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass
class IssuedToken:
    """One token response; the access token is opaque and resolved through /introspect."""

    access_token: str
    refresh_token: str | None
    client_id: str
    user: str
    scope: str
    resource: str | None
    issued_at: float
    expires_in: float
    access_revoked: bool = False
    refresh_revoked: bool = False

    def check_client(self, client: RegisteredClient) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> float:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.access_revoked

    def get_user(self) -> str:
        return self.user


# --- Starlette glue for authlib -------------------------------------------------------------------


@dataclass
class _ReadRequest:
    """A Starlette request with its body already read, so authlib's synchronous code can look at it."""

    method: str
    url: str
    headers: Headers
    query: list[tuple[str, str]]
    form: list[tuple[str, str]]
    json: Any = None


async def _read(request: Request) -> _ReadRequest:
    form: list[tuple[str, str]] = []
    body: Any = None
    content_type = request.headers.get("content-type", "")
    if request.method == "POST" and content_type.startswith("application/x-www-form-urlencoded"):
        async with request.form() as data:
            form = [(key, value) for key, value in data.multi_items() if isinstance(value, str)]
    elif request.method == "POST" and content_type.startswith("application/json"):
        try:
            body = json.loads(await request.body())
        except ValueError:
            body = None
    return _ReadRequest(
        method=request.method,
        url=str(request.url),
        headers=request.headers,
        query=list(request.query_params.multi_items()),
        form=form,
        json=body,
    )


class _Payload(OAuth2Payload):
    """Query and form parameters together, first value wins (like Flask's `request.values`)."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in pairs:
            self._datalist[key].append(value)
        self._data = {key: values[0] for key, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class _StarletteOAuth2Request(OAuth2Request):
    def __init__(self, read: _ReadRequest) -> None:
        super().__init__(method=read.method, uri=read.url, headers=read.headers)
        self.payload = _Payload(read.query + read.form)
        self._args = dict(reversed(read.query))  # reversed: the first value wins
        self._form = dict(reversed(read.form))

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class _JsonBody(JsonPayload):
    def __init__(self, data: Any) -> None:
        self._data = data

    @property
    def data(self) -> Any:
        return self._data


class _StarletteJsonRequest(JsonRequest):
    def __init__(self, read: _ReadRequest) -> None:
        super().__init__(read.method, read.url, read.headers)
        self.payload = _JsonBody(read.json if isinstance(read.json, dict) else None)


class _StarletteAuthorizationServer(AuthorizationServer):
    """authlib's server with the framework hooks implemented for Starlette and storage in `owner`."""

    def __init__(self, owner: MiniAuthorizationServer) -> None:
        super().__init__(scopes_supported=list(owner.scopes_supported))
        self.owner = owner
        self.register_token_generator("default", owner._generate_token)

    def query_client(self, client_id: str) -> RegisteredClient | None:
        return self.owner.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        self.owner._save_token(token, request)

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        return _StarletteOAuth2Request(request)

    def create_json_request(self, request: Any) -> JsonRequest:
        return _StarletteJsonRequest(request)

    def handle_response(self, status: int, body: Any, headers: Iterable[tuple[str, str]]) -> Response:
        content = json.dumps(body) if isinstance(body, dict) else (body or "")
        return Response(content, status_code=status, headers=dict(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """authlib signals (client authenticated, token revoked): nothing listens here."""


# --- grants and endpoints -------------------------------------------------------------------------


class _S256Required(CodeChallenge):
    """PKCE on every authorization request, S256 only: OAuth 2.1 and the MCP spec require it."""

    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]

    def validate_code_challenge(self, grant: AuthorizationCodeGrant, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: missing 'code_challenge'")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256")
        super().validate_code_challenge(grant, redirect_uri)


def _check_resource(value: str | None) -> None:
    """RFC 8707 §2: an absolute URI without a fragment."""
    if value is None:
        return
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
        raise InvalidTargetError("'resource' must be an absolute URI without a fragment")


class _CodeGrant(AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(ALL_AUTH_METHODS)

    @property
    def owner(self) -> MiniAuthorizationServer:
        owner: MiniAuthorizationServer = self.server.owner
        return owner

    def validate_authorization_request(self) -> str:
        redirect_uri: str = super().validate_authorization_request()
        try:
            _check_resource(self.request.payload.data.get("resource"))
        except OAuth2Error as error:
            error.redirect_uri = redirect_uri
            raise
        return redirect_uri

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        data = request.payload.data
        self.owner.codes[code] = AuthorizationCode(
            code=code,
            client_id=request.client.client_id,
            redirect_uri=request.payload.redirect_uri or "",
            scope=request.scope or "",
            user=request.user,
            code_challenge=data["code_challenge"],
            code_challenge_method=data["code_challenge_method"],
            resource=data.get("resource"),
            expires_at=time.time() + CODE_TTL,
        )

    def query_authorization_code(self, code: str, client: RegisteredClient) -> AuthorizationCode | None:
        item = self.owner.codes.get(code)
        if item is None or item.client_id != client.client_id or item.expires_at < time.time():
            return None
        return item

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        self.owner.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: AuthorizationCode) -> str:
        return authorization_code.user

    def validate_token_request(self) -> None:
        super().validate_token_request()  # also runs the PKCE verifier hook
        requested = self.request.form.get("resource")
        if requested is not None and requested != self.request.authorization_code.resource:
            raise InvalidTargetError("'resource' differs from the authorization request")


class _RefreshGrant(RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(ALL_AUTH_METHODS)

    @property
    def owner(self) -> MiniAuthorizationServer:
        owner: MiniAuthorizationServer = self.server.owner
        return owner

    def validate_token_request(self) -> None:
        super().validate_token_request()
        requested = self.request.form.get("resource")
        if requested is not None and requested != self.request.refresh_token.resource:
            raise InvalidTargetError("'resource' differs from the original grant")

    def authenticate_refresh_token(self, refresh_token: str) -> IssuedToken | None:
        token = self.owner.tokens_by_refresh.get(refresh_token)
        if token is None or token.refresh_revoked:
            return None
        return token

    def authenticate_user(self, refresh_token: IssuedToken) -> str:
        return refresh_token.user

    def issue_token(self, user: str, refresh_token: IssuedToken) -> dict[str, Any]:
        token: dict[str, Any] = self.generate_token(
            user=user,
            scope=self.request.payload.scope or refresh_token.get_scope(),
            include_refresh_token=self.owner.rotate_refresh_tokens,
        )
        return token

    def revoke_old_credential(self, refresh_token: IssuedToken) -> None:
        if self.owner.rotate_refresh_tokens:
            refresh_token.refresh_revoked = True


class _Registration(ClientRegistrationEndpoint):
    """Open RFC 7591 registration (no initial access token), as MCP clients expect."""

    def __init__(self, owner: MiniAuthorizationServer) -> None:
        super().__init__()
        self.owner = owner

    def authenticate_token(self, request: JsonRequest) -> str:
        return "open-registration"

    def get_server_metadata(self) -> dict[str, Any]:
        return self.owner.metadata()

    def generate_client_info(self, request: JsonRequest) -> dict[str, Any]:
        info: dict[str, Any] = super().generate_client_info(request)
        if (request.payload.data or {}).get("token_endpoint_auth_method") == "none":
            info.pop("client_secret", None)  # a public client gets no secret
            info.pop("client_secret_expires_at", None)
        return info

    def save_client(
        self, client_info: dict[str, Any], client_metadata: dict[str, Any], request: JsonRequest
    ) -> RegisteredClient:
        redirect_uris = client_metadata.get("redirect_uris") or []
        if not redirect_uris:
            raise InvalidClientMetadataError("'redirect_uris' is required for the authorization code grant")
        client = RegisteredClient(
            client_id=client_info["client_id"],
            client_secret=client_info.get("client_secret"),
            redirect_uris=list(redirect_uris),
            token_endpoint_auth_method=client_metadata.get("token_endpoint_auth_method", "client_secret_basic"),
            grant_types=list(client_metadata.get("grant_types") or ["authorization_code"]),
            response_types=list(client_metadata.get("response_types") or ["code"]),
            client_name=client_metadata.get("client_name", ""),
            scope=client_metadata.get("scope", ""),
        )
        self.owner.clients[client.client_id] = client
        return client


class _Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = ["client_secret_basic"]

    def __init__(self, owner: MiniAuthorizationServer) -> None:
        super().__init__()
        self.owner = owner

    def query_token(self, token_string: str, token_type_hint: str | None) -> IssuedToken | None:
        if token_type_hint == "refresh_token":
            return None  # only access tokens are introspected here
        return self.owner.tokens_by_access.get(token_string)

    def check_permission(self, token: IssuedToken, client: RegisteredClient, request: OAuth2Request) -> bool:
        return client.may_introspect

    def introspect_token(self, token: IssuedToken) -> dict[str, Any]:
        return {
            "active": True,
            "client_id": token.client_id,
            "token_type": "Bearer",
            "username": token.user,
            "sub": token.user,
            "scope": token.scope,
            "aud": token.resource,
            "iss": self.owner.issuer,
            "exp": int(token.issued_at + token.expires_in),
            "iat": int(token.issued_at),
        }


# --- the server tests talk to ---------------------------------------------------------------------


class MiniAuthorizationServer:
    """An in-memory OAuth 2.1 authorization server with knobs for tests.

    Runtime controls: `access_token_ttl` (seconds, for tokens issued from now on), `rotate_refresh_tokens`,
    `metadata_overrides` (keys merged into the metadata document; a None value removes the key),
    `token_endpoint_override` ((status, content type, body) answered by /token instead of authlib),
    `revoke_refresh_tokens(user)`, `revoke_access_tokens(user)`, `add_client(...)` (a pre-registered client).
    Observations: `token_requests` (per grant type, every request), `token_request_fields` (the form of each
    /token request, secrets included: this is a test server), `tokens_issued` (per grant type),
    `auth_methods_used` (client authentication method of each issued token), `clients`, `codes`,
    `tokens_by_access`.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        issuer_path: str = "",
        allow_registration: bool = True,
        metadata_at: MetadataLocation = "rfc8414",
        access_token_ttl: float = 3600.0,
        rotate_refresh_tokens: bool = True,
        scopes_supported: Iterable[str] = ("mcp:tools", "profile"),
        introspection_client: tuple[str, str] = DEFAULT_INTROSPECTION_CLIENT,
    ) -> None:
        if issuer_path and (not issuer_path.startswith("/") or issuer_path.endswith("/")):
            raise ValueError("issuer_path must start with '/' and not end with one")
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.issuer_path = issuer_path
        self.issuer = self.base_url + issuer_path
        self.allow_registration = allow_registration
        self.metadata_at: MetadataLocation = metadata_at
        self.access_token_ttl = access_token_ttl
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.scopes_supported = tuple(scopes_supported)
        self.metadata_overrides: dict[str, Any] = {}
        self.token_endpoint_override: tuple[int, str, str] | None = None

        self.clients: dict[str, RegisteredClient] = {}
        self.codes: dict[str, AuthorizationCode] = {}
        self.tokens_by_access: dict[str, IssuedToken] = {}
        self.tokens_by_refresh: dict[str, IssuedToken] = {}
        self.token_requests: Counter[str] = Counter()
        self.token_request_fields: list[dict[str, str]] = []
        self.tokens_issued: Counter[str] = Counter()
        self.auth_methods_used: list[str] = []

        self.introspection_client_id, self.introspection_client_secret = introspection_client
        self.clients[self.introspection_client_id] = RegisteredClient(
            client_id=self.introspection_client_id,
            client_secret=self.introspection_client_secret,
            redirect_uris=[],
            grant_types=[],
            response_types=[],
            client_name="protected upstream (introspection)",
            may_introspect=True,
        )

        self.authlib = _StarletteAuthorizationServer(self)
        self.authlib.register_grant(_CodeGrant, [_S256Required(required=True)])
        self.authlib.register_grant(_RefreshGrant)
        self.authlib.register_endpoint(_Introspection(self))
        if allow_registration:
            self.authlib.register_endpoint(_Registration(self))
        self.app = self._build_app()

    # -- URLs and metadata

    def endpoint(self, name: str) -> str:
        return f"{self.issuer}/{name}"

    @property
    def introspection_endpoint(self) -> str:
        return self.endpoint("introspect")

    def metadata(self) -> dict[str, Any]:
        """The RFC 8414 document, with `metadata_overrides` applied."""
        document: dict[str, Any] = {
            "issuer": self.issuer,
            "authorization_endpoint": self.endpoint("authorize"),
            "token_endpoint": self.endpoint("token"),
            "introspection_endpoint": self.introspection_endpoint,
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
            "scopes_supported": list(self.scopes_supported),
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": list(ALL_AUTH_METHODS),
            "code_challenge_methods_supported": ["S256"],
        }
        if self.allow_registration:
            document["registration_endpoint"] = self.endpoint("register")
        document["userinfo_endpoint"] = self.endpoint("userinfo")
        for key, value in self.metadata_overrides.items():
            if value is None:
                document.pop(key, None)
            else:
                document[key] = value
        return document

    # -- test controls

    def add_client(
        self,
        redirect_uris: Iterable[str],
        *,
        auth_method: str = "client_secret_basic",
        client_id: str | None = None,
        grant_types: Iterable[str] = ("authorization_code", "refresh_token"),
    ) -> RegisteredClient:
        """Pre-register a client, as an admin would in a provider's console (for `client_id` configurations)."""
        if auth_method not in ALL_AUTH_METHODS:
            raise ValueError(f"unknown token endpoint auth method {auth_method!r}")
        client = RegisteredClient(
            client_id=client_id or f"client-{generate_token(16)}",
            client_secret=None if auth_method == "none" else generate_token(40),
            redirect_uris=list(redirect_uris),
            token_endpoint_auth_method=auth_method,
            grant_types=list(grant_types),
        )
        self.clients[client.client_id] = client
        return client

    def revoke_refresh_tokens(self, user: str) -> int:
        """Make every refresh token of `user` invalid (their next refresh gets invalid_grant); returns how many."""
        count = 0
        for token in self.tokens_by_refresh.values():
            if token.user == user and not token.refresh_revoked:
                token.refresh_revoked = True
                count += 1
        return count

    def revoke_access_tokens(self, user: str) -> int:
        """Make every access token of `user` inactive at /introspect; returns how many."""
        count = 0
        for token in self.tokens_by_access.values():
            if token.user == user and not token.access_revoked:
                token.access_revoked = True
                count += 1
        return count

    def users_with_tokens(self) -> set[str]:
        return {token.user for token in self.tokens_by_access.values()}

    # -- authlib callbacks

    def _generate_token(
        self,
        grant_type: str,
        client: RegisteredClient,
        user: str | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        token: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": generate_token(42),
            "expires_in": int(expires_in or self.access_token_ttl),
        }
        if include_refresh_token:
            token["refresh_token"] = generate_token(48)
        if scope:
            token["scope"] = scope
        return token

    def _save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        grant_type = request.payload.grant_type
        if grant_type == "refresh_token":
            resource = request.refresh_token.resource
        else:
            resource = request.authorization_code.resource
        issued = IssuedToken(
            access_token=token["access_token"],
            refresh_token=token.get("refresh_token"),
            client_id=request.client.client_id,
            user=request.user,
            scope=token.get("scope", ""),
            resource=resource,
            issued_at=time.time(),
            expires_in=float(token["expires_in"]),
        )
        self.tokens_by_access[issued.access_token] = issued
        if issued.refresh_token:
            self.tokens_by_refresh[issued.refresh_token] = issued
        self.tokens_issued[grant_type] += 1
        self.auth_methods_used.append(request.auth_method or "")

    # -- HTTP

    def _build_app(self) -> Starlette:
        p = self.issuer_path
        routes = [
            Route(f"{p}/authorize", self._authorize, methods=["GET", "POST"]),
            Route(f"{p}/token", self._token, methods=["POST"]),
            Route(f"{p}/introspect", self._introspect, methods=["POST"]),
            Route(f"{p}/userinfo", self._userinfo, methods=["GET"]),
        ]
        if self.allow_registration:
            routes.append(Route(f"{p}/register", self._register, methods=["POST"]))
        if self.metadata_at in ("rfc8414", "both"):
            routes.append(Route(f"/.well-known/oauth-authorization-server{p}", self._metadata, methods=["GET"]))
        if self.metadata_at in ("openid", "both"):
            routes.append(Route(f"{p}/.well-known/openid-configuration", self._metadata, methods=["GET"]))
        return Starlette(routes=routes)

    async def _userinfo(self, request: Request) -> Response:
        """OpenID Connect userinfo: who an access token belongs to (this server's users have test emails)."""
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        issued = self.tokens_by_access.get(token)
        if issued is None or issued.access_revoked or time.time() > issued.issued_at + issued.expires_in:
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        return JSONResponse({"sub": issued.user, "email": f"{issued.user}@example.com"})

    async def _metadata(self, request: Request) -> Response:
        return JSONResponse(self.metadata())

    async def _authorize(self, request: Request) -> Response:
        read = await _read(request)
        fields = dict(reversed(read.query + read.form))
        user = fields.get("user") if request.method == "POST" else fields.get("login_hint")
        try:
            grant = self.authlib.get_consent_grant(read, end_user=user)
        except OAuth2Error as error:
            response: Response = self.authlib.handle_error_response(None, error)
            return response
        if request.method == "GET" and not user:
            return self._consent_page(grant, read.query)
        if request.method == "POST" and fields.get("decision") != "approve":
            user = None  # denied: authlib redirects with error=access_denied
        elif not (user or "").strip():
            return self._consent_page(grant, read.form, status=400, problem="Enter a user name.")
        approved: Response = self.authlib.create_authorization_response(grant.request, grant_user=user, grant=grant)
        return approved

    def _consent_page(
        self, grant: AuthorizationCodeGrant, params: list[tuple[str, str]], *, status: int = 200, problem: str = ""
    ) -> HTMLResponse:
        client: RegisteredClient = grant.request.client
        data = grant.request.payload.data
        hidden = "\n".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in params
            if k not in ("user", "decision", "login_hint")
        )
        name = html.escape(client.client_name or client.client_id)
        page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Authorize {name}</title></head>
<body>
<h1>Authorize {name}</h1>
<p>{name} asks for access to <code>{html.escape(data.get("resource") or "(any resource)")}</code>
with scope <code>{html.escape(data.get("scope") or "(default)")}</code>.</p>
{f'<p class="problem">{html.escape(problem)}</p>' if problem else ""}
<form id="consent" method="post" action="{html.escape(self.issuer_path)}/authorize">
{hidden}
<label>User name <input type="text" name="user" required></label>
<button type="submit" name="decision" value="approve">Approve</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>
</body></html>
"""
        return HTMLResponse(page, status_code=status)

    async def _token(self, request: Request) -> Response:
        read = await _read(request)
        fields = dict(reversed(read.form))
        self.token_requests[fields.get("grant_type", "")] += 1
        self.token_request_fields.append(fields)
        if self.token_endpoint_override is not None:
            status, content_type, body = self.token_endpoint_override
            return Response(body, status_code=status, media_type=content_type)
        response: Response = self.authlib.create_token_response(read)
        return response

    async def _introspect(self, request: Request) -> Response:
        response: Response = self.authlib.create_endpoint_response("introspection", await _read(request))
        return response

    async def _register(self, request: Request) -> Response:
        read = await _read(request)
        if not isinstance(read.json, dict):
            return JSONResponse(
                {"error": "invalid_client_metadata", "error_description": "expected a JSON object"}, status_code=400
            )
        response: Response = self.authlib.create_endpoint_response("client_registration", read)
        return response

    # -- running

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[MiniAuthorizationServer]:
        """Serve on `self.port` for the duration of the block."""
        async with serve_asgi(self.app, self.port, lifespan="off"):
            yield self


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--issuer-path", default="", help="e.g. /tenant: an issuer URL with a path")
    parser.add_argument("--no-registration", action="store_true", help="disable RFC 7591 dynamic registration")
    parser.add_argument("--access-token-ttl", type=float, default=3600.0)
    parser.add_argument("--metadata-at", choices=["rfc8414", "openid", "both"], default="rfc8414")
    args = parser.parse_args(argv)
    server = MiniAuthorizationServer(
        args.port,
        issuer_path=args.issuer_path,
        allow_registration=not args.no_registration,
        access_token_ttl=args.access_token_ttl,
        metadata_at=args.metadata_at,
    )

    async def run() -> None:
        async with server.running():
            print(f"authorization server: issuer {server.issuer}", flush=True)
            await anyio.sleep_forever()

    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(run)


if __name__ == "__main__":
    main()
