"""The MCP SDK client-side internals that upstream connections rely on, in one place.

- `mcp.client.session._clamp_inbound_ttl` and `_later_revision_fields`: what
  `ClientSession.send_request` does to a raw result for the negotiated protocol version before
  its caller sees it. `DirectHttp` (`direct.py`) sends `tools/call` as one plain POST beside the
  SDK session, because going through `send_request` costs ~1.7 ms CPU per call against ~1.0 ms
  for the same POST (the largest single cost of the hop). Its answers must be shaped exactly as
  the SDK shapes them, so it calls the SDK's own functions rather than copies that could drift.
  Fallback: `AVAILABLE` is false, `DirectHttp.ready` never becomes true and every call goes
  through `ClientSession.send_request`, as before the direct path existed.
- `last_context` on a read stream: the sender's `contextvars.Context` for the item just
  received. The SDK's transports set it on the streams they hand out and its dispatcher reads it
  from the session's read stream (`getattr(stream, "last_context", None)`) to run each handler
  in that context; the convention is documented only in private SDK modules
  (`mcp.shared._stream_protocols`, `mcp.shared._context_streams`). Our wrappers of the read
  stream (`streams.MergedInbound`, `connection._WatchedStream`) pass it on, so relayed
  messages are attributed to their exact caller. Fallback: `sender_context` answers None and
  `InFlight.attribute` guesses (the latest caller when every call in flight comes from one
  client, nobody otherwise).

Neither fallback fails at run time (one is slower, the other less exact), so `missing()` names
what the installed SDK lacks and `tests/test_private_internals.py` fails on it.
"""

from __future__ import annotations

import contextvars
from typing import Any

_missing_imports: list[str] = []
try:
    from mcp.client.session import _clamp_inbound_ttl
except ImportError:  # pragma: no cover - a future SDK moved it
    _missing_imports.append("mcp.client.session._clamp_inbound_ttl")
try:
    from mcp.client.session import _later_revision_fields
except ImportError:  # pragma: no cover - a future SDK moved it
    _missing_imports.append("mcp.client.session._later_revision_fields")

AVAILABLE = not _missing_imports
"""Whether results can be shaped as `ClientSession.send_request` shapes them; when false, no direct path."""

SENDER_CONTEXT = "last_context"
"""The read-stream attribute the SDK's dispatcher takes each handler's context from."""


def clamp_inbound_ttl(raw: dict[str, Any]) -> None:
    """Floors a negative `ttlMs` in a raw result to 0, as the SDK does. Only when `AVAILABLE`."""
    _clamp_inbound_ttl(raw)


def later_revision_fields(method: str, version: str) -> frozenset[str]:
    """Result keys of `method` that only protocol revisions after `version` define (the SDK drops
    them). Only when `AVAILABLE`."""
    return _later_revision_fields(method, version)


def sender_context(stream: object) -> contextvars.Context | None:
    """The context the item last received from `stream` was sent from; None when it has none."""
    context = getattr(stream, SENDER_CONTEXT, None)
    return context if isinstance(context, contextvars.Context) else None


def missing() -> list[str]:
    """The internals above that the installed SDK lacks (empty when all of them work)."""
    gone = list(_missing_imports)
    try:
        from mcp.shared._context_streams import create_context_streams
    except ImportError:
        gone.append("mcp.shared._context_streams.create_context_streams")
    else:
        send, receive = create_context_streams[object](0)
        if not hasattr(receive, SENDER_CONTEXT):
            gone.append(f"ContextReceiveStream.{SENDER_CONTEXT}")
        send.close()
        receive.close()
    return gone
