"""The audit trail of tool calls: who called what, where, how long, with what outcome.

Recording must never slow down or fail a call, so events go into an in-memory buffer and a
background task writes them in batches. The sink is injectable (the store in production, a
list in unit tests). Events carry ids, never secrets. Observers (the Prometheus metrics) see
each event as it is recorded, so the audit record is the one place that knows a call ended.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio

logger = logging.getLogger(__name__)

_MAX_BUFFER = 50_000
_FLUSH_EVERY = 0.5


@dataclass(frozen=True, slots=True)
class AuditEvent:
    identity_mode: str
    subject: str | None
    virtual_key_id: str | None
    upstream: str | None
    tool: str | None
    method: str
    duration_ms: float
    outcome: str  # ok | tool_error | error | denied
    detail: str | None = None
    llm_request_id: str | None = None
    """The model request a call was made for (agent mode, `/v1/mcp/tool/execute`); None for `/mcp`."""
    ts: datetime = field(default_factory=lambda: datetime.now(UTC))


AuditSink = Callable[[Sequence[AuditEvent]], Awaitable[None]]
AuditObserver = Callable[[AuditEvent], None]
"""Called synchronously on the call's path: must be cheap and must not raise."""


class AuditLog:
    def __init__(
        self, sink: AuditSink, *, flush_every: float = _FLUSH_EVERY, observers: Sequence[AuditObserver] = ()
    ) -> None:
        self._sink = sink
        self._observers = tuple(observers)
        self._flush_every = flush_every
        self._buffer: list[AuditEvent] = []
        self._dropped = 0
        self._failing = False
        # One write at a time: a flush that finds the buffer just taken by another must wait for
        # that write, or a reader flushing first (the admin API) would miss the events.
        self._flushing = anyio.Lock()

    def record(self, event: AuditEvent) -> None:
        for observe in self._observers:
            observe(event)
        if len(self._buffer) >= _MAX_BUFFER:
            self._dropped += 1  # the store is far behind; keep serving, say so when it catches up
            return
        self._buffer.append(event)

    async def flush(self) -> None:
        """Write what is buffered; returns once every event recorded before the call is written."""
        async with self._flushing:
            if not self._buffer:
                return
            batch, self._buffer = self._buffer, []
            try:
                await self._sink(batch)
            except Exception as exc:  # a failing store must not take the gateway down: keep the events, retry
                kept = batch[: max(0, _MAX_BUFFER - len(self._buffer))]
                self._dropped += len(batch) - len(kept)
                self._buffer[:0] = kept
                if not self._failing:
                    logger.error("could not write %d audit events (kept for the next try)", len(batch), exc_info=exc)
                self._failing = True
                return
            if self._failing:
                logger.warning("audit events are written again")
                self._failing = False
            if self._dropped:
                logger.warning("audit buffer was full: %d events were dropped", self._dropped)
                self._dropped = 0

    async def run(self, checkpoint: Callable[[str], None] = lambda name: None) -> None:
        """Flush periodically until cancelled, then once more (shielded) so nothing recorded is lost."""
        try:
            while True:
                await anyio.sleep(self._flush_every)
                checkpoint("audit-writer")
                await self.flush()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                await self.flush()
