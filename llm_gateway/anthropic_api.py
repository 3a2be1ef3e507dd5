"""`/anthropic`: the Anthropic Messages API, for Claude Code and the official `anthropic` SDKs.

`HEAD`/`GET /anthropic` answer 200 without credentials (Claude Code probes the base URL at
start). `POST /v1/messages` (`?beta=true` and any other query accepted) and
`/v1/messages/count_tokens` take the body as Claude Code sends it — `role: "system"` entries,
`thinking`, `context_management`, unknown fields — and `GET /v1/models` lists what can be asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from llm_gateway.errors import Api, LlmError
from llm_gateway.http_common import (
    caller,
    completion_handler,
    error_response,
    read_json,
    respond,
    routing_headers,
)
from llm_gateway.models import listed_models
from llm_gateway.service import LlmService

logger = logging.getLogger(__name__)

Guard = Callable[[ASGIApp], ASGIApp]


def anthropic_routes(service: LlmService, guard: Guard) -> list[BaseRoute]:
    """The routes under `/anthropic`; `guard` puts the identity middleware in front of those that need a caller."""

    async def root(request: Request) -> Response:
        return JSONResponse({"name": "mcpgw", "api": "anthropic"})

    messages = completion_handler(service, "anthropic")

    async def count_tokens(request: Request) -> Response:
        try:
            body = await read_json(request, service.settings.max_body_bytes)
            reply = await service.count_tokens(body, routing_headers(request), caller(request))
        except LlmError as error:
            return error_response("anthropic", error)
        return respond(reply)

    async def models(request: Request) -> Response:
        created = datetime.now(UTC).isoformat()
        data = [
            {"type": "model", "id": model, "display_name": model, "created_at": created}
            for model in listed_models(service.settings, "anthropic")
        ]
        return JSONResponse(
            {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )

    return [
        Route("/anthropic", root, methods=["GET", "HEAD"]),
        Route("/anthropic/", root, methods=["GET", "HEAD"]),
        Route(
            "/anthropic/v1/messages",
            guard(Endpoint(messages, "anthropic")),
            methods=["POST"],
        ),
        Route("/anthropic/v1/messages/count_tokens", guard(Endpoint(count_tokens, "anthropic")), methods=["POST"]),
        Route("/anthropic/v1/models", guard(Endpoint(models, "anthropic")), methods=["GET"]),
    ]


class Endpoint:
    """A request handler as a plain ASGI app, so middleware (the identity guard) can wrap it.

    A bug in the gateway still answers in the API's error shape (500, no traceback to the
    client); the traceback goes to the log.
    """

    def __init__(self, handler: Callable[[Request], Awaitable[Response]], api: Api) -> None:
        self.handler = handler
        self.api: Api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await self.handler(Request(scope, receive, send))
        except Exception:  # top-level handler of the face: the client gets its API's error, the log the traceback
            logger.exception("llm: %s %s failed", scope.get("method"), scope.get("path"))
            response = error_response(self.api, LlmError(500, "internal error in mcpgw; see the gateway log"))
        await response(scope, receive, send)
