"""Running a model's tool calls as the caller: concurrently, through the call pipeline, never raising.

Used by the agent loop (tools the gateway runs itself) and by `POST /v1/mcp/tool/execute`. A call
goes through `ToolSource.call` — the caller's policy, tool modes, per-user credentials (a missing
one's link comes back in the result, for the model to show), one audit record carrying the model
request's id. An LLM request has no channel back to a person, so progress and logs are dropped
and questions (sampling, elicitation) refused. Whatever goes wrong becomes a tool error the
model can read: a failing tool must not fail the model request.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import anyio
import mcp_types as types
from mcp import MCPError

from llm_gateway.tools.formats import ToolCall
from llm_gateway.tools.injection import ToolSource
from mcp_gateway.channel import OneWayChannel
from mcp_gateway.errors import UnknownTool
from mcp_gateway.identity import Identity

logger = logging.getLogger(__name__)
_R = TypeVar("_R")
_requests = itertools.count(1)


class NoBackChannel(OneWayChannel):
    """The `ClientChannel` of a model's tool call: nobody to ask, nothing to report progress to."""

    refusal = "a model's tool call has no client to ask"

    def __init__(self, base_url: str | None) -> None:
        self._key = f"llm-tool-call-{next(_requests)}"
        self._base_url = base_url

    @property
    def connection_key(self) -> object:
        return self._key

    @property
    def base_url(self) -> str | None:
        return self._base_url

    async def notify(self, notification: types.ServerNotification) -> None:
        return None


def tool_error(message: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": message}], "isError": True}


class ToolRunner:
    """Runs tool calls (by gateway tool name) for one caller and one model request."""

    def __init__(self, source: ToolSource, identity: Identity, *, base_url: str | None, request_id: str | None) -> None:
        self._source = source
        self._identity = identity
        self._base_url = base_url
        self.request_id = request_id

    async def call(self, name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """One call; raises `UnknownTool` (the caller cannot see it), anything else becomes a tool error."""
        channel = NoBackChannel(self._base_url)
        try:
            return await self._source.call(self._identity, name, arguments, channel, llm_request_id=self.request_id)
        except UnknownTool:
            raise
        except MCPError as exc:
            return tool_error(exc.error.message)

    async def run(self, calls: Sequence[tuple[ToolCall, str]]) -> list[tuple[ToolCall, dict[str, Any]]]:
        """(model's call, gateway tool name) pairs, run concurrently; results in the calls' order."""
        results: list[dict[str, Any]] = [{} for _ in calls]

        async def one(position: int, call: ToolCall, name: str) -> None:
            try:
                results[position] = await self.call(name, call.arguments)
            except UnknownTool:
                results[position] = tool_error(f"unknown tool {call.name!r}: it is no longer available to you")
            except Exception:  # a bug in a tool path must reach the model as a failed tool, not end the request
                logger.exception("llm: running tool %s for a model request failed", name)
                results[position] = tool_error(
                    f"mcpgw could not run {call.name!r} (internal error; see the gateway log)"
                )

        async with anyio.create_task_group() as tg:
            for position, (call, name) in enumerate(calls):
                tg.start_soon(one, position, call, name)
        return [(call, result) for (call, _), result in zip(calls, results, strict=True)]
