"""`tools/list` pages shaped once per view, protocol version and cursor, then served from memory.

A listing is a pure function of the caller's presentation (itself memoised per policy view and
catalog snapshot: a changed catalog or key makes a new one, which is the invalidation) and the
protocol version whose schema shapes it. Shaping a page the SDK's way — each `Tool` dumped, then
the whole result validated and dumped again by the version's surface model — costs ~10 µs per
tool, 5 ms for a 500-tool view, on every request. Here it is done once: the SDK path gets the
shaped dict (`CachedToolLists`, a server middleware that answers before the handler), the fast
path (`fast_calls`) the encoded bytes. Both are exactly what the SDK would have produced, because
they are produced by the same calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mcp_types as types
import pydantic_core
from mcp import MCPError
from mcp.server.context import CallNext, HandlerResult, ServerMiddleware
from mcp_types import methods as _methods
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from mcp_gateway.http.sdk_server import connection_of
from mcp_gateway.toolmodes.presenter import Presentation

_CACHED_PAGES = 512
_VERSIONS = frozenset(HANDSHAKE_PROTOCOL_VERSIONS)

Pager = Callable[[tuple[types.Tool, ...], types.PaginatedRequestParams | None], tuple[list[types.Tool], str | None]]
"""Cuts a page out of a listing (`mcp_server._page`); raises `MCPError` for a cursor it does not know."""


@dataclass(frozen=True, slots=True)
class ToolPage:
    shaped: dict[str, Any]
    """The result as the SDK's sieve shapes it (never modified: handed out as is)."""
    encoded: bytes
    """`shaped` as JSON."""


class ToolLists:
    """Shaped `tools/list` pages per (presentation, version, cursor)."""

    def __init__(self, pager: Pager) -> None:
        self._pager = pager
        self._pages: dict[tuple[int, str, str | None], tuple[Presentation, ToolPage]] = {}

    def page(self, presentation: Presentation, version: str, cursor: str | None) -> ToolPage | None:
        """The page, or None when the SDK should answer itself (a 2026-era version, an unknown cursor)."""
        if version not in _VERSIONS:
            return None  # 2026-era results carry per-request stamps: the SDK shapes those
        key = (id(presentation), version, cursor)
        hit = self._pages.get(key)
        if hit is not None and hit[0] is presentation:
            return hit[1]
        try:
            items, next_cursor = self._pager(
                presentation.tools, types.PaginatedRequestParams(cursor=cursor) if cursor is not None else None
            )
        except MCPError:
            return None  # the handler answers the bad cursor
        result = types.ListToolsResult(tools=items, next_cursor=next_cursor)
        dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)  # as the SDK's runner dumps it
        shaped = _methods.serialize_server_result("tools/list", version, dumped)
        page = ToolPage(shaped, pydantic_core.to_json(shaped))
        if len(self._pages) >= _CACHED_PAGES:
            self._pages.clear()
        self._pages[key] = (presentation, page)
        return page


class CachedToolLists(ServerMiddleware[Any]):
    """Answers `tools/list` on the SDK path from `ToolLists`, after `prepare` (which registers the
    session for `list_changed` and returns the caller's presentation, as the handler would)."""

    def __init__(self, lists: ToolLists, prepare: Callable[[Any], Presentation]) -> None:
        self._lists = lists
        self._prepare = prepare

    async def __call__(self, ctx: Any, call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/list" or not _initialized(ctx):
            return await call_next(ctx)
        params = ctx.params if isinstance(ctx.params, dict) else {}
        cursor = params.get("cursor")
        if not (cursor is None or isinstance(cursor, str)):
            return await call_next(ctx)  # the SDK explains the malformed params
        page = self._lists.page(self._prepare(ctx), ctx.protocol_version, cursor)
        return page.shaped if page is not None else await call_next(ctx)


def _initialized(ctx: Any) -> bool:
    """Whether the session finished its handshake (the SDK's handler refuses lists before it)."""
    return bool(connection_of(ctx.session).initialize_accepted)
