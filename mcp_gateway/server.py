"""The MCP server clients talk to: the merged catalog out, calls routed to the right upstream.

Built on the SDK's low-level `Server`, whose handlers run per request; that keeps the door open
for per-caller views (virtual keys) without another layer. Every handler reads one immutable
`Catalog` snapshot, so a list and the call that follows see consistent routes.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

import anyio
import mcp_types as types
from mcp import MCPError
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.server.context import CallNext, HandlerResult, ServerMiddleware
from mcp.server.models import InitializationOptions
from mcp.shared.exceptions import NoBackChannelError
from mcp_types import INVALID_PARAMS
from pydantic import ValidationError

from mcp_gateway import __version__
from mcp_gateway.audit import AuditEvent, AuditLog
from mcp_gateway.catalog import explicit_uri
from mcp_gateway.clients import ClientConnections
from mcp_gateway.config import prefix_of
from mcp_gateway.errors import CredentialRequired, UnknownTool, UpstreamError, UpstreamUnavailable
from mcp_gateway.identity import Identity
from mcp_gateway.policy import Policy, View
from mcp_gateway.relay import CURRENT_CALLER, Caller
from mcp_gateway.sdk_server import connection_of
from mcp_gateway.toolmodes.base import ModalTool, ToolAccess, ToolMode
from mcp_gateway.toolmodes.presenter import Presentation, Presenter
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


IDENTITY_SCOPE_KEY = "mcpgw.identity"
"""Where the identity middleware leaves the caller's `Identity` in the ASGI scope's state."""


def identity_of(ctx: Ctx) -> Identity:
    request = ctx.request
    identity = request.scope.get("state", {}).get(IDENTITY_SCOPE_KEY) if request is not None else None
    if not isinstance(identity, Identity):
        # Every /mcp request passes the identity middleware; reaching here is a wiring bug.
        raise MCPError(types.INTERNAL_ERROR, "request has no resolved identity")
    return identity


class ModeHandler(Protocol):
    """A tool mode's meta tools (search, code): answers a call as the caller, via `access`."""

    async def call(self, name: str, arguments: Mapping[str, Any], access: ToolAccess) -> dict[str, Any]: ...


def build_server(
    manager: UpstreamManager,
    clients: ClientConnections,
    policy: Policy,
    audit: AuditLog,
    refresh_identity: Callable[[Identity], Awaitable[Identity | None]] | None = None,
    presenter: Presenter | None = None,
    mode_handlers: Mapping[ToolMode, ModeHandler] | None = None,
    end_session: Callable[[str], Awaitable[None]] | None = None,
) -> GatewayServer:
    page_size = manager.config.server.page_size
    credential_wait = manager.config.server.credential_wait_seconds
    present = presenter or Presenter(lambda upstream: ToolMode.DIRECT, {})
    handlers = mode_handlers or {}

    def view(ctx: Ctx) -> View:
        identity = identity_of(ctx)
        seen = policy.view(identity, manager.catalog)
        clients.register(ctx.session, identity, baseline=lambda: _fingerprints(seen, manager))
        return seen

    async def list_tools(ctx: Ctx, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        items, cursor = _page(present.present(view(ctx), manager.catalog).tools, params, page_size)
        return types.ListToolsResult(tools=items, next_cursor=cursor)

    async def invoke(ctx: Ctx, identity: Identity, name: str, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
        """Call one tool as the caller: policy, failover between replicas, audit. The hot path."""
        started = time.perf_counter()
        route = policy.route_for(identity, manager.catalog, name)
        if route is None:
            unavailable = _unavailable_owner(manager, policy, identity, name)
            audit.record(_event(identity, None, name, started, "denied" if unavailable is None else "error"))
            if unavailable is not None:
                return _tool_error(unavailable)
            raise UnknownTool(name)
        request = types.CallToolRequest(
            params=types.CallToolRequestParams(
                name=route.original,
                arguments=dict(arguments) if arguments is not None else None,
                _meta=_forwardable_meta(ctx.meta),
            )
        )
        candidates = route.candidates
        for attempt, upstream_name in enumerate(candidates, start=1):
            upstream = manager.connections.get(upstream_name)
            try:
                if upstream is None:
                    raise UpstreamUnavailable(upstream_name, f"upstream {upstream_name!r} is not configured")
                result = await _relayed_with_credentials(ctx, upstream, request, credential_wait)
            except CredentialRequired as exc:
                # The link is a secret for the caller's eyes only: not in the audit trail.
                audit.record(_event(identity, upstream_name, route.original, started, "error", "credential required"))
                return _tool_error(exc.message)
            except UpstreamUnavailable as exc:
                if attempt < len(candidates) and not exc.sent:
                    # A replica is down and never saw the request: the next one in the dedupe group
                    # takes it. Once sent, the tool may have run; retrying could do it twice.
                    continue
                audit.record(_event(identity, upstream_name, route.original, started, "error", exc.message))
                return _tool_error(exc.message)
            except UpstreamError as exc:
                audit.record(_event(identity, upstream_name, route.original, started, "error", exc.message))
                return _tool_error(exc.message)
            except MCPError as exc:
                audit.record(_event(identity, upstream_name, route.original, started, "error", exc.error.message))
                raise
            outcome = "tool_error" if result.get("isError") else "ok"
            audit.record(_event(identity, upstream_name, route.original, started, outcome))
            return result
        raise AssertionError("unreachable: a route always has at least one candidate")

    async def call_tool(ctx: Ctx, params: types.CallToolRequestParams) -> dict[str, Any]:
        identity = identity_of(ctx)
        if handlers:
            presentation = present.present(policy.view(identity, manager.catalog), manager.catalog)
            mode = presentation.meta.get(params.name)
            if mode is not None and mode in handlers:
                access = _CallerAccess(presentation, lambda name, args: invoke(ctx, identity, name, args))
                started = time.perf_counter()
                result = await handlers[mode].call(params.name, params.arguments or {}, access)
                outcome = "tool_error" if result.get("isError") else "ok"
                audit.record(_event(identity, None, params.name, started, outcome))
                result.setdefault("resultType", "complete")
                return result
        try:
            return await invoke(ctx, identity, params.name, params.arguments)
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
                name=route.original, arguments=params.arguments, _meta=_forwardable_meta(params.meta)
            )
        )
        return await _relayed_or_error(ctx, manager.connections[route.upstream], request)

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


