"""Upstream progress notifications relayed with their numbers as the upstream wrote them.

Handing the SDK client a `progress_callback` would be simpler, but its dispatcher calls it with
`float(progress)` / `float(total)`: an upstream's `{"progress": 1, "total": 4}` would reach the
client as `1.0` / `4.0` (see `wire_results`). So a request that wants progress carries a token of
the gateway's own (`mcpgw-progress-<n>`, which cannot collide with the SDK's integer request ids)
and no callback; the connection's read-stream wrapper (`streams.py`) hands every progress
notification for such a token to `take` before the SDK sees it (a direct call, `direct.py`,
hands over what it reads off its own answer stream), and the notification's params go to the
request's callback unchanged.

Notifications are forwarded in order by one task per request, and the request does not return
before the ones that arrived ahead of its answer have been passed on: progress never trails the
result.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeGuard

import anyio
import mcp_types as types
from anyio.streams.memory import MemoryObjectSendStream
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.message import SessionMessage

logger = logging.getLogger(__name__)

_TOKEN_PREFIX = "mcpgw-progress-"
_BUFFERED = 256
"""Notifications held per request while the client takes the previous ones; more are dropped (and logged)."""


class ProgressRoutes:
    """Progress tokens of requests in flight on one upstream connection, and where their notifications go."""

    def __init__(self, upstream: str) -> None:
        self._upstream = upstream
        self._ids = itertools.count(1)
        self._routes: dict[str, MemoryObjectSendStream[Mapping[str, Any]]] = {}

    def take(self, item: object) -> bool:
        """True when `item` (a read-stream item) is progress for one of our tokens: then it is consumed here."""
        return bool(self._routes) and isinstance(item, SessionMessage) and self.take_message(item.message)

    def take_message(self, message: types.JSONRPCMessage) -> bool:
        """`take` for a message a direct call read off its own answer stream (before it reads on: in order)."""
        if not self._routes:
            return False
        if not isinstance(message, types.JSONRPCNotification) or message.method != "notifications/progress":
            return False
        params = message.params
        route = self._routes.get(params.get("progressToken")) if isinstance(params, dict) else None  # type: ignore[arg-type]
        if route is None:
            return False
        try:
            route.send_nowait(params)  # type: ignore[arg-type]
        except anyio.WouldBlock:
            logger.debug("upstream %s: progress notification dropped, the client is not keeping up", self._upstream)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # the request has ended; late progress has nobody to go to
        return True

    @asynccontextmanager
    async def route(self, progress: ProgressFnT) -> AsyncIterator[str]:
        """A fresh token whose notifications go to `progress` until the block ends (and all are passed on)."""
        token = f"{_TOKEN_PREFIX}{next(self._ids)}"
        send, receive = anyio.create_memory_object_stream[Mapping[str, Any]](_BUFFERED)

        async def forward() -> None:
            async with receive:
                async for params in receive:
                    await _report(progress, params)

        async with anyio.create_task_group() as forwarding:
            forwarding.start_soon(forward, name=f"progress:{self._upstream}")
            self._routes[token] = send
            try:
                yield token
            finally:
                del self._routes[token]
                send.close()  # `forward` passes on what is queued, then ends; the task group waits for it


async def _report(progress: ProgressFnT, params: Mapping[str, Any]) -> None:
    """One notification to the callback; malformed values are dropped (as the SDK's dispatcher drops them)."""
    done, total, message = params.get("progress"), params.get("total"), params.get("message")
    if not _is_number(done) or (total is not None and not _is_number(total)):
        return
    try:
        await progress(done, total, message if isinstance(message, str) else None)
    except Exception:  # the client went away: its call's answer will fail the same way, with a reason
        logger.debug("progress could not be relayed", exc_info=True)


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def with_progress_token(request: types.ClientRequest, token: str) -> types.ClientRequest:
    """`request` with `_meta.progressToken` set to `token` (other `_meta` entries kept)."""
    params = request.params
    assert params is not None, "only requests with params ask for progress"
    meta = dict(params.meta or {})
    meta["progress_token"] = token
    return request.model_copy(update={"params": params.model_copy(update={"meta": meta})})
