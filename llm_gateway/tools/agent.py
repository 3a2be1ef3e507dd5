"""Agent mode: the gateway runs the model's calls of auto-executable MCP tools and asks the model again.

One client request becomes up to `llm.max_agent_depth` + 1 model rounds:

    round → the model calls tools → every call is one the gateway runs itself?
        yes: run them concurrently (as the caller), append the model's turn and the results, next round
        no (a client tool, an injected tool not marked for auto-execution, or no tool call): the answer
           goes to the client as it is — the client runs its tools (injected ones through its own `/mcp`
           or `POST /v1/mcp/tool/execute`)

After `max_agent_depth` rounds of tool runs, the model's answer goes to the client as it is. Each
round is a full model request below this loop (routing, limits, fallbacks, usage record); the
answer's `usage` reports the sums over all rounds. Streams: see `streams.py`; while tools run the
client receives keep-alives (`ping` events, or SSE comments for Chat Completions) every
`keepalive_seconds`. A round that fails after the stream began ends it with an error event in the
client's format.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio

from llm_gateway.answers import json_or_none, stream_error
from llm_gateway.errors import Api, LlmError, message_of
from llm_gateway.reply import Reply, Send
from llm_gateway.tools.formats import (
    TOOL_STOPS,
    ToolCall,
    add_usage,
    assistant_turn,
    calls_in_answer,
    continued,
    with_usage,
)
from llm_gateway.tools.injection import Injection
from llm_gateway.tools.runner import ToolRunner
from llm_gateway.tools.streams import KEEPALIVE, Stitcher, stitcher_for
from llm_gateway.wire import SseParser, dumps

logger = logging.getLogger(__name__)

Round = Callable[[dict[str, Any]], Awaitable[Reply]]
"""Sends one model request (the whole per-request path: routing, limits, fallbacks, usage)."""


class Agent:
    """Runs one client request in agent mode."""

    keepalive_seconds = 5.0

    def __init__(self, api: Api, injection: Injection, send_round: Round, runner: ToolRunner, depth: int) -> None:
        self.api: Api = api
        self.injection = injection
        self.send_round = send_round
        self.runner = runner
        self.depth = depth

    def _runs_all(self, calls: Sequence[ToolCall], stop: str | None) -> list[tuple[ToolCall, str]] | None:
        """The calls with their gateway tool names when the gateway runs every one of them; else None."""
        if not calls or stop not in TOOL_STOPS:
            return None
        named: list[tuple[ToolCall, str]] = []
        for call in calls:
            name = self.injection.gateway_name(call.name)
            if name is None or not self.injection.runs_itself(call.name):
                return None
            named.append((call, name))
        return named

    async def run(self, stream: bool) -> Reply:
        reply = await self.send_round(self.injection.body)
        if reply.status != 200:
            return reply
        if stream and reply.stream is not None:
            first = reply

            async def produce(send: Send) -> None:
                await self._stream(first, send)

            return Reply(200, headers=reply.headers, produce=produce)
        return await self._whole(reply)

    async def _whole(self, reply: Reply) -> Reply:
        body = self.injection.body
        total: dict[str, int] = {}
        for rounds in range(self.depth + 1):
            answer = json_or_none(reply.body)
            if not isinstance(answer, dict):
                return reply
            calls, stop = calls_in_answer(self.api, answer)
            add_usage(total, answer.get("usage"))
            named = self._runs_all(calls, stop) if rounds < self.depth else None
            if named is None:
                if rounds == 0:
                    return reply
                answer["usage"] = with_usage(answer.get("usage"), total)
                return Reply(200, body=dumps(answer), headers=reply.headers)
            results = await self.runner.run(named)
            body = continued(self.api, body, assistant_turn(self.api, answer), results)
            reply = await self.send_round(body)
            if reply.status != 200 or reply.streaming:
                return reply
        raise AssertionError("unreachable: the last round always returns")

    async def _stream(self, first: Reply, send: Send) -> None:
        try:
            await self._stream_rounds(first, send)
        except LlmError as error:  # a later round refused (a budget, a limit): the stream says so
            await send(stream_error(self.api, error.message, overloaded=False))
        except Exception:  # a bug here: the client still gets a well-formed end, the log the traceback
            logger.exception("llm: agent-mode stream failed")
            await send(stream_error(self.api, "internal error in mcpgw; see the gateway log", overloaded=False))

    async def _stream_rounds(self, first: Reply, send: Send) -> None:
        stitcher = stitcher_for(self.api)
        body = self.injection.body
        reply = first
        for rounds in range(self.depth + 1):
            stitcher.begin_round()
            if not await self._relay_round(reply, stitcher, send):
                return
            stitcher.end_round()
            named = self._runs_all(stitcher.tool_calls(), stitcher.stop_reason) if rounds < self.depth else None
            if named is None:
                for chunk in stitcher.release():
                    await send(chunk)
                return
            turn = stitcher.turn()
            results = await self._run_with_keepalive(named, send)
            body = continued(self.api, body, turn, results)
            reply = await self.send_round(body)

    async def _relay_round(self, reply: Reply, stitcher: Stitcher, send: Send) -> bool:
        """Relay one round through the stitcher; False when the stream ended with an error (already sent)."""
        if reply.stream is None:
            detail = message_of(json_or_none(reply.body)) if reply.body else None
            message = f"the model request after the gateway ran tools failed (HTTP {reply.status})"
            await send(
                stream_error(self.api, message + (f": {detail}" if detail else ""), overloaded=reply.status == 529)
            )
            return False
        parser = SseParser()
        async with contextlib.aclosing(reply.stream) as chunks:  # type: ignore[type-var]
            async for chunk in chunks:
                for event in parser.feed(chunk):
                    for out in stitcher.feed(event):
                        await send(out)
        return not stitcher.failed

    async def _run_with_keepalive(
        self, named: list[tuple[ToolCall, str]], send: Send
    ) -> list[tuple[ToolCall, dict[str, Any]]]:
        keepalive = KEEPALIVE[self.api]
        async with anyio.create_task_group() as tg:

            async def ping() -> None:
                while True:
                    await anyio.sleep(self.keepalive_seconds)
                    await send(keepalive)

            tg.start_soon(ping)
            results = await self.runner.run(named)
            tg.cancel_scope.cancel()
        return results
