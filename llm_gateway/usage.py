"""What each model request cost: one `UsageEvent` per request, recorded off the hot path.

The face builds the event as the answer ends (for streams: when the last chunk has gone out)
and hands it to `UsageLog.record`, which only appends to a buffer; a supervised task writes
batches to the sink (the store). Nothing of the prompt or the completion is kept.
"""

from __future__ import annotations

import fnmatch
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import anyio

from mcp_gateway.config_llm import LlmSettings, ModelPrice
from mcp_gateway.metrics import Metrics
from mcp_gateway.store.records import LlmUsageIn

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
    cost_usd: float | None = None
    request_id: str | None = None
    """The client's request id: the rounds of one agent-mode request share it."""
    ts: datetime = field(default_factory=lambda: datetime.now(UTC))


def price_of(prices: Mapping[str, ModelPrice], provider: str | None, model: str | None) -> ModelPrice | None:
    """The price for `provider/model`: an exact "provider/model", then the bare model, then the first glob."""
    if provider is None or model is None or not prices:
        return None
    qualified = f"{provider}/{model}"
    found = prices.get(qualified) or prices.get(model)
    if found is not None:
        return found
    for pattern, price in prices.items():
        if fnmatch.fnmatchcase(qualified, pattern) or fnmatch.fnmatchcase(model, pattern):
            return price
    return None


def cost_of(event: UsageEvent, prices: Mapping[str, ModelPrice]) -> float | None:
    """USD for one request's tokens; None when its model has no price."""
    price = price_of(prices, event.provider, event.model)
    if price is None:
        return None
    cache_read = price.cache_read if price.cache_read is not None else price.input
    cache_write = price.cache_write if price.cache_write is not None else price.input
    total = (
        event.input_tokens * price.input
        + event.output_tokens * price.output
        + event.cache_read_tokens * cache_read
        + event.cache_write_tokens * cache_write
    )
    return total / 1_000_000


UsageSink = Callable[[Sequence[UsageEvent]], Awaitable[None]]


class UsageLog:
    """Buffers usage events and writes them in batches; a failing sink keeps them for the next try."""

    def __init__(self, sink: UsageSink | None = None, observers: Sequence[Callable[[UsageEvent], None]] = ()) -> None:
        self._sink = sink
        self._observers = tuple(observers)
        self._buffer: list[UsageEvent] = []
        self._wake = anyio.Event()
        self.recent: deque[UsageEvent] = deque(maxlen=1000)
        """The last events, newest last (bounded): what tests and `/readyz`-style probes look at."""

    def record(self, event: UsageEvent) -> None:
        for observe in self._observers:
            observe(event)
        self.recent.append(event)
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


def usage_row(event: UsageEvent) -> LlmUsageIn:
    """The store's row for an event (the row's fields are the event's, frozen)."""
    return LlmUsageIn(**{name: getattr(event, name) for name in _ROW_FIELDS})


_ROW_FIELDS = tuple(LlmUsageIn.__dataclass_fields__)


OTHER_MODEL = "_other"
"""Metric label for a model the configuration does not name: client input never becomes a label."""


def known_models(settings: LlmSettings) -> frozenset[str]:
    """`provider/model` names the configuration mentions (rule targets, aliases, provider model lists)."""
    names: set[str] = set(settings.aliases.values())
    for rule in settings.routing_rules:
        names.update(t for t in (rule.target, *rule.fallbacks) if t)
        names.update(t.target for t in rule.targets)
    for provider, config in settings.providers.items():
        names.update(f"{provider}/{model}" for model in config.models)
    return frozenset(names)


def observe_llm(metrics: Metrics, event: UsageEvent, known: frozenset[str]) -> None:
    """Feed one event to the Prometheus metrics, with the model label bounded by `known`."""
    qualified = f"{event.provider}/{event.model}"
    tokens = {
        "input": event.input_tokens,
        "output": event.output_tokens,
        "cache_read": event.cache_read_tokens,
        "cache_write": event.cache_write_tokens,
    }
    model = qualified if qualified in known else OTHER_MODEL
    metrics.observe_llm(event.provider, model, event.status, tokens, event.duration_ms, event.ttfb_ms)
