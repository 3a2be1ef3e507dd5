"""`POST /v1/mcp/tool/execute`: a model's tool call run by the gateway as the caller, answered in the model's format.

For clients of `/anthropic` and `/openai` that got a tool call for an MCP tool and want the
gateway to run it (the reference product's endpoint): the body is the tool call as the model
produced it — Anthropic `{"type": "tool_use", "id", "name", "input"}` or OpenAI
`{"id", "type": "function", "function": {"name", "arguments"}}` — and the answer is what goes
back into the conversation: a `tool_result` block or a `tool` message. The call goes through the
same pipeline as `/mcp` (`calls.ToolCalls`): the caller's policy, their per-user credentials
(a missing one's link comes back in the result), one audit record. An LLM request has no channel
back to a person, so progress and logs are dropped and questions refused.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

import mcp_types as types
from mcp import MCPError
from mcp.shared.exceptions import NoBackChannelError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from llm_gateway.anthropic_api import Endpoint, Guard
from llm_gateway.translate.common import parse_arguments
from llm_gateway.wire import dumps, loads
from mcp_gateway.channel import ClientChannel
from mcp_gateway.errors import UnknownTool
from mcp_gateway.identity import Identity, identity_in_scope

logger = logging.getLogger(__name__)
_R = TypeVar("_R")
_requests = itertools.count(1)
_MAX_BODY = 4 * 1024 * 1024


class ToolCaller(Protocol):
    """The call pipeline as this endpoint uses it (`mcp_gateway.calls.ToolCalls`)."""

    async def call(
        self, identity: Identity, name: str, arguments: Mapping[str, Any] | None, channel: ClientChannel
    ) -> dict[str, Any]: ...


class NoBackChannel:
    """The `ClientChannel` of a model's tool call: nobody to ask, nothing to report progress to."""

    def __init__(self, base_url: str | None) -> None:
        self._key = f"llm-tool-call-{next(_requests)}"
        self._base_url = base_url

    @property
    def connection_key(self) -> object:
        return self._key

    @property
    def base_url(self) -> str | None:
        return self._base_url

    @property
    def wants_progress(self) -> bool:
        return False

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        return None

    def supports(self, capability: types.ClientCapabilities) -> bool:
        return False

    async def request(self, request: types.ServerRequest, result_type: type[_R]) -> _R:
        raise NoBackChannelError("a model's tool call has no client to ask")

    async def notify(self, notification: types.ServerNotification) -> None:
        return None


def tool_execute_routes(calls: Callable[[], ToolCaller | None], guard: Guard) -> list[BaseRoute]:
    """The endpoint, behind `guard` (the identity middleware); `calls` is read per request (it exists while running)."""

    async def execute(request: Request) -> Response:
        identity = identity_in_scope(request.scope)
        pipeline = calls()
        if identity is None or pipeline is None:
            return _problem(503, "the gateway is starting or stopping; try again")
        body = await request.body()
        if len(body) > _MAX_BODY:
            return _problem(413, f"request body is larger than {_MAX_BODY} bytes")
        try:
            call = loads(body)
        except ValueError:
            return _problem(400, "the request body is not valid JSON")
        parsed = _parse_call(call)
        if isinstance(parsed, str):
            return _problem(400, parsed)
        shape, call_id, name, arguments = parsed
        channel = NoBackChannel(str(request.base_url).rstrip("/"))
        try:
            result = await pipeline.call(identity, name, arguments, channel)
        except UnknownTool:
            return _problem(404, f"unknown tool {name!r} (or not one this caller may use)")
        except MCPError as exc:
            result = {"content": [{"type": "text", "text": exc.error.message}], "isError": True}
        return JSONResponse(_answer(shape, call_id, result))

    return [Route("/v1/mcp/tool/execute", guard(Endpoint(execute, "openai")), methods=["POST"])]


def _parse_call(call: Any) -> tuple[str, str, str, dict[str, Any]] | str:
    """(shape, call id, tool name, arguments), or what is wrong with the body."""
    if not isinstance(call, dict):
        return "give the tool call as the model produced it: a JSON object"
    if call.get("type") == "tool_use":
        name, arguments = call.get("name"), call.get("input")
        if not isinstance(name, str) or not isinstance(arguments, dict | None):
            return "an Anthropic tool call needs `name` (a string) and `input` (an object)"
        return "anthropic", str(call.get("id") or ""), name, arguments or {}
    function = call.get("function")
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        arguments = parse_arguments(function.get("arguments"))
        return "openai", str(call.get("id") or ""), function["name"], arguments
    return (
        'give an Anthropic {"type": "tool_use", "id", "name", "input"} or an OpenAI '
        '{"id", "type": "function", "function": {"name", "arguments"}} tool call'
    )


def _answer(shape: str, call_id: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """The tool's MCP result as the next message of the conversation, in the call's format."""
    texts: list[str] = []
    blocks: list[dict[str, Any]] = []
    structured = result.get("structuredContent")
    if structured is not None:
        texts.append(dumps(structured).decode())  # what Claude Code gives the model for structured results
        blocks.append({"type": "text", "text": texts[-1]})
    else:
        for item in result.get("content") or ():
            if not isinstance(item, dict):
                continue
            if item.get("type") == "text":
                texts.append(str(item.get("text", "")))
                blocks.append({"type": "text", "text": texts[-1]})
            elif item.get("type") == "image" and shape == "anthropic":
                source = {
                    "type": "base64",
                    "media_type": item.get("mimeType", "image/png"),
                    "data": item.get("data", ""),
                }
                blocks.append({"type": "image", "source": source})
            else:
                texts.append(dumps(item).decode())
                blocks.append({"type": "text", "text": texts[-1]})
    error = bool(result.get("isError"))
    if shape == "anthropic":
        return {"type": "tool_result", "tool_use_id": call_id, "content": blocks, "is_error": error}
    return {"role": "tool", "tool_call_id": call_id, "content": "\n\n".join(texts)}


def _problem(status: int, message: str) -> Response:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "code": None}}, status)
