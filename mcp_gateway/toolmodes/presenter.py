"""How a caller's tools are listed under each upstream's tool mode, and how meta tools are found.

`direct` tools are listed as they are, `compact` ones shortened, and `search`/`code` ones are
replaced by their mode's three meta tools (listed once, only when the caller can see at least
one tool behind them). Presentations are memoised per policy view, which is itself memoised
per catalog snapshot and grant set, so listing stays a dictionary lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import mcp_types as types

from mcp_gateway.catalog import Catalog
from mcp_gateway.policy import View
from mcp_gateway.toolmodes.base import ModalTool, ToolMode
from mcp_gateway.toolmodes.compact import compact_tool

_CACHE_SIZE = 1024

ModeOf = Callable[[str], ToolMode]
"""Upstream name → its effective tool mode."""


@dataclass(frozen=True, slots=True)
class Presentation:
    tools: tuple[types.Tool, ...]
    modal: tuple[ModalTool, ...]
    """Every visible underlying tool with its mode (what meta tools work on)."""
    meta: Mapping[str, ToolMode]
    """Meta tool name → the mode that answers it, for the meta tools this caller was shown."""


class Presenter:
    def __init__(self, mode_of: ModeOf, meta_tools: Mapping[ToolMode, list[types.Tool]]) -> None:
        self._mode_of = mode_of
        self._meta_tools = meta_tools
        self._cache: dict[int, tuple[View, Presentation]] = {}

    def invalidate(self) -> None:
        self._cache.clear()

    def present(self, view: View, catalog: Catalog) -> Presentation:
        hit = self._cache.get(id(view))
        if hit is not None and hit[0] is view:
            return hit[1]
        presentation = self._build(view, catalog)
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[id(view)] = (view, presentation)
        return presentation

    def _build(self, view: View, catalog: Catalog) -> Presentation:
        listed: list[types.Tool] = []
        modal: list[ModalTool] = []
        modes_in_use: set[ToolMode] = set()
        for tool in view.tools:
            route = catalog.tool_routes[tool.name]
            mode = self._mode_of(route.upstream)
            modal.append(
                ModalTool(name=tool.name, upstream=route.upstream, original=route.original, tool=tool, mode=mode)
            )
            if mode is ToolMode.DIRECT:
                listed.append(tool)
            elif mode is ToolMode.COMPACT:
                listed.append(compact_tool(tool))
            else:
                modes_in_use.add(mode)
        meta: dict[str, ToolMode] = {}
        for mode in (ToolMode.SEARCH, ToolMode.CODE):
            if mode in modes_in_use:
                for tool in self._meta_tools.get(mode, []):
                    listed.append(tool)
                    meta[tool.name] = mode
        return Presentation(tools=tuple(listed), modal=tuple(modal), meta=meta)
