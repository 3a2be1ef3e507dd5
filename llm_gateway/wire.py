"""JSON and server-sent events as the providers and clients write them: parse once, relay as bytes.

`loads`/`dumps` are pydantic-core's (Rust), the fastest JSON the project already depends on.
`SseParser` is incremental: a provider's stream arrives in chunks cut anywhere, even inside a
UTF-8 character or a field name, and each complete event is handed on as soon as its blank line
arrives.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pydantic_core


def loads(data: bytes | str) -> Any:
    """Parse JSON; raises ValueError on anything that is not JSON."""
    return pydantic_core.from_json(data)


class EncodedList(list[Any]):
    """A list that carries its own JSON encoding, made once (the injected tool definitions of a view).

    `dumps` splices `encoded` in place of encoding the items again; code that reads the list (the
    translators, the agent loop) sees an ordinary list. Never mutate one: the encoding would be stale.
    """

    __slots__ = ("encoded",)

    def __init__(self, items: list[Any], encoded: bytes) -> None:
        super().__init__(items)
        self.encoded = encoded


def dumps(value: Any) -> bytes:
    """Compact JSON, UTF-8, non-ASCII kept (as the providers send it).

    A request body whose `tools` is an `EncodedList` is written with that list's bytes spliced in
    (it goes last in the object; key order means nothing in JSON).
    """
    if type(value) is dict:
        tools = value.get("tools")
        if type(tools) is EncodedList:
            head = pydantic_core.to_json({k: v for k, v in value.items() if k != "tools"})
            return head[:-1] + (b',"tools":' if len(head) > 2 else b'"tools":') + tools.encoded + b"}"
    return pydantic_core.to_json(value)


@dataclass(slots=True)
class SseEvent:
    event: str | None
    data: str


class SseParser:
    """Feed it chunks, get complete events (`event:`/`data:` fields; comments and `id:`/`retry:` ignored)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> Iterator[SseEvent]:
        buffer = self._buffer + self._decoder.decode(chunk)
        start = 0
        while True:
            end = _line_end(buffer, start)
            if end is None:
                break
            line = buffer[start : end[0]]
            start = end[1]
            if not line:
                if self._data or self._event is not None:
                    yield SseEvent(self._event, "\n".join(self._data))
                self._event, self._data = None, []
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                self._data.append(value)
            elif name == "event":
                self._event = value
        self._buffer = buffer[start:]

    def close(self) -> Iterator[SseEvent]:
        """Whatever is left when the stream ends (a last event without its blank line)."""
        yield from self.feed(b"\n\n")


def _line_end(buffer: str, start: int) -> tuple[int, int] | None:
    """Where the line starting at `start` ends: (index of its terminator, index after it); CRLF, LF or CR."""
    newline = buffer.find("\n", start)
    carriage = buffer.find("\r", start, newline if newline != -1 else len(buffer))
    if carriage == -1:
        return None if newline == -1 else (newline, newline + 1)
    if carriage + 1 == len(buffer):
        return None  # a CR at the very end may be the first half of CRLF
    return carriage, carriage + 2 if buffer[carriage + 1] == "\n" else carriage + 1


def sse(event: str | None, data: Any) -> bytes:
    """One server-sent event; `data` is JSON-encoded unless it is already bytes."""
    payload = data if isinstance(data, bytes) else dumps(data)
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + payload + b"\n\n"
