"""A real OAuth-protected MCP upstream for tests: the SDK's resource-server support plus token introspection.

It behaves like a hosted MCP server behind OAuth: without a valid token, `/mcp` answers 401 with
`WWW-Authenticate: Bearer … resource_metadata="…"`; the RFC 9728 metadata names the test authorization server;
tokens are checked by calling that server's RFC 7662 `/introspect` and must have been issued for this server's
URL (RFC 8707 audience). Tools: `whoami` (the token's user, as text and as structuredContent `{"user": …}`) and
`echo(text)`. Every call is recorded as (user, sha256(token)[:12], tool) in `calls`, also served unauthenticated
at `GET /test/calls`, so a test can tell whose token the gateway used without seeing the token itself.

`prm_location` reproduces the discovery variants found in the wild: "header" (the SDK's default: the 401 names
the metadata URL), "path" (the 401 does not name it; metadata at `/.well-known/oauth-protected-resource/mcp`),
"root" (not named; metadata only at `/.well-known/oauth-protected-resource`), "none" (no metadata at all).

Run standalone: `python -m tests.oauth.protected_upstream --port 9001 --issuer http://127.0.0.1:9000`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import anyio
import httpx2
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, TextContent
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.oauth.authorization_server import DEFAULT_INTROSPECTION_CLIENT
from tests.serving import free_port, serve_asgi

PrmLocation = Literal["header", "path", "root", "none"]
ROOT_METADATA_PATH = "/.well-known/oauth-protected-resource"
_RESOURCE_METADATA_PARAM = re.compile(r',?\s*resource_metadata="[^"]*"')


@dataclass(frozen=True)
class CallRecord:
    user: str
    token_hash: str
    """sha256 of the bearer token, first 12 hex digits: enough to tell tokens apart, useless to an attacker."""
    tool: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


class _IntrospectionVerifier:
    """The SDK's `TokenVerifier` protocol, answered by the authorization server's /introspect."""

    def __init__(self, owner: ProtectedUpstream) -> None:
        self.owner = owner

    async def verify_token(self, token: str) -> AccessToken | None:
        owner = self.owner
        async with httpx2.AsyncClient(timeout=10.0) as http:
            response = await http.post(
                owner.introspection_endpoint,
                data={"token": token, "token_type_hint": "access_token"},
                auth=(owner.client_id, owner.client_secret),
            )
        if response.status_code != 200:
            owner.rejections.append(f"introspection failed with HTTP {response.status_code}")
            return None
        data: dict[str, Any] = response.json()
        if not data.get("active"):
            owner.rejections.append("inactive token")
            return None
        audience = data.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if owner.url not in audiences:
            owner.rejections.append(f"token audience {audience!r} is not {owner.url}")
            return None
        return AccessToken(
            token=token,
            client_id=str(data.get("client_id", "")),
            scopes=str(data.get("scope") or "").split(),
            expires_at=data.get("exp"),
            resource=owner.url,
            subject=data.get("sub") or data.get("username"),
            claims=data,
        )


class ProtectedUpstream:
    """The server; build it, then `async with upstream.running():` (once per instance: the SDK's session
    manager cannot be restarted)."""

    def __init__(
        self,
        issuer: str,
        port: int | None = None,
        *,
        introspection_endpoint: str | None = None,
        client_id: str = DEFAULT_INTROSPECTION_CLIENT[0],
        client_secret: str = DEFAULT_INTROSPECTION_CLIENT[1],
        required_scopes: Iterable[str] = (),
        prm_location: PrmLocation = "header",
        json_response: bool = False,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base_url}/mcp"
        self.introspection_endpoint = introspection_endpoint or f"{self.issuer}/introspect"
        self.client_id = client_id
        self.client_secret = client_secret
        self.required_scopes = list(required_scopes)
        self.prm_location: PrmLocation = prm_location
        self.calls: list[CallRecord] = []
        self.rejections: list[str] = []
        self.http_log: list[tuple[str, str, int]] = []
        """(method, path, status) of every HTTP request, to check which discovery URLs a client tried."""
        self.app = _DiscoveryVariants(self._build_app(json_response), self)

    @property
    def path_metadata_path(self) -> str:
        return f"{ROOT_METADATA_PATH}/mcp"

    def _record(self, tool: str) -> str:
        token = get_access_token()
        if token is None:  # the SDK let an unauthenticated call through: fail loudly
            raise RuntimeError("no access token in the request context")
        user = token.subject or ""
        self.calls.append(CallRecord(user=user, token_hash=token_hash(token.token), tool=tool))
        return user

    def _build_app(self, json_response: bool) -> ASGIApp:
        server = MCPServer(
            name="protected-upstream",
            version="1.0.0",
            log_level="WARNING",
            token_verifier=_IntrospectionVerifier(self),
            auth=AuthSettings(
                issuer_url=self.issuer,  # type: ignore[arg-type]  # pydantic validates the string
                resource_server_url=self.url,  # type: ignore[arg-type]
                required_scopes=self.required_scopes or None,
                validate_token_resource=True,
            ),
        )

        @server.tool(description="Who the bearer token belongs to.")
        async def whoami() -> CallToolResult:
            user = self._record("whoami")
            return CallToolResult(content=[TextContent(type="text", text=user)], structured_content={"user": user})

        @server.tool(description="Echo the text back.")
        async def echo(text: str) -> str:
            self._record("echo")
            return text

        @server.custom_route("/test/calls", methods=["GET"])
        async def calls(request: Request) -> Response:
            return JSONResponse([asdict(call) for call in self.calls])

        return server.streamable_http_app(json_response=json_response, host="127.0.0.1")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ProtectedUpstream]:
        async with serve_asgi(self.app, self.port):
            yield self


class _DiscoveryVariants:
    """ASGI wrapper: logs requests and reshapes RFC 9728 discovery according to `owner.prm_location`."""

    def __init__(self, app: ASGIApp, owner: ProtectedUpstream) -> None:
        self.app = app
        self.owner = owner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        owner = self.owner
        path: str = scope["path"]
        status = 0

        async def send_logged(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if status == 401 and owner.prm_location != "header":
                    message = {**message, "headers": [_strip_metadata(k, v) for k, v in message.get("headers", [])]}
            await send(message)

        try:
            location = owner.prm_location
            if path.startswith(ROOT_METADATA_PATH) and (
                location == "none" or (location == "root" and path != ROOT_METADATA_PATH)
            ):
                await Response(status_code=404)(scope, receive, send_logged)
            elif path == ROOT_METADATA_PATH and location == "root":
                inner = {**scope, "path": owner.path_metadata_path, "raw_path": owner.path_metadata_path.encode()}
                await self.app(inner, receive, send_logged)
            else:
                await self.app(scope, receive, send_logged)
        finally:
            owner.http_log.append((scope["method"], path, status))


def _strip_metadata(name: bytes, value: bytes) -> tuple[bytes, bytes]:
    if name.lower() != b"www-authenticate":
        return name, value
    stripped = _RESOURCE_METADATA_PARAM.sub("", value.decode("latin-1")).replace("Bearer ,", "Bearer")
    return name, stripped.encode("latin-1")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--issuer", required=True, help="the authorization server's issuer URL")
    parser.add_argument("--introspection-endpoint", default=None, help="default: ISSUER/introspect")
    parser.add_argument("--client-id", default=DEFAULT_INTROSPECTION_CLIENT[0])
    parser.add_argument("--client-secret", default=DEFAULT_INTROSPECTION_CLIENT[1])
    parser.add_argument("--required-scope", action="append", default=[])
    parser.add_argument("--prm-location", choices=["header", "path", "root", "none"], default="header")
    parser.add_argument("--json-response", action="store_true")
    args = parser.parse_args(argv)
    upstream = ProtectedUpstream(
        args.issuer,
        args.port,
        introspection_endpoint=args.introspection_endpoint,
        client_id=args.client_id,
        client_secret=args.client_secret,
        required_scopes=args.required_scope,
        prm_location=args.prm_location,
        json_response=args.json_response,
    )

    async def run() -> None:
        async with upstream.running():
            print(f"protected upstream: {upstream.url}", flush=True)
            await anyio.sleep_forever()

    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(run)


if __name__ == "__main__":
    main()
