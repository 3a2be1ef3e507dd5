"""Per-caller limits on /mcp (`limits:` in gateway.yaml): request rate and concurrent tool calls.

A caller is an `Identity.key`: one virtual key, one user (all their keys and SSO tokens
together), one `x-bf-mcp-session-id`, or every anonymous caller together.

- `requests_per_minute`: a token bucket per caller holding up to that many tokens, refilled at
  `requests_per_minute / 60` per second. Every HTTP request to /mcp takes one (initialize,
  notifications and the GET stream included), except DELETE: ending a session is never refused.
  An empty bucket → HTTP 429 with `Retry-After` (seconds) and a JSON-RPC error naming the limit,
  before the body is read.
- `concurrent_calls`: `tools/call` requests of one caller running at once, counted from dispatch
  to result (SDK server middleware), so the count is right in JSON, SSE and 2026-07-28 modes
  alike. One too many fails at once with a JSON-RPC error (`LIMIT_EXCEEDED`) in the normal
  response: calls are never queued, so a client gets an answer rather than a hang.

Both are O(1) per request and lock-free: asyncio runs each check-and-update without an await in
between. Memory is bounded: a bucket idle for a whole refill period is full again, the same as
a new one, so it is dropped (oldest first, amortised O(1)); a hard cap evicts the oldest beyond
that. A caller's running-call count is removed when it falls to zero.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mcp import MCPError
from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_gateway.config import LimitsSettings
from mcp_gateway.http.guards import error_response
from mcp_gateway.http.identify import identity_of
from mcp_gateway.identity import identity_in_scope

LIMIT_EXCEEDED = -32010
"""JSON-RPC code for a refused request: a caller's limit is reached (implementation-defined band)."""

MAX_TRACKED_CALLERS = 100_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RequestRate:
    """Token buckets per caller; `acquire` says whether a request may go ahead."""

    def __init__(
        self, per_minute: int, *, clock: Callable[[], float] = time.monotonic, max_callers: int = MAX_TRACKED_CALLERS
    ) -> None:
        self.per_minute = per_minute
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._clock = clock
        self._max_callers = max_callers
        # Least recently seen first: the front is where idle buckets are.
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def acquire(self, caller: str) -> float:
        """Take a token for `caller`: 0 when the request may go ahead, else seconds until one is available."""
        now = self._clock()
        self._evict(now)
        bucket = self._buckets.get(caller)
        if bucket is None:
            bucket = self._buckets[caller] = _Bucket(self._capacity, now)
        else:
            bucket.tokens = min(self._capacity, bucket.tokens + (now - bucket.updated) * self._rate)
            bucket.updated = now
            self._buckets.move_to_end(caller)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self._rate

    def __len__(self) -> int:
        return len(self._buckets)

    def _evict(self, now: float) -> None:
        refill_seconds = 60.0
        while self._buckets:
            caller, oldest = next(iter(self._buckets.items()))
            if now - oldest.updated < refill_seconds and len(self._buckets) < self._max_callers:
                return
            del self._buckets[caller]


class RequestRateMiddleware:
    """ASGI middleware behind `IdentityMiddleware`: refuses a caller's requests beyond the rate with 429."""

    def __init__(self, app: ASGIApp, rate: RequestRate) -> None:
        self.app = app
        self.rate = rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        identity = identity_in_scope(scope) if scope["type"] == "http" else None
        if identity is not None and scope["method"] != "DELETE":
            wait = self.rate.acquire(identity.key)
            if wait:
                retry_after = max(1, math.ceil(wait))
                limit = self.rate.per_minute
                response = error_response(
                    429,
                    LIMIT_EXCEEDED,
                    f"rate limit exceeded: at most {limit} requests per minute per caller "
                    f"(limits.requests_per_minute); retry in {retry_after} s",
                    data={"limit": "requests_per_minute", "value": limit, "retryAfter": retry_after},
                    headers={"Retry-After": str(retry_after)},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class ConcurrentCalls(ServerMiddleware[Any]):
    """SDK server middleware: at most `limit` tools/call of one caller run at once; more fail at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._running: dict[str, int] = {}

    def running(self, caller: str) -> int:
        return self._running.get(caller, 0)

    def enter(self, caller: str) -> bool:
        """Take a slot for `caller` (the fast path); False when all are taken (then the full path refuses)."""
        running = self._running.get(caller, 0)
        if running >= self.limit:
            return False
        self._running[caller] = running + 1
        return True

    def leave(self, caller: str) -> None:
        left = self._running[caller] - 1
        if left:
            self._running[caller] = left
        else:
            del self._running[caller]

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/call":
            return await call_next(ctx)
        caller = identity_of(ctx).key
        running = self._running.get(caller, 0)
        if running >= self.limit:
            raise MCPError(
                LIMIT_EXCEEDED,
                f"too many concurrent tool calls: at most {self.limit} run at once per caller "
                "(limits.concurrent_calls); retry when one has finished",
                data={"limit": "concurrent_calls", "value": self.limit},
            )
        self._running[caller] = running + 1
        try:
            return await call_next(ctx)
        finally:
            self.leave(caller)


def limit_requests(app: ASGIApp, settings: LimitsSettings) -> ASGIApp:
    """`app` behind the request-rate limit, or `app` itself when there is none."""
    if settings.requests_per_minute is None:
        return app
    return RequestRateMiddleware(app, RequestRate(settings.requests_per_minute))
