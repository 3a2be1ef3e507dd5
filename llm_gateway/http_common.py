"""What both LLM faces do the same way: read a JSON body within a limit, answer a `Reply` or an `LlmError`.

The body is read once, up to `max_body_bytes` (413 beyond, in the API's error shape, before it
is all read), and parsed once; a body that is not JSON is a 400 that says so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import anyio
import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from llm_gateway.errors import Api, LlmError, error_body
from llm_gateway.reply import Producer, Reply
from llm_gateway.service import LlmService
from llm_gateway.wire import dumps, loads
from mcp_gateway.identity import Identity, headers_in_scope, identity_in_scope


async def read_json(request: Request, limit: int) -> Any:
    """The request's JSON body; raises `LlmError` 413 (too big) or 400 (not JSON)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise LlmError(413, f"request body is larger than this gateway accepts ({limit} bytes, llm.max_body_bytes)")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise LlmError(413, f"request body is larger than this gateway accepts ({limit} bytes, llm.max_body_bytes)")
    try:
        return loads(bytes(data))
    except ValueError:
        raise LlmError(400, "the request body is not valid JSON") from None


def caller(request: Request) -> Identity | None:
    """Who is asking, as the identity middleware in front of the face resolved it."""
    return identity_in_scope(request.scope)


def request_id() -> str | None:
    """The id the request-context middleware gave this request (`X-Request-Id`), for joining records."""
    value = structlog.contextvars.get_contextvars().get("request_id")
    return value if isinstance(value, str) else None


def routing_headers(request: Request) -> dict[str, str]:
    """Request headers by lower-case name (what routing rules and Anthropic pass-through read)."""
    return headers_in_scope(request.scope)


def respond(reply: Reply) -> Response:
    if reply.stream is not None or reply.produce is not None:
        body = reply.produce or reply.stream
        assert body is not None
        return EventStreamResponse(body, status_code=reply.status, headers=reply.headers)
    return Response(reply.body, status_code=reply.status, headers=reply.headers, media_type=reply.media_type)


class EventStreamResponse(Response):
    """A server-sent event stream relayed from the request's own task, stopped when the client goes away.

    Starlette's `StreamingResponse` runs the body in a second task (beside a disconnect listener)
    under ASGI 2.3, which puts a task switch in front of every first byte. Here the body is sent by
    the request's task and only the listener runs beside it; a client that disconnects cancels the
    relay, which closes the provider's stream (no tokens are paid for after the client is gone).
    """

    media_type = "text/event-stream"

    def __init__(self, body: AsyncIterator[bytes] | Producer, *, status_code: int, headers: Mapping[str, str]) -> None:
        # As StreamingResponse does: no `body` attribute, so no Content-Length header.
        self.body_iterator = body
        self.status_code = status_code
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async with anyio.create_task_group() as watchers:

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                watchers.cancel_scope.cancel()

            watchers.start_soon(watch)

            async def write(chunk: bytes) -> None:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})

            if callable(self.body_iterator):
                await self.body_iterator(write)  # a producer: it writes, from this task
            else:
                async for chunk in self.body_iterator:
                    await write(chunk)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            watchers.cancel_scope.cancel()


def error_response(api: Api, error: LlmError) -> Response:
    return Response(
        dumps(error_body(api, error.status, error.message)),
        status_code=error.status,
        headers=error.headers(),
        media_type="application/json",
    )


def anthropic_refusal(status: int, message: str, headers: dict[str, str]) -> Response:
    """How `/anthropic` refuses a caller the identity middleware rejected (401, or 503 while the store is down)."""
    return error_response("anthropic", LlmError(status, message, retry_after=_retry(headers)))


def openai_refusal(status: int, message: str, headers: dict[str, str]) -> Response:
    """How `/openai` refuses a caller the identity middleware rejected."""
    return error_response("openai", LlmError(status, message, retry_after=_retry(headers)))


def _retry(headers: dict[str, str]) -> float | None:
    value = headers.get("Retry-After") or headers.get("retry-after")
    return float(value) if value is not None and value.isdigit() else None


def completion_handler(service: LlmService, api: Api) -> Callable[[Request], Awaitable[Response]]:
    """`POST /v1/messages` (api `anthropic`) or `/v1/chat/completions` (api `openai`): the whole request."""

    async def handle(request: Request) -> Response:
        try:
            body = await read_json(request, service.settings.max_body_bytes)
            reply = await service.complete(
                api,
                body,
                routing_headers(request),
                caller(request),
                base_url=str(request.base_url).rstrip("/"),
                request_id=request_id(),
            )
        except LlmError as error:
            return error_response(api, error)
        return respond(reply)

    return handle
