"""What each model request cost: one `UsageEvent` per request, recorded off the hot path.

The face builds the event as the answer ends (for streams: when the last chunk has gone out)
and hands it to `UsageLog.record`, which only appends to a buffer; a supervised task writes
batches to the sink (the store). Nothing of the prompt or the completion is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio

logger = logging.getLogger(__name__)

_BATCH = 500
_FLUSH_SECONDS = 1.0
_MAX_BUFFERED = 100_000


@dataclass(slots=True)
class UsageEvent:
    api: str
    """Which face: `anthropic` or `openai`."""
    requested_model: str
    provider: str | None = None
    model: str | None = None
    """The model the provider was asked for (after routing)."""
    rule: str | None = None
    identity_mode: str = "anonymous"
    subject: str | None = None
    virtual_key_id: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    status: int = 200
    error: str | None = None
    stream: bool = False
    fallback: bool = False
    """True when a target other than the first served (or failed last)."""
    attempts: int = 0
    duration_ms: float = 0.0
    ttfb_ms: float | None = None
    ts: datetime = field(default_factory=lambda: datetime.now(UTC))


UsageSink = Callable[[Sequence[UsageEvent]], Awaitable[None]]


class UsageLog:
    """Buffers usage events and writes them in batches; a failing sink keeps them for the next try."""

    def __init__(self, sink: UsageSink | None = None, observers: Sequence[Callable[[UsageEvent], None]] = ()) -> None:
        self._sink = sink
        self._observers = tuple(observers)
        self._buffer: list[UsageEvent] = []
        self._wake = anyio.Event()
        self.recent: list[UsageEvent] = []
        """The last events, newest last (bounded): what tests and `/readyz`-style probes look at."""

    def record(self, event: UsageEvent) -> None:
        for observe in self._observers:
            observe(event)
        self.recent.append(event)
        del self.recent[:-1000]
        if self._sink is None:
            return
        self._buffer.append(event)
        if len(self._buffer) > _MAX_BUFFERED:
            dropped = len(self._buffer) - _MAX_BUFFERED
            del self._buffer[:dropped]
            logger.error("usage log: sink behind; dropped the %d oldest events", dropped)
        if len(self._buffer) >= _BATCH:
            self._wake.set()

    async def run(self, checkpoint: Callable[[str], None] | None = None) -> None:
        """Write batches until cancelled; on cancel, flush what is left."""
        try:
            while True:
                with anyio.move_on_after(_FLUSH_SECONDS):
                    await self._wake.wait()
                self._wake = anyio.Event()
                if checkpoint is not None:
                    checkpoint("usage-writer")
                await self.flush()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await self.flush()

    async def flush(self) -> None:
        if self._sink is None or not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        try:
            await self._sink(batch)
        except Exception as exc:  # the store is down: keep the events for the next flush
            self._buffer = batch + self._buffer
            logger.warning("usage log: cannot write %d events: %s", len(batch), exc)
