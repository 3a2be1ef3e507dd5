"""The receive-stream protocol the SDK's `ClientSession` reads from, for our wrappers of its read stream.

`ClientSession` iterates its read stream and enters/closes it; a wrapper only has to say how to
`receive` and how to `aclose`, and this base adds the rest of the protocol once.
"""

from __future__ import annotations

from typing import Any, Self

import anyio


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
