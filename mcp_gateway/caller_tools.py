"""A caller's tools as every face offers them: the `/mcp` listing, and calling one of them (meta tools too).

`/mcp` lists `view(identity).tools` and answers `tools/call` with `call`; the LLM gateway injects the
same list into model requests and runs the same calls when a model asks for one. Keeping both here
means a tool a model sees is exactly a tool the caller could call on `/mcp`, through the same
policy, tool modes (a search/code-mode upstream offers its meta tools, not its raw tools), per-user
credentials and audit.

Views are memoised per presentation (itself memoised per policy view and catalog snapshot), so a
request with an unchanged view costs a dictionary lookup.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import mcp_types as types

from mcp_gateway.calls import ToolCalls
from mcp_gateway.catalog import Catalog
from mcp_gateway.channel import ClientChannel
from mcp_gateway.config import UpstreamConfig
from mcp_gateway.identity import Identity
from mcp_gateway.policy import Policy
from mcp_gateway.toolmodes.base import ModalTool, ToolAccess, ToolMode
from mcp_gateway.toolmodes.presenter import Presentation, Presenter

_CACHE_SIZE = 1024


class ModeHandler(Protocol):
    """A tool mode's meta tools (search, code): answers a call as the caller, via `access`."""

    async def call(self, name: str, arguments: Mapping[str, Any], access: ToolAccess) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class CallerView:
    """The tools one caller sees, and which of them the gateway may run by itself for a model."""

    tools: tuple[types.Tool, ...]
    auto_execute: frozenset[str]
    """Names (as listed) an upstream's `tools_to_auto_execute` allows the gateway to run in agent mode."""
    presentation: Presentation


class CallerTools:
    """Lists and calls a caller's tools; `catalog` and `upstream_config` are read per request (they change)."""

    def __init__(
        self,
        policy: Policy,
        presenter: Presenter,
        calls: ToolCalls,
        catalog: Callable[[], Catalog],
        upstream_config: Callable[[str], UpstreamConfig | None],
        mode_handlers: Mapping[ToolMode, ModeHandler],
    ) -> None:
        self._policy = policy
        self._presenter = presenter
        self._calls = calls
        self._catalog = catalog
        self._upstream_config = upstream_config
        self._handlers = mode_handlers
        self._views: dict[int, tuple[Presentation, CallerView]] = {}

    def presentation(self, identity: Identity) -> Presentation:
        catalog = self._catalog()
        return self._presenter.present(self._policy.view(identity, catalog), catalog)

    def view(self, identity: Identity) -> CallerView:
        presentation = self.presentation(identity)
        hit = self._views.get(id(presentation))
        if hit is not None and hit[0] is presentation:
            return hit[1]
        view = CallerView(presentation.tools, self._auto_executable(presentation), presentation)
        if len(self._views) >= _CACHE_SIZE:
            self._views.clear()
        self._views[id(presentation)] = (presentation, view)
        return view

    async def call(
        self,
        identity: Identity,
        name: str,
        arguments: Mapping[str, Any] | None,
        channel: ClientChannel,
        meta: types.RequestParamsMeta | None = None,
        *,
        llm_request_id: str | None = None,
    ) -> dict[str, Any]:
        """A meta tool of search/code mode answered here, or a tool of an upstream through the call pipeline.

        Raises:
            UnknownTool: no such tool, or the caller may not see it.
            MCPError: the upstream answered with a JSON-RPC error.
        """
        if self._handlers:
            presentation = self.presentation(identity)
            mode = presentation.meta.get(name)
            if mode is not None and mode in self._handlers:
                started = time.perf_counter()
                access = self._calls.access(identity, presentation, channel, meta, llm_request_id=llm_request_id)
                result = await self._handlers[mode].call(name, arguments or {}, access)
                self._calls.record_meta_call(identity, name, started, result, llm_request_id=llm_request_id)
                result.setdefault("resultType", "complete")
                return result
        return await self._calls.call(identity, name, arguments, channel, meta, llm_request_id=llm_request_id)

    def _auto_executable(self, presentation: Presentation) -> frozenset[str]:
        """Listed tools whose upstream lets the gateway run them; a meta tool only when every tool behind it may run."""
        allowed: set[str] = set()
        behind_meta: dict[ToolMode, list[bool]] = {}
        for tool in presentation.modal:
            may = self._may_auto_execute(tool)
            if tool.mode in (ToolMode.DIRECT, ToolMode.COMPACT):
                if may:
                    allowed.add(tool.name)
            else:
                behind_meta.setdefault(tool.mode, []).append(may)
        for name, mode in presentation.meta.items():
            if all(behind_meta.get(mode) or [False]):
                allowed.add(name)
        return frozenset(allowed)

    def _may_auto_execute(self, tool: ModalTool) -> bool:
        config = self._upstream_config(tool.upstream)
        patterns = config.tools_to_auto_execute if config is not None else []
        return any(fnmatch.fnmatchcase(tool.original, pattern) for pattern in patterns)
