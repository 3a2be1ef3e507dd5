"""Our wrappers of the read stream the SDK's `ClientSession` consumes.

`ClientSession` iterates its read stream and enters/closes it; a wrapper only has to say how to
`receive` and how to `aclose`, and `ReceiveStreamBase` adds the rest of the protocol once.
`MergedInbound` lets direct calls (`direct.py`) feed the session beside the transport;
`WatchedStream` notices the end of the connection (e.g. a stdio child exiting). Both hand
progress for the gateway's own tokens to `progress.ProgressRoutes` instead of the SDK.
"""

from __future__ import annotations

import contextvars
from typing import Any, Self

import anyio
from mcp.shared.message import SessionMessage

from mcp_gateway.upstreams import _sdk_client
from mcp_gateway.upstreams.progress import ProgressRoutes


class ReceiveStreamBase:
    async def receive(self) -> Any:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class MergedInbound(ReceiveStreamBase):
    """The SDK session's read stream: the transport's messages plus those direct calls `deliver`.

    Each message comes with the context of the task that sent it, as the SDK's own streams do
    (`last_context`, see `_sdk_client`): handlers then run in the calling task's context, so
    `CURRENT_CALLER` attributes relayed messages exactly. `pump` (a task of the connection's
    owner) moves the transport's messages across; `on_end` is set when the transport's stream ends.
    """

    def __init__(self, inner: Any, on_end: anyio.Event, progress: ProgressRoutes) -> None:
        self._inner = inner
        self._on_end = on_end
        self._progress = progress
        self._send, self._receive = anyio.create_memory_object_stream[tuple[contextvars.Context | None, Any]](0)
        self.last_context: contextvars.Context | None = None

    async def pump(self) -> None:
        async with self._send:
            while True:
                try:
                    item = await self._inner.receive()
                except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                    return
                await self._send.send((_sdk_client.sender_context(self._inner), item))

    async def deliver(self, message: SessionMessage) -> None:
        await self._send.send((contextvars.copy_context(), message))

    async def receive(self) -> Any:
        while True:
            try:
                context, item = await self._receive.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                self._on_end.set()
                raise
            if not self._progress.take(item):
                self.last_context = context
                return item

    async def aclose(self) -> None:
        await self._receive.aclose()
        await self._inner.aclose()

    def close(self) -> None:
        self._receive.close()
        self._inner.close()


class WatchedStream(ReceiveStreamBase):
    """Wraps the transport's read stream to notice the end of the connection (e.g. a stdio child exiting)."""

    def __init__(self, inner: Any, on_end: anyio.Event, progress: ProgressRoutes) -> None:
        self._inner = inner
        self._on_end = on_end
        self._progress = progress

    @property
    def last_context(self) -> contextvars.Context | None:
        # The SDK reads this to run handlers in the sender's context (exact caller attribution).
        return _sdk_client.sender_context(self._inner)

    async def receive(self) -> Any:
        while True:
            try:
                item = await self._inner.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                self._on_end.set()
                raise
            if not self._progress.take(item):
                return item

    async def aclose(self) -> None:
        await self._inner.aclose()

    def close(self) -> None:
        self._inner.close()
