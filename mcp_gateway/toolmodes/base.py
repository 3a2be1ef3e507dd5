"""What every tool mode plugs into: the caller's visible tools, and a way to call them as the caller.

A mode never sees other callers' tools and never bypasses policy: `ToolAccess` is built per
request from the caller's policy view, and `ToolAccess.call` goes through the same policy
check, per-user credentials and audit as a direct `tools/call`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import mcp_types as types


class ToolMode(enum.StrEnum):
    DIRECT = "direct"  # tools listed as they are
    COMPACT = "compact"  # listed with first-sentence descriptions and no parameter descriptions
    SEARCH = "search"  # hidden behind search_tools / get_tool_schema / call_tool
    CODE = "code"  # hidden behind list_tools / get_tool_docs / run_code (sandboxed Python)


@dataclass(frozen=True, slots=True)
class ModalTool:
    """One underlying tool the caller may use, as a mode sees it."""

    name: str
    """The exposed name (what `call_tool`/`tools.<upstream>.<tool>` resolve to)."""
    upstream: str
    original: str
    tool: types.Tool
    mode: ToolMode


class ToolAccess(Protocol):
    """The caller's tools, for meta tools. Built per request; holds the caller's identity."""

    def tools(self, *modes: ToolMode) -> list[ModalTool]:
        """Visible tools of upstreams in the given modes (all modes when none are given)."""
        ...

    async def call(self, name: str, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
        """Call a tool by exposed name as the caller; the wire `CallToolResult` dict.

        Raises:
            UnknownTool: it does not exist or is hidden from the caller.
        """
        ...