def _params_path(loc: tuple[int | str, ...]) -> str:
    """`("params", "name")` or `("name",)` → `params.name` (the SDK validates whole requests or just params)."""
    parts = [str(part) for part in loc]
    return ".".join(parts if parts[:1] == ["params"] else ["params", *parts])


async def _relayed(ctx: Ctx, upstream: UpstreamConnection, request: types.ClientRequest) -> dict[str, Any]:
    """Send `request` upstream on behalf of the client request `ctx`, relaying progress back."""
    caller = Caller(
        session=ctx.session,
        request_id=ctx.request_id,
        connection_key=connection_of(ctx.session),
        identity=identity_of(ctx),
        http_request=ctx.request,
    )
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


_URL_ELICITATION = types.ClientCapabilities(
    elicitation=types.ElicitationCapability(url=types.UrlElicitationCapability())
)


async def _relayed_with_credentials(
    ctx: Ctx, upstream: UpstreamConnection, request: types.ClientRequest, wait: float
) -> dict[str, Any]:
    """`_relayed`, and when the caller first has to hand over a credential, ask for it in-band.

    Clients that support URL-mode elicitation (MCP 2025-11-25) get the link as an elicitation;
    if the person accepts and finishes within `wait` seconds the call goes on as if nothing
    happened. Otherwise (or for other clients) the link comes back in a tool error.
    """
    try:
        return await _relayed(ctx, upstream, request)
    except CredentialRequired as needed:
        if wait <= 0 or not ctx.session.check_client_capability(_URL_ELICITATION):
            raise
        if not await _elicit_credential(ctx, needed, wait):
            raise
        return await _relayed(ctx, upstream, request)


async def _elicit_credential(ctx: Ctx, needed: CredentialRequired, wait: float) -> bool:
    """True once the flow behind `needed` has stored a credential; False if declined or not in time."""
    done = needed.done
    elicitation_id = uuid.uuid4().hex  # not the flow id: that is the secret part of the link
    try:
        answer = await ctx.session.elicit_url(
            needed.message, needed.url, elicitation_id, related_request_id=ctx.request_id
        )
    except (MCPError, NoBackChannelError):
        return False
    if answer.action != "accept" or done is None:
        return False
    with anyio.move_on_after(wait):
        await done.wait()
    if not done.is_set():
        return False
    with contextlib.suppress(MCPError, NoBackChannelError, anyio.BrokenResourceError, anyio.ClosedResourceError):
        await ctx.session.send_notification(
            types.ElicitCompleteNotification(
                params=types.ElicitCompleteNotificationParams(elicitation_id=elicitation_id)
            ),
            related_request_id=ctx.request_id,
        )
    return True


async def _relayed_or_error(ctx: Ctx, upstream: UpstreamConnection, request: types.ClientRequest) -> dict[str, Any]:
    """Like `_relayed`, for methods without a tool-error channel: failures become JSON-RPC errors."""
    try:
        return await _relayed(ctx, upstream, request)
    except UpstreamError as exc:
        raise MCPError(types.INTERNAL_ERROR, exc.message) from None


class _CallerAccess:
    """`ToolAccess` for one caller and request: meta tools see and call only what the caller may."""

    def __init__(
        self,
        presentation: Presentation,
        invoke: Callable[[str, Mapping[str, Any] | None], Awaitable[dict[str, Any]]],
    ) -> None:
        self._presentation = presentation
        self._invoke = invoke

    def tools(self, *modes: ToolMode) -> list[ModalTool]:
        return [t for t in self._presentation.modal if not modes or t.mode in modes]

    async def call(self, name: str, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
        return await self._invoke(name, arguments)


def _unavailable_owner(manager: UpstreamManager, policy: Policy, identity: Identity, name: str) -> str | None:
    """Why a tool of a configured but currently unavailable upstream cannot be called, if it is one.

    A disconnected upstream serves no tools, but "Unknown tool" would send the user hunting for a
    typo; naming the upstream and its state says what is actually wrong. Only for upstreams the
    caller may use, so this reveals nothing about the others.
    """
    for connection in manager.connections.values():
        prefix = prefix_of(connection.name, connection.config)
        if (
            prefix
            and name.startswith(prefix + manager.separator)
            and connection.state is not UpstreamState.CONNECTED
            and policy.may_use_upstream(identity, connection.name)
        ):
            detail = f" ({connection.last_error})" if connection.last_error else ""
            return f"upstream {connection.name!r} is {connection.state.value}{detail}; try again once it reconnects"
    return None


def _event(
    identity: Identity, upstream: str | None, tool: str | None, started: float, outcome: str, detail: str | None = None
) -> AuditEvent:
    return AuditEvent(
        identity_mode=identity.mode.value,
        subject=identity.subject,
        virtual_key_id=identity.virtual_key.id if identity.virtual_key else None,
        upstream=upstream,
        tool=tool,
        method="tools/call",
        duration_ms=(time.perf_counter() - started) * 1000,
        outcome=outcome,
        detail=detail[:500] if detail else None,
    )


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
