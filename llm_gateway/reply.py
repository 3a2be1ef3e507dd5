"""`Reply`: what a face sends back for a model request — a whole body, or a stream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

Send = Callable[[bytes], Awaitable[None]]
Producer = Callable[[Send], Awaitable[None]]
"""A stream written by a coroutine (the agent loop: several rounds and tool runs behind one stream)."""


@dataclass(slots=True)
class Reply:
    """A whole body, a stream of already-framed SSE bytes, or a producer that writes such bytes."""

    status: int
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    produce: Producer | None = None

    @property
    def streaming(self) -> bool:
        return self.stream is not None or self.produce is not None

    @property
    def media_type(self) -> str:
        return "text/event-stream" if self.streaming else "application/json"
