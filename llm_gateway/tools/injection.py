"""Injection: the MCP tools a caller may use on `/mcp`, added to its model request in the request's format.

What a request gets is the caller's `/mcp` view (`ToolSource.view`: same identity, policy,
`x-bf-mcp-include-clients`/`x-bf-mcp-include-tools` narrowing and tool modes), minus the tools the
client already sends itself (`names.client_tool_keys`), under provider-safe names
(`names.ProviderNames`). Definitions are built once per view and format and reused until the view
changes (a catalog change or a grant change makes a new view object).

Switches, strongest first: the request header `x-mcpgw-inject-tools: off`; the key's
`llm.inject_mcp_tools`; the gateway's `llm.auto_inject_mcp_tools` (default on). A request that
says `tool_choice: none` gets no tools added.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import mcp_types as types

from llm_gateway.errors import Api
from llm_gateway.tools.names import ProviderNames, client_tool_keys, deferred_tool_names, normalised
from llm_gateway.wire import EncodedList, dumps
from mcp_gateway.channel import ClientChannel
from mcp_gateway.config_llm import KeyLlmPolicy, LlmSettings
from mcp_gateway.identity import Identity

INJECT_HEADER = "x-mcpgw-inject-tools"
_OFF = frozenset({"off", "false", "0", "no", "none"})
_CACHE_SIZE = 512


class ToolView(Protocol):
    """A caller's `/mcp` tools (`mcp_gateway.caller_tools.CallerView`)."""

    @property
    def tools(self) -> tuple[types.Tool, ...]: ...

    @property
    def auto_execute(self) -> frozenset[str]: ...


class ToolSource(Protocol):
    """Where a caller's tools come from and how they are called (`mcp_gateway.caller_tools.CallerTools`)."""

    def view(self, identity: Identity) -> ToolView: ...

    async def call(
        self,
        identity: Identity,
        name: str,
        arguments: Mapping[str, Any] | None,
        channel: ClientChannel,
        meta: types.RequestParamsMeta | None = None,
        *,
        llm_request_id: str | None = None,
    ) -> dict[str, Any]: ...


class ViewTools:
    """One view's tools as models see them: provider names, and definitions per API format (built on first use)."""

    def __init__(self, view: ToolView) -> None:
        self.view = view
        self.tools = view.tools
        self.names = ProviderNames([tool.name for tool in view.tools])
        self.keys = tuple(normalised(tool.name) for tool in view.tools)
        self._definitions: dict[Api, tuple[dict[str, Any], ...]] = {}
        self._encoded: dict[Api, bytes] = {}

    def encoded(self, api: Api) -> bytes:
        """All definitions of the view as JSON array items (no brackets), made once per format."""
        found = self._encoded.get(api)
        if found is None:
            found = self._encoded[api] = dumps(list(self.definitions(api)))[1:-1]
        return found

    def definitions(self, api: Api) -> tuple[dict[str, Any], ...]:
        found = self._definitions.get(api)
        if found is None:
            found = self._definitions[api] = tuple(self._definition(api, tool) for tool in self.tools)
        return found

    def _definition(self, api: Api, tool: types.Tool) -> dict[str, Any]:
        name = self.names.to_provider[tool.name]
        description = tool.description or tool.title or tool.name
        schema = dict(tool.input_schema) if tool.input_schema else {"type": "object", "properties": {}}
        if api == "anthropic":
            return {"name": name, "description": description, "input_schema": schema}
        return {"type": "function", "function": {"name": name, "description": description, "parameters": schema}}


@dataclass(slots=True)
class Injection:
    """One request's injected tools: the body to send, and how to recognise and run a call of one of them."""

    body: dict[str, Any]
    tools: ViewTools
    injected: frozenset[str]
    """Provider names of the tools added to this request."""
    auto_patterns: tuple[str, ...] | None
    """The key's narrowing of auto-execution (gateway names or globs); None: no narrowing."""

    def gateway_name(self, provider_name: str) -> str | None:
        """The gateway tool behind a tool call the model made, if it is one this request injected."""
        if provider_name not in self.injected:
            return None
        return self.tools.names.to_gateway.get(provider_name)

    def runs_itself(self, provider_name: str) -> bool:
        """Whether the gateway runs this tool call (agent mode) instead of handing it to the client."""
        name = self.gateway_name(provider_name)
        if name is None or name not in self.tools.view.auto_execute:
            return False
        patterns = self.auto_patterns
        return patterns is None or any(fnmatch.fnmatchcase(name, p) for p in patterns)


class Injector:
    """Adds a caller's MCP tools to model requests; `source` is read per request (it exists while running)."""

    def __init__(self, source: ToolSource) -> None:
        self.source = source
        self._cache: dict[int, ViewTools] = {}

    def tools_of(self, identity: Identity) -> ViewTools:
        view = self.source.view(identity)
        found = self._cache.get(id(view))
        if found is None or found.view is not view:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            found = self._cache[id(view)] = ViewTools(view)
        return found

    def prepare(
        self,
        api: Api,
        body: dict[str, Any],
        headers: Mapping[str, str],
        identity: Identity | None,
        settings: LlmSettings,
        policy: KeyLlmPolicy | None,
    ) -> Injection | None:
        """The request with the caller's tools added, or None when nothing is to be added.

        `policy`: the caller's key's LLM policy (its injection switch and auto-execution narrowing).
        """
        if identity is None or headers.get(INJECT_HEADER, "").strip().lower() in _OFF:
            return None
        wanted = policy.inject_mcp_tools if policy is not None else None
        if not (settings.auto_inject_mcp_tools if wanted is None else wanted) or _no_tools_wanted(body):
            return None
        tools = self.tools_of(identity)
        if not tools.tools:
            return None
        client_tools = body.get("tools")
        client_list: list[Any] = client_tools if isinstance(client_tools, list) else []
        sent = _client_tool_names(api, client_list, body.get("messages"))
        keys = client_tool_keys(sent) if sent else frozenset()
        taken = set(sent)
        definitions = tools.definitions(api)
        added: list[dict[str, Any]] = []
        injected: set[str] = set()
        for tool, key, definition in zip(tools.tools, tools.keys, definitions, strict=True):
            name = tools.names.to_provider[tool.name]
            if key in keys or name in taken:
                continue
            added.append(definition)
            injected.add(name)
        if not added:
            return None
        patterns = policy.tools_to_auto_execute if policy is not None else None
        # The common case (nothing deduped) reuses the view's encoded definitions instead of encoding
        # ~100 tool schemas again for every request.
        items = tools.encoded(api) if len(added) == len(definitions) else dumps(added)[1:-1]
        encoded = b"[" + (dumps(client_list)[1:-1] + b"," if client_list else b"") + items + b"]"
        return Injection(
            body={**body, "tools": EncodedList([*client_list, *added], encoded)},
            tools=tools,
            injected=frozenset(injected),
            auto_patterns=tuple(patterns) if patterns is not None else None,
        )


def _no_tools_wanted(body: Mapping[str, Any]) -> bool:
    choice = body.get("tool_choice")
    return choice == "none" or (isinstance(choice, dict) and choice.get("type") == "none")


def _client_tool_names(api: Api, tools: Sequence[Any], messages: Any) -> list[str]:
    names: list[str] = []
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        if api == "anthropic":
            name = tool.get("name")
        else:
            function = tool.get("function")
            name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str):
            names.append(name)
    if isinstance(messages, list):
        system_texts = [m["content"] for m in messages if isinstance(m, dict) and m.get("role") == "system"]
        names += deferred_tool_names(t for t in system_texts if isinstance(t, str))
    return names
