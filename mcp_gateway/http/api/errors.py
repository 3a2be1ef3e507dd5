"""How the REST API under /api answers when something is wrong: one shape, `{"detail": ...}`, never a traceback.

Domain code raises the gateway's own exceptions (`mcp_gateway.errors`); this module is where
they become HTTP statuses, so a route only raises `HTTPException` for what is about the request
itself (an unknown id, a name that exists).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_gateway.errors import AuthError, Conflict, GatewayError, NotReady, UnknownTool, UpstreamError
from mcp_gateway.store import StoreError

logger = logging.getLogger(__name__)


class ErrorOut(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Missing or wrong admin token."},
    503: {"model": ErrorOut, "description": "Admin API disabled, or the store is unavailable."},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut}}
CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": ErrorOut}}

_STATUS: tuple[tuple[type[GatewayError], int], ...] = (
    (AuthError, 401),
    (UnknownTool, 404),
    (Conflict, 409),
    (UpstreamError, 502),
    (NotReady, 503),
)
"""Which HTTP status each domain error means; the first match wins, anything else is a 500."""


def install_error_handlers(api: FastAPI) -> None:
    """Every error of `api` answers `{"detail": ...}`; validation errors never echo the submitted input."""
    api.add_middleware(_InternalErrors)
    api.add_exception_handler(RequestValidationError, _validation_failed)  # type: ignore[arg-type]
    api.add_exception_handler(StoreError, _store_failed)  # type: ignore[arg-type]
    api.add_exception_handler(GatewayError, _gateway_failed)  # type: ignore[arg-type]


def invalid(loc: Sequence[str], message: str) -> RequestValidationError:
    """A 422 naming the field at `loc`, for checks pydantic cannot make (they need the store)."""
    return RequestValidationError([{"type": "value_error", "loc": tuple(loc), "msg": message}])


async def _validation_failed(request: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's default also returns each error's `input`, which would echo submitted secrets.
    errors = [{"type": e.get("type"), "loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()]
    return JSONResponse({"detail": errors}, status_code=422)


async def _store_failed(request: Request, exc: StoreError) -> JSONResponse:
    logger.error("admin API: %s %s: %s", request.method, request.url.path, exc.message)
    return JSONResponse({"detail": f"store unavailable: {exc.message}"}, status_code=503)


async def _gateway_failed(request: Request, exc: GatewayError) -> JSONResponse:
    status = next((code for kind, code in _STATUS if isinstance(exc, kind)), None)
    if status is None:
        logger.error("admin API: %s %s: %s", request.method, request.url.path, exc.message, exc_info=exc)
        return JSONResponse({"detail": "internal error in the admin API; see the gateway log"}, 500)
    headers = {"WWW-Authenticate": 'Bearer realm="mcpgw"'} if status == 401 else None
    return JSONResponse({"detail": exc.message}, status_code=status, headers=headers)


class _InternalErrors:
    """Turns an unexpected exception into a JSON 500 (no traceback); the traceback goes to the log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:  # top-level handler: the client gets JSON, the log gets the traceback
            logger.exception("admin API: %s %s failed", scope.get("method"), scope.get("path"))
            if started:
                raise
            response = JSONResponse({"detail": "internal error in the admin API; see the gateway log"}, 500)
            await response(scope, receive, send)
