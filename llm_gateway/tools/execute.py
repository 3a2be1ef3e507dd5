"""`POST /v1/mcp/tool/execute`: a model's tool call run by the gateway as the caller, answered in the model's format.

For clients of `/anthropic` and `/openai` that got a tool call for an MCP tool and want the
gateway to run it (the reference product's endpoint): the body is the tool call as the model
produced it — Anthropic `{"type": "tool_use", "id", "name", "input"}` or OpenAI
`{"id", "type": "function", "function": {"name", "arguments"}}` — and the answer is what goes
back into the conversation: a `tool_result` block or a `tool` message. The tool may be named as
the model saw it (an injected tool's provider-safe name) or by its gateway name; meta tools of
search/code-mode upstreams work too. The call goes through the same pipeline as `/mcp`
(`caller_tools.CallerTools` via `runner.ToolRunner`): the caller's policy, their per-user
credentials (a missing one's link comes back in the result), one audit record carrying this
request's id. An LLM request has no channel back to a person, so progress and logs are dropped
and questions refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from llm_gateway.anthropic_api import Endpoint, Guard
from llm_gateway.http_common import request_id
from llm_gateway.tools.formats import tool_result
from llm_gateway.tools.injection import Injector
from llm_gateway.tools.runner import ToolRunner
from llm_gateway.translate.common import parse_arguments
from llm_gateway.wire import loads
from mcp_gateway.errors import UnknownTool
from mcp_gateway.identity import identity_in_scope

_MAX_BODY = 4 * 1024 * 1024


def tool_execute_routes(tools: Callable[[], Injector | None], guard: Guard) -> list[BaseRoute]:
    """The endpoint, behind `guard` (the identity middleware); `tools` is read per request (it exists while running)."""

    async def execute(request: Request) -> Response:
        identity = identity_in_scope(request.scope)
        injector = tools()
        if identity is None or injector is None:
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
        # A model names an injected tool by its provider-safe name; map it back to the gateway's.
        gateway_name = injector.tools_of(identity).names.to_gateway.get(name, name)
        runner = ToolRunner(
            injector.source, identity, base_url=str(request.base_url).rstrip("/"), request_id=request_id()
        )
        try:
            result = await runner.call(gateway_name, arguments)
        except UnknownTool:
            return _problem(404, f"unknown tool {name!r} (or not one this caller may use)")
        return JSONResponse(tool_result("anthropic" if shape == "anthropic" else "openai", call_id, result))

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


def _problem(status: int, message: str) -> Response:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "code": None}}, status)
