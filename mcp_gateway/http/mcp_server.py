"""The MCP server clients talk to: the merged catalog out, calls routed to the right upstream.

Built on the SDK's low-level `Server`, whose handlers run per request; that keeps the door open
for per-caller views (virtual keys) without another layer. Every handler reads one immutable
`Catalog` snapshot, so a list and the call that follows see consistent routes.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, ClassVar, TypeVar, cast

import anyio
import mcp_types as types
from mcp import MCPError
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.server.context import CallNext, HandlerResult, ServerMiddleware
from mcp.server.models import InitializationOptions
from mcp.shared.message import ServerMessageMetadata
from mcp_types import INVALID_PARAMS
from pydantic import ValidationError

from mcp_gateway import __version__
from mcp_gateway.caller_tools import CallerTools
from mcp_gateway.calls import send
from mcp_gateway.catalog import explicit_uri
from mcp_gateway.errors import UnknownTool, UpstreamError
from mcp_gateway.http.clients import ClientConnections
from mcp_gateway.http.fast_channel import forwardable_meta
from mcp_gateway.http.identify import identity_of
from mcp_gateway.http.sdk_server import connection_of
from mcp_gateway.http.tool_lists import CachedToolLists, ToolLists
from mcp_gateway.identity import Identity
from mcp_gateway.policy import Policy, View
from mcp_gateway.relay import Caller
from mcp_gateway.upstreams.connection import UpstreamConnection, UpstreamState
from mcp_gateway.upstreams.lists import ListKind
from mcp_gateway.upstreams.manager import UpstreamManager
from mcp_gateway.wire_results import as_sent, keep_number_forms

logger = logging.getLogger(__name__)

Ctx = ServerRequestContext[Any, Any]
_T = TypeVar("_T")
_R = TypeVar("_R")

RESOURCE_NOT_FOUND = -32002
"""The code MCP 2025-06-18/2025-11-25 define for an unknown resource URI."""


class GatewayServer(Server[Any]):
    """Low-level server with list-changed notifications advertised (the SDK leaves them off over HTTP)."""

    tool_lists: ToolLists
    """Shaped `tools/list` pages (served by a middleware here, and by the fast path)."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        everything_changes = NotificationOptions(prompts_changed=True, resources_changed=True, tools_changed=True)
        return super().create_initialization_options(
            notification_options or everything_changes,
            experimental_capabilities,
            extensions,
        )


