"""Per-key limits on model traffic: which models a virtual key may use, and its budgets.

A key's policy (`config_llm.KeyLlmPolicy`, stored with the key) is checked before a request
leaves for a provider:

- `allowed_models`: the target's `provider/model` must match one of the globs (the name the
  client asked for may match instead: a key allowed `sonnet-model` may use whatever that rule
  routes to). Fallback targets that are not allowed are skipped; no allowed target → 403.
- `requests_per_minute`, `tokens_per_minute`: rolling one-minute windows kept in this process
  (tokens counted when each answer ends, so one long answer can overshoot once) → 429 with
  `retry-after` until the window has room.
- `usd_per_day`, `usd_per_month` (UTC): what the store has recorded for the key since the start of
  the day/month, re-read at most every `SPEND_REFRESH_SECONDS`, plus what this process spent since
  → 429 with `retry-after` until the period ends.
"""

from __future__ import annotations

import fnmatch
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from llm_gateway.errors import LlmError
from llm_gateway.routing import Target
from mcp_gateway.config_llm import KeyLlmPolicy
from mcp_gateway.identity import Identity

SPEND_REFRESH_SECONDS = 15.0
_WINDOW = 60.0
_RECORD_LAG = 3.0
"""Seconds a cost may take to reach the store (the usage writer flushes every second)."""

SpentSince = Callable[[str, datetime], Awaitable[float]]
"""USD a key's recorded requests cost since a moment (the store's `llm_spent_usd`)."""


class KeyLimits:
    """Checks and counts per-key policies; one per `LlmService` (so per process)."""

    def __init__(self, spent_since: SpentSince | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._spent_since = spent_since
        self._clock = clock
        self._requests: dict[str, deque[float]] = {}
        self._tokens: dict[str, deque[tuple[float, int]]] = {}
        self._spend: dict[tuple[str, str], tuple[float, float, datetime]] = {}
        """(key id, period) → (recorded USD, when read, period start)."""
        self._policies: dict[str, tuple[Mapping[str, Any], KeyLlmPolicy | None]] = {}
        """Key id → (the policy as the key's grant holds it, parsed); re-parsed when the grant's policy changes."""
        self._unrecorded: dict[str, deque[tuple[float, float]]] = {}
        """Costs of answered requests (clock, USD), kept a while for reads the store is behind on."""

    def policy_of(self, identity: Identity | None) -> tuple[str, KeyLlmPolicy] | None:
        """The caller's key and its policy, parsed once per stored policy (not on every request)."""
        key = identity.virtual_key if identity is not None else None
        if key is None or not key.llm:
            return None
        cached = self._policies.get(key.id)
        if cached is None or cached[0] is not key.llm:
            try:
                policy: KeyLlmPolicy | None = KeyLlmPolicy.model_validate(key.llm)
            except ValidationError:
                policy = None  # written by a newer gateway; never blocks traffic on a policy it cannot read
            cached = self._policies[key.id] = (key.llm, policy)
        return None if cached[1] is None else (key.id, cached[1])

    def allowed_targets(self, identity: Identity | None, requested: str, targets: Sequence[Target]) -> list[Target]:
        """The targets this caller may use, in order; raises `LlmError` 403 when none is allowed."""
        found = self.policy_of(identity)
        if found is None or found[1].allowed_models is None:
            return list(targets)
        patterns = found[1].allowed_models
        if any(fnmatch.fnmatchcase(requested, p) for p in patterns):
            return list(targets)
        allowed = [t for t in targets if any(fnmatch.fnmatchcase(str(t), p) for p in patterns)]
        if not allowed:
            name = identity.virtual_key.name if identity is not None and identity.virtual_key else "?"
            raise LlmError(
                403,
                f"virtual key {name!r} may not use model {requested!r} (routed to {targets[0]}); "
                f"allowed: {', '.join(patterns) or 'none'}",
            )
        return allowed

    async def admit(self, identity: Identity | None) -> None:
        """Count one request against the caller's budgets; raises `LlmError` 429 when one is spent."""
        found = self.policy_of(identity)
        if found is None:
            return
        key, policy = found
        now = self._clock()
        if policy.requests_per_minute is not None:
            window = self._requests.setdefault(key, deque())
            _expire(window, now)
            if len(window) >= policy.requests_per_minute:
                wait = window[0] + _WINDOW - now
                raise LlmError(
                    429,
                    f"rate limit: at most {policy.requests_per_minute} requests per minute for this virtual key",
                    retry_after=wait,
                )
            window.append(now)
        if policy.tokens_per_minute is not None:
            tokens = self._tokens.setdefault(key, deque())
            while tokens and tokens[0][0] <= now - _WINDOW:
                tokens.popleft()
            if sum(count for _, count in tokens) >= policy.tokens_per_minute:
                raise LlmError(
                    429,
                    f"token limit: at most {policy.tokens_per_minute} tokens per minute for this virtual key",
                    retry_after=tokens[0][0] + _WINDOW - now,
                )
        for period, budget in (("day", policy.usd_per_day), ("month", policy.usd_per_month)):
            if budget is None:
                continue
            spent, resets = await self._spent(key, period)
            if spent >= budget:
                raise LlmError(
                    429,
                    f"budget spent: ${spent:.2f} of ${budget:.2f} per {period} for this virtual key; "
                    f"resets {resets:%Y-%m-%d %H:%M} UTC",
                    retry_after=max(1.0, (resets - datetime.now(UTC)).total_seconds()),
                )

    def used(self, key: str | None, tokens: int, cost_usd: float | None) -> None:
        """Count what an answered request of virtual key `key` used (tokens per minute; cost until stored)."""
        if key is None:
            return
        if tokens:
            self._tokens.setdefault(key, deque()).append((self._clock(), tokens))
        if cost_usd:
            now = self._clock()
            costs = self._unrecorded.setdefault(key, deque())
            costs.append((now, cost_usd))
            while costs and costs[0][0] < now - SPEND_REFRESH_SECONDS - _RECORD_LAG:
                costs.popleft()

    async def _spent(self, key: str, period: str) -> tuple[float, datetime]:
        """USD spent by `key` in the current UTC day or month, and when that period ends."""
        now = datetime.now(UTC)
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        start, resets = (day, day + timedelta(days=1))
        if period == "month":
            start = day.replace(day=1)
            resets = (start + timedelta(days=32)).replace(day=1)
        cached = self._spend.get((key, period))
        if cached is None or cached[2] != start or self._clock() - cached[1] > SPEND_REFRESH_SECONDS:
            recorded = await self._spent_since(key, start) if self._spent_since is not None else 0.0
            cached = self._spend[(key, period)] = (recorded, self._clock(), start)
        # What this process spent since that read and the store may not have yet (written each second).
        pending = sum(cost for at, cost in self._unrecorded.get(key, ()) if at >= cached[1] - _RECORD_LAG)
        return cached[0] + pending, resets


def _expire(window: deque[float], now: float) -> None:
    while window and window[0] <= now - _WINDOW:
        window.popleft()


def policy_json(policy: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A policy as stored: validated, without unset fields (None stays None: no limits)."""
    if policy is None:
        return None
    return KeyLlmPolicy.model_validate(policy).model_dump(exclude_none=True)
