"""The MCP server clients talk to: the merged catalog out, calls routed to the right upstream.

Built on the SDK's low-level `Server`, whose handlers run per request; that keeps the door open
for per-caller views (virtual keys) without another layer. Every handler reads one immutable
`Catalog` snapshot, so a list and the call that follows see consistent routes.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any, TypeVar

import anyio
import mcp_types as types
from mcp import MCPError
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.server.models import InitializationOptions
from mcp_types import INVALID_PARAMS

from mcp_gateway import __version__
from mcp_gateway.catalog import explicit_uri
from mcp_gateway.clients import ClientConnections, connection_of
from mcp_gateway.config import prefix_of
from mcp_gateway.errors import UpstreamError
from mcp_gateway.relay import CURRENT_CALLER, Caller
from mcp_gateway.upstreams.connection import ListKind, UpstreamConnection, UpstreamState
from mcp_gateway.upstreams.manager import UpstreamManager

logger = logging.getLogger(__name__)

Ctx = ServerRequestContext[Any, Any]
_T = TypeVar("_T")

# Envelope keys the SDK stamps per hop; forwarding the client's would confuse the upstream session.
_HOP_META_KEYS = frozenset({"progress_token", "progressToken"})
_RESERVED_META_PREFIX = "io.modelcontextprotocol/"
RESOURCE_NOT_FOUND = -32002
"""The code MCP 2025-06-18/2025-11-25 define for an unknown resource URI."""


class GatewayServer(Server[Any]):
    """Low-level server with list-changed notifications advertised (the SDK leaves them off over HTTP)."""

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


def build_server(manager: UpstreamManager, clients: ClientConnections) -> GatewayServer:
    page_size = manager.config.server.page_size

    def register(ctx: Ctx) -> None:
        clients.register(ctx.session)

    async def list_tools(ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        register(ctx)
        items, cursor = _page(manager.catalog.tools, params, page_size)
        return types.ListToolsResult(tools=items, next_cursor=cursor)

    async def call_tool(ctx: Ctx, params: types.CallToolRequestParams) -> dict[str, Any]:
        route = manager.catalog.tool_routes.get(params.name)
        if route is None:
            unavailable = _unavailable_owner(manager, params.name)
            if unavailable is not None:
                return _tool_error(unavailable)
            raise MCPError(INVALID_PARAMS, f"Unknown tool: {params.name}")
        upstream = manager.connections[route.upstream]
        request = types.CallToolRequest(
            params=types.CallToolRequestParams(
                name=route.original, arguments=params.arguments, _meta=_forwardable_meta(params.meta)
            )
        )
        try:
            return await _relayed(ctx, upstream, request)
        except UpstreamError as exc:
            return _tool_error(exc.message)

    async def list_prompts(ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
        register(ctx)
        items, cursor = _page(manager.catalog.prompts, params, page_size)
        return types.ListPromptsResult(prompts=items, next_cursor=cursor)

    async def get_prompt(ctx: Ctx, params: types.GetPromptRequestParams) -> dict[str, Any]:
        route = manager.catalog.prompt_routes.get(params.name)
        if route is None:
            raise MCPError(INVALID_PARAMS, f"Unknown prompt: {params.name}")
        request = types.GetPromptRequest(
            params=types.GetPromptRequestParams(
                name=route.original, arguments=params.arguments, _meta=_forwardable_meta(params.meta)
            )
        )
        return await _relayed_or_error(ctx, manager.connections[route.upstream], request)

    async def list_resources(ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListResourcesResult:
        register(ctx)
        items, cursor = _page(manager.catalog.resources, params, page_size)
        return types.ListResourcesResult(resources=items, next_cursor=cursor)

    async def list_templates(
        ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        register(ctx)
        items, cursor = _page(manager.catalog.resource_templates, params, page_size)
        return types.ListResourceTemplatesResult(resource_templates=items, next_cursor=cursor)

    def resource_upstream(uri: str) -> tuple[UpstreamConnection, str]:
        found = manager.catalog.resource_route(uri)
        if found is None or found[0] not in manager.connections:
            raise MCPError(RESOURCE_NOT_FOUND, f"Resource not found: {uri}", data={"uri": uri})
        return manager.connections[found[0]], found[1]

    async def read_resource(ctx: Ctx, params: types.ReadResourceRequestParams) -> dict[str, Any]:
        upstream, original = resource_upstream(str(params.uri))
        request = types.ReadResourceRequest(
            params=types.ReadResourceRequestParams(uri=original, _meta=_forwardable_meta(params.meta))
        )
        result = await _relayed_or_error(ctx, upstream, request)
        if original != str(params.uri):
            # Keep the contents addressed the way the client asked for them.
            for content in result.get("contents", []):
                if content.get("uri") == original:
                    content["uri"] = str(params.uri)
        return result

    async def subscribe(ctx: Ctx, params: types.SubscribeRequestParams) -> types.EmptyResult:
        uri = str(params.uri)
        upstream, original = resource_upstream(uri)
        if clients.subscribe(clients.register(ctx.session), uri):
            await _relayed_or_error(
                ctx, upstream, types.SubscribeRequest(params=types.SubscribeRequestParams(uri=original))
            )
        return types.EmptyResult()

    async def unsubscribe(ctx: Ctx, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        uri = str(params.uri)
        upstream, original = resource_upstream(uri)
        if clients.unsubscribe(connection_of(ctx.session), uri):
            await _relayed_or_error(
                ctx, upstream, types.UnsubscribeRequest(params=types.UnsubscribeRequestParams(uri=original))
            )
        return types.EmptyResult()

    async def set_logging_level(ctx: Ctx, params: types.SetLevelRequestParams) -> types.EmptyResult:
        """Upstream sessions are shared, so the level applies to every upstream that logs."""
        targets = [
            c
            for c in manager.connections.values()
            if c.state is UpstreamState.CONNECTED and c.capabilities is not None and c.capabilities.logging
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
        if isinstance(ref, types.PromptReference):
            route = manager.catalog.prompt_routes.get(ref.name)
            if route is None:
                raise MCPError(INVALID_PARAMS, f"Unknown prompt: {ref.name}")
            upstream = manager.connections[route.upstream]
            new_ref: types.PromptReference | types.ResourceTemplateReference = ref.model_copy(
                update={"name": route.original}
            )
        else:
            upstream = _template_owner(manager, ref.uri)
            new_ref = ref
        request = types.CompleteRequest(
            params=types.CompleteRequestParams(ref=new_ref, argument=params.argument, context=params.context)
        )
        return await _relayed_or_error(ctx, upstream, request)

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

    async def announce(kinds: frozenset[ListKind]) -> None:
        notifications: dict[ListKind, types.ServerNotification] = {
            ListKind.TOOLS: types.ToolListChangedNotification(),
            ListKind.PROMPTS: types.PromptListChangedNotification(),
            ListKind.RESOURCES: types.ResourceListChangedNotification(),
        }
        for kind in kinds:
            await clients.broadcast(notifications[kind])

    async def resource_updated(upstream: str, uri: str) -> None:
        plain = (uri,) if manager.catalog.resource_route(uri) == (upstream, uri) else ()
        await clients.resource_updated((*plain, explicit_uri(upstream, uri)))

    manager.on_catalog_change(announce)
    manager.on_resource_updated(resource_updated)
    return server


async def _relayed(ctx: Ctx, upstream: UpstreamConnection, request: types.ClientRequest) -> dict[str, Any]:
    """Send `request` upstream on behalf of the client request `ctx`, relaying progress back."""
    caller = Caller(session=ctx.session, request_id=ctx.request_id, connection_key=connection_of(ctx.session))
    meta = ctx.meta or {}
    wants_progress = meta.get("progress_token", meta.get("progressToken")) is not None

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        await ctx.session.report_progress(progress, total, message)

    token = CURRENT_CALLER.set(caller)
    try:
        result = await upstream.request(request, caller=caller, progress=progress if wants_progress else None)
    finally:
        CURRENT_CALLER.reset(token)
    # 2026-07-28 requires `resultType`; handshake-era upstreams never send it and the SDK drops
    # it again for handshake-era clients.
    result.setdefault("resultType", "complete")
    return result


async def _relayed_or_error(ctx: Ctx, upstream: UpstreamConnection, request: types.ClientRequest) -> dict[str, Any]:
    """Like `_relayed`, for methods without a tool-error channel: failures become JSON-RPC errors."""
    try:
        return await _relayed(ctx, upstream, request)
    except UpstreamError as exc:
        raise MCPError(types.INTERNAL_ERROR, exc.message) from None


def _unavailable_owner(manager: UpstreamManager, name: str) -> str | None:
    """Why a tool of a configured but currently unavailable upstream cannot be called, if it is one.

    A disconnected upstream serves no tools, but "Unknown tool" would send the user hunting for a
    typo; naming the upstream and its state says what is actually wrong.
    """
    for connection in manager.connections.values():
        prefix = prefix_of(connection.name, connection.config)
        if prefix and name.startswith(prefix + manager.separator) and connection.state is not UpstreamState.CONNECTED:
            detail = f" ({connection.last_error})" if connection.last_error else ""
            return f"upstream {connection.name!r} is {connection.state.value}{detail}; try again once it reconnects"
    return None


def _template_owner(manager: UpstreamManager, uri_template: str) -> UpstreamConnection:
    for template, owner in manager.catalog.template_routes:
        if template == uri_template:
            return manager.connections[owner]
    raise MCPError(INVALID_PARAMS, f"Unknown resource template: {uri_template}")


def _forwardable_meta(meta: types.RequestParamsMeta | None) -> types.RequestParamsMeta | None:
    if not meta:
        return None
    kept = {k: v for k, v in meta.items() if k not in _HOP_META_KEYS and not k.startswith(_RESERVED_META_PREFIX)}
    return types.RequestParamsMeta(**kept) if kept else None  # type: ignore[typeddict-item]


def _tool_error(message: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": message}], "isError": True, "resultType": "complete"}


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
