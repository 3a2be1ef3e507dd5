"""The lists an upstream serves (tools, prompts, resources): their kinds, and fetching them whole.

The gateway always holds an upstream's complete lists (every page), so the merged catalog,
`list_changed` fingerprints and policy views never see half a list.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from typing import Any

import mcp_types as types
from mcp import MCPError
from mcp_types import METHOD_NOT_FOUND

from mcp_gateway.errors import UpstreamError

_MAX_LIST_PAGES = 1000


class ListKind(enum.Enum):
    """What a `list_changed` is about; each kind has its own content version per upstream."""

    TOOLS = "tools"
    PROMPTS = "prompts"
    RESOURCES = "resources"


async def fetch_all(list_method: Callable[..., Awaitable[Any]], attribute: str) -> list[Any]:
    """Walk every page of a paginated list: the gateway always holds the complete list."""
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(_MAX_LIST_PAGES):
        params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
        try:
            page = await list_method(params=params)
        except MCPError as exc:
            if exc.error.code == METHOD_NOT_FOUND:
                # Servers often advertise `resources` without implementing templates/list.
                return items
            raise
        items.extend(getattr(page, attribute))
        cursor = page.next_cursor
        if not cursor:
            return items
    raise UpstreamError("?", f"more than {_MAX_LIST_PAGES} pages in {attribute} list")
