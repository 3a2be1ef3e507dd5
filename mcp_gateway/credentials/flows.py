"""Pending credential flows: the single-use, short-lived links a caller follows to hand over a credential.

A flow is bound to one identity and one upstream when it starts, so whoever opens the link can
only ever store a credential for that pair. Its id is the only thing in the URL: 256 random bits,
so it cannot be guessed, and it is removed on use or expiry. Flows live in memory on purpose:
they last minutes, hold PKCE verifiers that must not be written anywhere, and a lost one costs
the user a click ("try the tool again for a fresh link").
"""

from __future__ import annotations

import enum
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

DEFAULT_FLOW_TTL = 600.0
"""Seconds a link stays valid: long enough to find a token in another tab, short enough to be harmless."""


class FlowKind(enum.StrEnum):
    HEADERS = "headers"  # the gateway's own form asks for header values
    OAUTH = "oauth"  # the provider's consent page, back to /oauth/callback


@dataclass(eq=False)
class PendingFlow:
    id: str
    """Secret: the link's only component; never logged."""
    kind: FlowKind
    identity_key: str
    upstream: str
    expires_at: float
    owner_label: str = ""
    """Whom the credential will belong to, in words the person recognises (shown on the form)."""
    csrf_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    data: dict[str, Any] = field(default_factory=dict)
    """Kind-specific state (OAuth: code verifier, endpoints, client); never logged."""
    done: anyio.Event = field(default_factory=anyio.Event)
    """Set once the credential is stored, so a waiting tool call can go on."""


class FlowRegistry:
    """All pending flows of this process; `clock` is injectable so tests need not sleep."""

    def __init__(self, ttl: float = DEFAULT_FLOW_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._flows: dict[str, PendingFlow] = {}

    def start(
        self,
        kind: FlowKind,
        identity_key: str,
        upstream: str,
        data: dict[str, Any] | None = None,
        *,
        owner_label: str = "",
    ) -> PendingFlow:
        """A new flow; an unexpired one for the same identity, upstream and kind is reused so repeated
        calls do not scatter live links."""
        self._expire()
        for flow in self._flows.values():
            if flow.kind is kind and flow.identity_key == identity_key and flow.upstream == upstream:
                if data is not None:
                    flow.data = data
                return flow
        flow = PendingFlow(
            id=secrets.token_urlsafe(32),
            kind=kind,
            identity_key=identity_key,
            upstream=upstream,
            expires_at=self._clock() + self.ttl,
            data=data or {},
            owner_label=owner_label,
        )
        self._flows[flow.id] = flow
        return flow

    def peek(self, flow_id: str, kind: FlowKind) -> PendingFlow | None:
        """The live flow with this id and kind, left in place (rendering a form does not use it up)."""
        self._expire()
        flow = self._flows.get(flow_id)
        return flow if flow is not None and flow.kind is kind else None

    def consume(self, flow_id: str, kind: FlowKind) -> PendingFlow | None:
        """Take the flow out: a link works once."""
        flow = self.peek(flow_id, kind)
        if flow is not None:
            del self._flows[flow_id]
        return flow

    def discard(self, identity_key: str, upstream: str) -> None:
        """Forget an identity's pending flows for an upstream (its credential was revoked, say)."""
        for flow_id, flow in list(self._flows.items()):
            if flow.identity_key == identity_key and flow.upstream == upstream:
                del self._flows[flow_id]

    def __len__(self) -> int:
        self._expire()
        return len(self._flows)

    def _expire(self) -> None:
        now = self._clock()
        for flow_id in [i for i, f in self._flows.items() if f.expires_at <= now]:
            del self._flows[flow_id]
