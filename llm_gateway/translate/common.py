"""What every translation shares: re-framing a provider's event stream, tool arguments, stream errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from llm_gateway.wire import SseParser, loads


class StreamError(Exception):
    """The provider sent an error inside its stream (`body`: the error as it sent it)."""

    def __init__(self, body: Any) -> None:
        super().__init__("the provider sent an error in its stream")
        self.body = body


async def reframe(
    chunks: AsyncIterator[bytes], handle: Callable[[dict[str, Any]], bytes], finish: Callable[[], bytes]
) -> AsyncIterator[bytes]:
    """A provider's SSE stream in, another API's events out: each read's complete events, `handle`d, as one chunk.

    `data: [DONE]` and events that are not JSON objects are skipped; `finish` closes the stream
    (the last events of the client's API) once the provider's stream ends.
    """
    parser = SseParser()
    async for chunk in chunks:
        out = b""
        for event in parser.feed(chunk):
            if event.data == "[DONE]":
                continue
            try:
                data = loads(event.data)
            except ValueError:
                continue
            if isinstance(data, dict):
                out += handle(data)
        if out:
            yield out
    yield finish()


def parse_arguments(arguments: Any) -> Any:
    """Tool arguments as an object; a provider that sent broken JSON gets it kept as text, never lost."""
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    try:
        value = loads(arguments)
    except ValueError:
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"value": value}
