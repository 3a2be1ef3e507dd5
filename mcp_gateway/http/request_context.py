"""Per-request context for the HTTP faces: a `request_id` that every log line of the request carries
(echoed as `X-Request-Id`), and the response counted in the metrics.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from random import getrandbits as _random_bits

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_gateway.http.raw_headers import raw_headers
from mcp_gateway.metrics import Metrics

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_REQUEST_ID_HEADER = b"x-request-id"


class RequestContextMiddleware:
    """Gives each HTTP request a `request_id` (logged with every line, echoed as `X-Request-Id`) and counts it.

    A client's own `X-Request-Id` is kept when it is a plain token (at most 128 of
    `A-Z a-z 0-9 . _ : -`), so ids can be followed across hops; anything else is replaced.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # 32 hex digits, as uuid4().hex; ids need to be unique, not secret: no system call per request
        request_id = _incoming_request_id(raw_headers(scope)) or f"{_random_bits(128):032x}"
        path = _path_label(scope["path"])
        metrics = self.metrics
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), (_REQUEST_ID_HEADER, request_id.encode())]
                if metrics is not None:
                    metrics.http_response(path, message["status"])
            await send(message)

        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)  # not the context manager: cheaper
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if not started and metrics is not None:
                metrics.http_response(path, 500)  # Starlette's error middleware, outside us, answers it
            raise
        finally:
            structlog.contextvars.reset_contextvars(**tokens)


def _incoming_request_id(headers: Mapping[bytes, bytes]) -> str | None:
    value = headers.get(_REQUEST_ID_HEADER)
    if value is None:
        return None
    text = value.decode("latin-1")
    return text if _REQUEST_ID.match(text) else None


_PATHS = frozenset({"/mcp", "/healthz", "/readyz", "/metrics", "/anthropic", "/openai"})
_PREFIXES = ("/anthropic/", "/openai/")


def _path_label(path: str) -> str:
    if path in _PATHS:
        return path
    if path == "/api" or path.startswith("/api/"):
        return "/api"  # admin API paths hold ids: one label for all of them
    for face in _PREFIXES:
        if path.startswith(face):
            return face.rstrip("/")
    return "other"
