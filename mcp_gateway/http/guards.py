"""Cheap checks on /mcp requests before the rest of the gateway spends anything on them.

`HostOriginGuard` (outermost) applies the DNS-rebinding rules — Host allowlist (421) and Origin
allowlist (403), see `transport_security` below — before identity and rate limits: a web page
the user happens to visit must not even use up their request budget. The SDK checks the
same again; that costs two header comparisons.

`EnvelopeGuard` (innermost) reads the body of a POST. The SDK's handshake-era transport answers
a batch or a malformed envelope with `-32602 Invalid params` and a pydantic dump, and takes a
request whose `id` is null, a bool or an object for a notification (202; no answer ever
comes). Checking the envelope here gives every protocol era the JSON-RPC 2.0 answers, HTTP 400:

- `-32700 Parse error`: the body is not JSON;
- `-32600 Invalid Request`: a batch array (MCP has no batches since 2025-06-18), or an object
  that is not a request, notification or response (wrong `jsonrpc`, `method`, `id`, `params`).

Oversized bodies get 413 with a JSON-RPC error naming the limit. A GET's `Last-Event-ID` is
dropped: the gateway keeps no event store, and the SDK answers a resumption attempt without one
with no response at all (uvicorn turns that into a 500); the client gets a fresh stream instead,
as from any server without resumability. Accept, Content-Type, sessions
and the params of known methods stay with the SDK. The body is read once, up to the limit, and
replayed to the app behind (the SDK buffers it the same way); the second JSON parse costs
microseconds against milliseconds for a proxied call.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from typing import Any

import pydantic_core
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import INVALID_REQUEST, PARSE_ERROR
from mcp_types.version import SUPPORTED_PROTOCOL_VERSIONS
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_gateway.config import ServerSettings
from mcp_gateway.http.raw_headers import raw_headers

logger = logging.getLogger(__name__)

_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_JSON = "application/json"
_VERSIONS = frozenset(SUPPORTED_PROTOCOL_VERSIONS)
JSONRPC_METHOD_KEY = "mcpgw.jsonrpc_method"
JSONRPC_MESSAGE_KEY = "mcpgw.jsonrpc_message"
"""The decoded JSON-RPC message of a POST, left in `scope["state"]` for the fast path (`http/fast_calls.py`)."""
"""Where `EnvelopeGuard` leaves the `method` of a POSTed JSON-RPC message in the ASGI scope's state."""


