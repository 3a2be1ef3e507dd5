"""A request's raw headers as a dict, made once per request and shared by the layers in front of `/mcp`.

Six layers (request context, CORS, Host/Origin, the envelope guard, the fast path and its channel)
each looked for a header or two by walking the whole list, some lower-casing every name on the way:
~60 Python-level steps per request on the hot path. ASGI servers hand header names lower-cased
(the ASGI spec; uvicorn and the test clients do), so one `dict()` of the list, made at C speed,
answers them all. A repeated header keeps its last value. The dict is kept beside the list it was
made from: a layer that hands on a scope with other headers gets a new one.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

_KEY = "mcpgw.raw_headers"


def raw_headers(scope: MutableMapping[str, Any]) -> dict[bytes, bytes]:
    """The request's headers by (lower-case) name, as bytes."""
    listed = scope["headers"]
    cached: tuple[object, dict[bytes, bytes]] | None = scope.get(_KEY)
    if cached is not None and cached[0] is listed:
        return cached[1]
    headers = dict(listed)
    scope[_KEY] = (listed, headers)
    return headers