def build_server(
    manager: UpstreamManager,
    clients: ClientConnections,
    policy: Policy,
    tools: CallerTools,
    refresh_identity: Callable[[Identity], Awaitable[Identity | None]] | None = None,
    end_session: Callable[[str], Awaitable[None]] | None = None,
) -> GatewayServer:
    """The MCP server; `tools` lists and calls each caller's tools (meta tools of search/code mode too)."""
    page_size = manager.config.server.page_size

    def view(ctx: Ctx) -> View:
        identity = identity_of(ctx)
        seen = policy.view(identity, manager.catalog)
        clients.register(ctx.session, identity, baseline=lambda: _fingerprints(seen, manager))
        return seen

    async def list_tools(ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        view(ctx)  # registers the session for list_changed notifications
        items, cursor = _page(tools.presentation(identity_of(ctx)).tools, params, page_size)
        return types.ListToolsResult(tools=items, next_cursor=cursor)

    async def call_tool(ctx: Ctx, params: types.CallToolRequestParams) -> dict[str, Any]:
        """tools/call: a meta tool of search/code mode, or a tool of an upstream through the call pipeline."""
        try:
            return RelayAsSent.relayed(
                await tools.call(
                    identity_of(ctx), params.name, params.arguments, McpChannel(ctx), forwardable_meta(ctx.meta)
                )
            )
        except UnknownTool:
            # Hidden and missing tools get the same answer: nothing leaks about what exists.
            raise MCPError(INVALID_PARAMS, f"Unknown tool: {params.name}") from None

    async def list_prompts(ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
        items, cursor = _page(view(ctx).prompts, params, page_size)
        return types.ListPromptsResult(prompts=items, next_cursor=cursor)

    async def get_prompt(ctx: Ctx, params: types.GetPromptRequestParams) -> dict[str, Any]:
        route = policy.prompt_route_for(identity_of(ctx), manager.catalog, params.name)
        if route is None:
            raise MCPError(INVALID_PARAMS, f"Unknown prompt: {params.name}")
        request = types.GetPromptRequest(
            params=types.GetPromptRequestParams(
                name=route.original, arguments=params.arguments, _meta=forwardable_meta(params.meta)
            )
        )
        return RelayAsSent.relayed(await _relayed_or_error(ctx, manager.connections[route.upstream], request))

    async def list_resources(ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListResourcesResult:
        items, cursor = _page(view(ctx).resources, params, page_size)
        return types.ListResourcesResult(resources=items, next_cursor=cursor)

    async def list_templates(
        ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        items, cursor = _page(view(ctx).resource_templates, params, page_size)
        return types.ListResourceTemplatesResult(resource_templates=items, next_cursor=cursor)

    def resource_upstream(ctx: Ctx, uri: str) -> tuple[UpstreamConnection, str]:
        found = policy.resource_route_for(identity_of(ctx), manager.catalog, uri)
        if found is None or found[0] not in manager.connections:
            raise MCPError(RESOURCE_NOT_FOUND, f"Resource not found: {uri}", data={"uri": uri})
        return manager.connections[found[0]], found[1]

    async def read_resource(ctx: Ctx, params: types.ReadResourceRequestParams) -> dict[str, Any]:
        upstream, original = resource_upstream(ctx, str(params.uri))
        request = types.ReadResourceRequest(
            params=types.ReadResourceRequestParams(uri=original, _meta=forwardable_meta(params.meta))
        )
        result = RelayAsSent.relayed(await _relayed_or_error(ctx, upstream, request))
        if original != str(params.uri):
            # Keep the contents addressed the way the client asked for them.
            for content in result.get("contents", []):
                if content.get("uri") == original:
                    content["uri"] = str(params.uri)
        return result

    async def subscribe(ctx: Ctx, params: types.SubscribeRequestParams) -> types.EmptyResult:
        uri = str(params.uri)
        upstream, original = resource_upstream(ctx, uri)
        if clients.subscribe(clients.register(ctx.session, identity_of(ctx)), uri):
            await _relayed_or_error(
                ctx, upstream, types.SubscribeRequest(params=types.SubscribeRequestParams(uri=original))
            )
        return types.EmptyResult()

    async def unsubscribe(ctx: Ctx, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        uri = str(params.uri)
        upstream, original = resource_upstream(ctx, uri)
        if clients.unsubscribe(connection_of(ctx.session), uri):
            await _relayed_or_error(
                ctx, upstream, types.UnsubscribeRequest(params=types.UnsubscribeRequestParams(uri=original))
            )
        return types.EmptyResult()

    async def set_logging_level(ctx: Ctx, params: types.SetLevelRequestParams) -> types.EmptyResult:
        """Upstream sessions are shared, so the level applies to every upstream that logs."""
        identity = identity_of(ctx)
        targets = [
            c
            for c in manager.connections.values()
            if c.state is UpstreamState.CONNECTED
            and c.capabilities is not None
            and c.capabilities.logging
            and policy.may_use_upstream(identity, c.name)
        ]
        request = types.SetLevelRequest(params=types.SetLevelRequestParams(level=params.level))

        async def forward(upstream: UpstreamConnection) -> None:
            try:
                await upstream.request(request)
            except (UpstreamError, MCPError) as exc:
                logger.warning("upstream %s refused logging/setLevel: %s", upstream.name, exc)

        async with anyio.create_task_group() as tg:
            for upstream in targets:
                tg.start_soon(forward, upstream)
        return types.EmptyResult()

    async def complete(ctx: Ctx, params: types.CompleteRequestParams) -> dict[str, Any]:
        ref = params.ref
        identity = identity_of(ctx)
        if isinstance(ref, types.PromptReference):
            route = policy.prompt_route_for(identity, manager.catalog, ref.name)
            if route is None:
                raise MCPError(INVALID_PARAMS, f"Unknown prompt: {ref.name}")
            upstream = manager.connections[route.upstream]
            new_ref: types.PromptReference | types.ResourceTemplateReference = ref.model_copy(
                update={"name": route.original}
            )
        else:
            upstream = _template_owner(manager, ref.uri)
            if not policy.may_use_upstream(identity, upstream.name):
                raise MCPError(INVALID_PARAMS, f"Unknown resource template: {ref.uri}")
            new_ref = ref
        request = types.CompleteRequest(
            params=types.CompleteRequestParams(ref=new_ref, argument=params.argument, context=params.context)
        )
        return RelayAsSent.relayed(await _relayed_or_error(ctx, upstream, request))

    server = GatewayServer(
        "mcpgw",
        version=__version__,
        instructions="mcpgw: tools, prompts and resources of several MCP servers, named <server>-<name>.",
        on_list_tools=list_tools,
        on_list_prompts=list_prompts,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
        on_subscribe_resource=subscribe,
        on_unsubscribe_resource=unsubscribe,
    )
    # Handlers that relay the upstream's wire result as a dict are registered here: the typed
    # constructor arguments insist on result models, which would cost a parse/dump per call.
    server.add_request_handler("tools/call", types.CallToolRequestParams, call_tool)
    server.add_request_handler("prompts/get", types.GetPromptRequestParams, get_prompt)
    server.add_request_handler("resources/read", types.ReadResourceRequestParams, read_resource)
    server.add_request_handler("completion/complete", types.CompleteRequestParams, complete)
    # Passing this one to the constructor emits a deprecation warning (logging is deprecated in
    # the 2026-07-28 era), but handshake-era clients still use it.
    server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, set_logging_level)

    clients.configure_announcements(
        lambda identity: _fingerprints(policy.view(identity, manager.catalog), manager),
        refresh_identity,
        end_session,
    )

    async def announce(kinds: frozenset[ListKind]) -> None:
        """Tell each client whose *visible* lists changed (others are not disturbed), from the announcer task."""
        clients.request_announce()

    async def resource_updated(upstream: str, uri: str) -> None:
        plain = (uri,) if manager.catalog.resource_route(uri) == (upstream, uri) else ()
        await clients.resource_updated((*plain, explicit_uri(upstream, uri)))

    manager.on_catalog_change(announce)
    server.middleware.append(ExplainInvalidParams())
    server.middleware.append(RelayAsSent())
    server.tool_lists = ToolLists(lambda items, params: _page(items, params, page_size))
    server.middleware.append(
        CachedToolLists(server.tool_lists, lambda ctx: (view(ctx), tools.presentation(identity_of(ctx)))[1])
    )
    manager.on_resource_updated(resource_updated)
    return server


class ExplainInvalidParams(ServerMiddleware[Any]):
    """Says which parameter is wrong: the SDK answers every malformed request with a bare
    "Invalid request parameters", which leaves a client author guessing."""

    async def __call__(self, ctx: Ctx, call_next: CallNext) -> HandlerResult:
        try:
            return await call_next(ctx)
        except ValidationError as exc:
            problems = [f"{_params_path(error['loc'])}: {error['msg']}" for error in exc.errors(include_url=False)[:3]]
            raise MCPError(INVALID_PARAMS, f"Invalid params for {ctx.method}: " + "; ".join(problems)) from None


class RelayAsSent(ServerMiddleware[Any]):
    """A relayed result goes out as `wire_results.shape_result` shapes it (as the upstream sent it, when
    that is exactly right), not as the SDK's sieve re-serialised it (`"priority": 1` → `1.0`).
    Handlers that return an upstream's wire result hand it to `relayed`; the chain's shaped result is
    then replaced by the one made from it (the same bytes the fast path sends).
    """

    _relayed: ClassVar[ContextVar[list[dict[str, Any]] | None]] = ContextVar("mcpgw_relayed_result", default=None)

    async def __call__(self, ctx: Ctx, call_next: CallNext) -> HandlerResult:
        box: list[dict[str, Any]] = []
        token = self._relayed.set(box)
        try:
            shaped = await call_next(ctx)
        finally:
            self._relayed.reset(token)
        if box and isinstance(shaped, dict):
            # Passed through as sent, or else the sieve's result (with the runner's stamps for a
            # 2026-era version) with the integers put back.
            relayed = as_sent(ctx.protocol_version, box[0])
            return relayed if relayed is not None else cast(HandlerResult, keep_number_forms(shaped, box[0]))
        return shaped

    @classmethod
    def relayed(cls, result: dict[str, Any]) -> dict[str, Any]:
        """Note `result` (as the upstream sent it) as the handler's answer, for the middleware; returns it."""
        box = cls._relayed.get()
        if box is not None:
            box.append(result)
        return result


def _params_path(loc: tuple[int | str, ...]) -> str:
    """`("params", "name")` or `("name",)` → `params.name` (the SDK validates whole requests or just params)."""
    parts = [str(part) for part in loc]
    return ".".join(parts if parts[:1] == ["params"] else ["params", *parts])


async def _relayed_or_error(ctx: Ctx, upstream: UpstreamConnection, request: types.ClientRequest) -> dict[str, Any]:
    """A request other than tools/call, relayed for the client of `ctx`: failures become JSON-RPC errors
    (these methods have no tool-error channel)."""
    try:
        return await send(upstream, request, Caller(McpChannel(ctx), identity_of(ctx)))
    except UpstreamError as exc:
        raise MCPError(types.INTERNAL_ERROR, exc.message) from None


class McpChannel:
    """`ClientChannel` over the SDK's request-scoped server session: what an upstream sends during a call
    rides the response stream of the client request that made it."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: Ctx) -> None:
        self._ctx = ctx

    @property
    def connection_key(self) -> object:
        return connection_of(self._ctx.session)

    @property
    def base_url(self) -> str | None:
        request = self._ctx.request
        return str(request.base_url).rstrip("/") if request is not None else None

    @property
    def wants_progress(self) -> bool:
        meta = self._ctx.meta or {}
        return meta.get("progress_token", meta.get("progressToken")) is not None

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        await self._ctx.session.report_progress(progress, total, message)

    def supports(self, capability: types.ClientCapabilities) -> bool:
        return self._ctx.session.check_client_capability(capability)

    async def request(self, request: types.ServerRequest, result_type: type[_R]) -> _R:
        metadata = ServerMessageMetadata(related_request_id=self._ctx.request_id)
        result: _R = await self._ctx.session.send_request(request, result_type, metadata=metadata)  # type: ignore[type-var]
        return result

    async def notify(self, notification: types.ServerNotification) -> None:
        await self._ctx.session.send_notification(notification, related_request_id=self._ctx.request_id)


def _fingerprints(view: View, manager: UpstreamManager) -> dict[ListKind, object]:
    """What a client sees, compactly: names per kind plus the content versions of the upstreams behind them."""
    catalog = manager.catalog

    def versions(upstreams: set[str], kind: ListKind) -> tuple[tuple[str, int], ...]:
        return tuple(sorted((u, manager.connections[u].versions[kind]) for u in upstreams if u in manager.connections))

    tools = tuple(t.name for t in view.tools)
    prompts = tuple(p.name for p in view.prompts)
    resources = tuple(str(r.uri) for r in view.resources) + tuple(t.uri_template for t in view.resource_templates)
    tool_upstreams = {u for n in tools for u in catalog.tool_routes[n].candidates}
    return {
        ListKind.TOOLS: (tools, versions(tool_upstreams, ListKind.TOOLS)),
        ListKind.PROMPTS: (prompts, versions({catalog.prompt_routes[n].upstream for n in prompts}, ListKind.PROMPTS)),
        ListKind.RESOURCES: (resources, versions(set(manager.connections), ListKind.RESOURCES)),
    }


def _template_owner(manager: UpstreamManager, uri_template: str) -> UpstreamConnection:
    for template, owner in manager.catalog.template_routes:
        if template == uri_template:
            return manager.connections[owner]
    raise MCPError(INVALID_PARAMS, f"Unknown resource template: {uri_template}")


def _page(items: tuple[_T, ...], params: types.PaginatedRequestParams | None, size: int) -> tuple[list[_T], str | None]:
    """Opaque offset cursors; an unknown cursor is the client's error (spec: -32602)."""
    start = 0
    if params is not None and params.cursor:
        try:
            start = int(base64.urlsafe_b64decode(params.cursor.encode()).decode().removeprefix("o:"))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise MCPError(INVALID_PARAMS, f"Invalid cursor: {params.cursor!r}") from None
        if start < 0 or start > len(items):
            raise MCPError(INVALID_PARAMS, f"Invalid cursor: {params.cursor!r}")
    end = start + size
    cursor = base64.urlsafe_b64encode(f"o:{end}".encode()).decode() if end < len(items) else None
    return list(items[start:end]), cursor