def error_response(
    status: int,
    code: int,
    message: str,
    *,
    request_id: str | int | None = None,
    data: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A JSON-RPC error as an HTTP response (`id: null` when the request's id is unknown)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = dict(data)
    body = {"jsonrpc": "2.0", "id": request_id, "error": error}
    return JSONResponse(body, status_code=status, headers=dict(headers) if headers else None)


class HostOriginGuard:
    """ASGI middleware: refuses requests whose Host (421) or Origin (403) the settings do not allow."""

    def __init__(self, app: ASGIApp, settings: TransportSecuritySettings) -> None:
        self.app = app
        self.enabled = settings.enable_dns_rebinding_protection
        self._hosts = frozenset(settings.allowed_hosts)
        self._host_prefixes = tuple(h[:-1] for h in settings.allowed_hosts if h.endswith(":*"))
        self._origins = frozenset(settings.allowed_origins)
        self._origin_prefixes = tuple(o[:-1] for o in settings.allowed_origins if o.endswith(":*"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The SDK's DNS-rebinding rules (exact names, or `name:*` for any port), read straight off the raw
        headers: this runs on every `/mcp` request, and building a `Request` to read two headers cost more
        than the check itself."""
        if self.enabled and scope["type"] == "http":
            headers = raw_headers(scope)
            raw_host, raw_origin = headers.get(b"host"), headers.get(b"origin")
            host = raw_host.decode("latin-1") if raw_host is not None else None
            origin = raw_origin.decode("latin-1") if raw_origin is not None else None
            if not host or not (host in self._hosts or host.startswith(self._host_prefixes)):
                logger.warning("refused a request with Host %r", host)
                await Response("Invalid Host header", status_code=421)(scope, receive, send)
                return
            if origin and not (origin in self._origins or origin.startswith(self._origin_prefixes)):
                logger.warning("refused a request with Origin %r", origin)
                await Response("Invalid Origin header", status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class EnvelopeGuard:
    """ASGI middleware for the MCP endpoint; see the module docstring."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = raw_headers(scope)
        version = headers.get(b"mcp-protocol-version")
        if version is not None and version.decode("latin-1") not in _VERSIONS:
            # The SDK answers 400 too, but with a message about `params._meta` envelope keys.
            why = (
                f"Unsupported MCP-Protocol-Version {version.decode('latin-1')!r}: "
                f"this gateway speaks {', '.join(SUPPORTED_PROTOCOL_VERSIONS)}"
            )
            await error_response(400, INVALID_REQUEST, why)(scope, receive, send)
            return
        if scope["method"] == "GET":
            kept = [(name, value) for name, value in scope["headers"] if name != b"last-event-id"]
            await self.app({**scope, "headers": kept}, receive, send)
            return
        if scope["method"] != "POST" or not _declares_json(headers):
            # The SDK refuses other content types itself, without reading the body.
            await self.app(scope, receive, send)
            return
        if _content_length(headers) > self.max_body_bytes:
            await self._too_large()(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._too_large()(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)

        try:
            decoded = pydantic_core.from_json(body)
        except ValueError as exc:
            await error_response(400, PARSE_ERROR, f"Parse error: {exc}")(scope, receive, send)
            return
        problem = envelope_problem(decoded)
        if problem is not None:
            request_id = decoded.get("id") if isinstance(decoded, dict) and _valid_id(decoded.get("id")) else None
            await error_response(400, INVALID_REQUEST, f"Invalid Request: {problem}", request_id=request_id)(
                scope, receive, send
            )
            return
        if isinstance(decoded, dict):
            # For the layers behind (`answers.AnswerAsJson`), so they need not parse the body again.
            state = scope.setdefault("state", {})
            state[JSONRPC_METHOD_KEY] = decoded.get("method")
            state[JSONRPC_MESSAGE_KEY] = decoded

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self) -> JSONResponse:
        message = f"request body too large: this gateway accepts at most {self.max_body_bytes} bytes"
        return error_response(413, INVALID_REQUEST, message)


def envelope_problem(message: Any) -> str | None:
    """Why `message` (decoded JSON) is not one JSON-RPC 2.0 message as MCP uses them; None if it is."""
    if isinstance(message, list):
        return "batch arrays are not supported; send one JSON-RPC message per request"
    if not isinstance(message, dict):
        return "the body must be a JSON-RPC message object"
    if message.get("jsonrpc") != "2.0":
        return 'the "jsonrpc" member must be "2.0"'
    if "id" in message and not _valid_id(message["id"]) and not ("error" in message and message["id"] is None):
        return 'the "id" must be a string or an integer'
    if "method" in message:
        if not isinstance(message["method"], str):
            return 'the "method" must be a string'
        if message.get("params") is not None and not isinstance(message["params"], dict):
            return 'the "params" must be an object'
        return None
    if "id" not in message:
        return 'a message needs a "method" (request, notification) or an "id" (response)'
    if "result" in message:
        return None if isinstance(message["result"], dict) else 'the "result" must be an object'
    error = message.get("error")
    if isinstance(error, dict) and _is_int(error.get("code")) and isinstance(error.get("message"), str):
        return None
    return 'a response needs a "result" object or an "error" with an integer "code" and a string "message"'


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) or _is_int(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _declares_json(headers: Mapping[bytes, bytes]) -> bool:
    # The SDK's own test (transport_security): the media type starts with application/json.
    return headers.get(b"content-type", b"").decode("latin-1").lower().startswith(_JSON)


def _content_length(headers: Mapping[bytes, bytes]) -> int:
    try:
        return int(headers.get(b"content-length", b"0"))
    except ValueError:
        return 0


def transport_security(settings: ServerSettings) -> TransportSecuritySettings:
    """DNS-rebinding protection: on by default for loopback binds, or whenever hosts are listed."""
    loopback = is_loopback(settings.host)
    hosts = settings.allowed_hosts
    origins = settings.allowed_origins
    if hosts is None and loopback:
        hosts = [f"{name}:*" for name in _LOOPBACK_NAMES] + list(_LOOPBACK_NAMES)
    if origins is None and loopback:
        origins = [f"http://{name}:*" for name in _LOOPBACK_NAMES]
    if hosts is None:
        logger.warning(
            "bound to %s without server.allowed_hosts: Host/Origin checks on /mcp are off; "
            "list the hostnames clients use to turn them on",
            settings.host,
        )
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins or []
    )


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (`127.0.0.1`, `[::1]`), where the demo defaults are safe."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class BrowserCors:
    """Starlette's CORS middleware, consulted only for requests that carry an `Origin` (browsers).

    For any other request it does nothing but call the app, after parsing the headers to find that
    out; skipping it there saves that on every MCP and model request.
    """

    def __init__(self, app: ASGIApp, /, **options: Any) -> None:
        self.app = app
        self.cors = CORSMiddleware(app, **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and b"origin" in raw_headers(scope):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
