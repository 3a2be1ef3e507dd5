"""One upstream MCP server: its session, its lists, its state, and calls into it.

The session lives in an *owner task* (`run`): it enters the transport and the `ClientSession`,
publishes the session, and waits until it breaks or the gateway stops. Request handlers call
into the published session from their own tasks. This split matters for HTTP upstreams: when
one dies, the SDK cancels everything inside the transport block, so a call made from inside
it would be cancelled instead of failing cleanly. From outside, calls get a clean error while
the owner notices, marks the upstream disconnected and reconnects with backoff.
"""

from __future__ import annotations

import enum
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any

import anyio
import mcp_types as types
from mcp import ClientSession, MCPError
from mcp.client.session import ClientRequestContext
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import NoBackChannelError
from mcp.shared.message import ServerMessageMetadata
from mcp_types import CONNECTION_CLOSED, INVALID_REQUEST, METHOD_NOT_FOUND, REQUEST_TIMEOUT
from pydantic import TypeAdapter

from mcp_gateway import __version__
from mcp_gateway.config import HttpUpstream, SseUpstream, StdioUpstream
from mcp_gateway.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from mcp_gateway.relay import Caller, InFlight
from mcp_gateway.upstreams.transports import open_transport

logger = logging.getLogger(__name__)

_RAW_RESULT: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])
"""Results are relayed as the upstream sent them: no model round trip, nothing dropped."""

_MAX_LIST_PAGES = 1000
_RECONNECT_BACKOFF_START = 1.0
_RECONNECT_BACKOFF_MAX = 30.0


class UpstreamState(enum.Enum):
    CONNECTING = "connecting"  # starting or reconnecting; serves no tools yet
    CONNECTED = "connected"  # initialized and listed; serves its tools
    DISCONNECTED = "disconnected"  # failed to start or lost; retried with backoff; serves no tools
    DISABLED = "disabled"  # `enabled: false` in the config; never started


class ListKind(enum.Enum):
    TOOLS = "tools"
    PROMPTS = "prompts"
    RESOURCES = "resources"


ChangeCallback = Callable[["UpstreamConnection", frozenset[ListKind]], Awaitable[None]]
ResourceUpdatedCallback = Callable[["UpstreamConnection", str], Awaitable[None]]


class UpstreamConnection:
    """Owns the session to one upstream; safe to call from any task."""

    def __init__(
        self,
        name: str,
        config: StdioUpstream | HttpUpstream | SseUpstream,
        *,
        on_change: ChangeCallback,
        on_resource_updated: ResourceUpdatedCallback,
    ) -> None:
        self.name = name
        self.config = config
        self.state = UpstreamState.CONNECTING if config.enabled else UpstreamState.DISABLED
        self.last_error: str | None = None
        self.tools: list[types.Tool] = []
        self.prompts: list[types.Prompt] = []
        self.resources: list[types.Resource] = []
        self.resource_templates: list[types.ResourceTemplate] = []
        self.versions: dict[ListKind, int] = dict.fromkeys(ListKind, 0)
        """Bumped when a list's content changes, so clients are only told about real changes."""
        self.capabilities: types.ServerCapabilities | None = None
        self.server_info: types.Implementation | None = None
        self.protocol_version: str | None = None
        self.in_flight = InFlight()
        self._on_change = on_change
        self._on_resource_updated = on_resource_updated
        self._session: ClientSession | None = None
        self._wake = anyio.Event()
        self._stopping = False
        self._reconnect_now = anyio.Event()
        self._reconnect_requested = False
        self.first_attempt_done = anyio.Event()

    # --- lifecycle ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, serve until broken, reconnect with backoff; returns only when cancelled or stopped."""
        if not self.config.enabled:
            self.first_attempt_done.set()
            return
        backoff = _RECONNECT_BACKOFF_START
        while not self._stopping:
            self.state = UpstreamState.CONNECTING
            was_connected = False
            try:
                was_connected = await self._connect_and_serve()
            except Exception as exc:  # the owner task must survive anything an upstream does
                self.last_error = _describe(exc)
                logger.warning("upstream %s: %s", self.name, self.last_error)
            finally:
                self._session = None
            had_items = bool(self.tools or self.prompts or self.resources or self.resource_templates)
            self._set_list(ListKind.TOOLS, tools=[])
            self._set_list(ListKind.PROMPTS, prompts=[])
            self._set_list(ListKind.RESOURCES, resources=[], resource_templates=[])
            self.state = UpstreamState.DISCONNECTED
            self.first_attempt_done.set()
            if self._stopping:
                break
            if had_items:
                await self._on_change(self, frozenset(ListKind))
            if was_connected:
                backoff = _RECONNECT_BACKOFF_START
            delay = backoff * random.uniform(0.8, 1.2)
            logger.info("upstream %s: reconnecting in %.1fs", self.name, delay)
            with anyio.move_on_after(delay):
                await self._reconnect_now.wait()
            self._reconnect_now = anyio.Event()
            backoff = min(backoff * 2, _RECONNECT_BACKOFF_MAX)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self._reconnect_now.set()

    def reconnect(self) -> None:
        """Drop the current session (if any) and connect again right away."""
        self._reconnect_requested = True
        self._wake.set()
        self._reconnect_now.set()

    async def _connect_and_serve(self) -> bool:
        self._wake = anyio.Event()
        self._reconnect_requested = False
        async with AsyncExitStack() as stack:
            # Transports connect lazily (or bound their own connect time), so the deadline covers
            # the first exchange; a cancel scope cannot wrap contexts that stay entered after it.
            read, write = await stack.enter_async_context(open_transport(self.config))
            session = await stack.enter_async_context(
                ClientSession(
                    _WatchedStream(read, self._wake),
                    write,
                    sampling_callback=self._relay_sampling,
                    elicitation_callback=self._relay_elicitation,
                    list_roots_callback=self._relay_list_roots,
                    logging_callback=self._relay_log,
                    message_handler=self._on_message,
                    client_info=types.Implementation(name="mcpgw", version=__version__),
                )
            )
            with anyio.fail_after(self.config.connect_timeout):
                result = await session.initialize()
                self.capabilities = result.capabilities
                self.server_info = result.server_info
                self.protocol_version = result.protocol_version
                await self._refresh(session, frozenset(ListKind))
            self._session = session
            self.state = UpstreamState.CONNECTED
            self.last_error = None
            logger.info(
                "upstream %s: connected (%s, protocol %s, %d tools)",
                self.name,
                self.config.transport,
                self.protocol_version,
                len(self.tools),
            )
            await self._on_change(self, frozenset(ListKind))
            self.first_attempt_done.set()
            await self._wake.wait()
            if self._reconnect_requested:
                logger.info("upstream %s: reconnecting on request", self.name)
            elif not self._stopping:
                self.last_error = "connection lost"
                logger.warning("upstream %s: connection lost", self.name)
            return True

    # --- lists --------------------------------------------------------------------------------

    async def _refresh(self, session: ClientSession, kinds: frozenset[ListKind]) -> None:
        caps = self.capabilities or types.ServerCapabilities()
        if ListKind.TOOLS in kinds and caps.tools is not None:
            self._set_list(ListKind.TOOLS, tools=await _fetch_all(session.list_tools, "tools"))
        if ListKind.PROMPTS in kinds and caps.prompts is not None:
            self._set_list(ListKind.PROMPTS, prompts=await _fetch_all(session.list_prompts, "prompts"))
        if ListKind.RESOURCES in kinds and caps.resources is not None:
            self._set_list(
                ListKind.RESOURCES,
                resources=await _fetch_all(session.list_resources, "resources"),
                resource_templates=await _fetch_all(session.list_resource_templates, "resource_templates"),
            )

    def _set_list(self, kind: ListKind, **lists: list[Any]) -> None:
        """Replace lists, bumping the kind's version only when the content really changed."""
        if any(getattr(self, name) != value for name, value in lists.items()):
            for name, value in lists.items():
                setattr(self, name, value)
            self.versions[kind] += 1

    async def refresh(self, kinds: frozenset[ListKind]) -> None:
        session = self._session
        if session is None:
            return
        try:
            await self._refresh(session, kinds)
        except (MCPError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            logger.warning("upstream %s: could not refresh %s: %s", self.name, sorted(k.value for k in kinds), exc)
            return
        await self._on_change(self, kinds)

    # --- calls --------------------------------------------------------------------------------

    def _live_session(self) -> ClientSession:
        session = self._session
        if session is None or self.state is not UpstreamState.CONNECTED:
            detail = f": {self.last_error}" if self.last_error else ""
            raise UpstreamUnavailable(self.name, f"upstream {self.name!r} is {self.state.value}{detail}")
        return session

    async def request(
        self,
        request: types.ClientRequest,
        *,
        caller: Caller | None = None,
        progress: ProgressFnT | None = None,
    ) -> dict[str, Any]:
        """Send one request and return the upstream's result as it sent it (a wire dict).

        Raises:
            UpstreamUnavailable: not connected, or the connection closed during the call.
            UpstreamTimeout: no answer within the upstream's `timeout`.
            MCPError: the upstream answered with a JSON-RPC error (passed on unchanged).
        """
        session = self._live_session()
        with self.in_flight.track(caller):
            try:
                return await session.send_request(
                    request,
                    _RAW_RESULT,  # type: ignore[type-var]  # a TypeAdapter of dict works at runtime
                    request_read_timeout_seconds=self.config.timeout,
                    progress_callback=progress,
                )
            except MCPError as exc:
                if exc.error.code == REQUEST_TIMEOUT:
                    raise UpstreamTimeout(
                        self.name,
                        f"upstream {self.name!r} did not answer {request.method} within {self.config.timeout:g}s",
                    ) from None
                if exc.error.code == CONNECTION_CLOSED:
                    self._wake.set()
                    why = "mcpgw is shutting down" if self._stopping else "the connection closed"
                    raise UpstreamUnavailable(
                        self.name, f"upstream {self.name!r} did not answer {request.method}: {why}", sent=True
                    ) from None
                raise
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream):
                self._wake.set()
                raise UpstreamUnavailable(
                    self.name, f"upstream {self.name!r} connection is closed", sent=True
                ) from None

    async def notify(self, notification: types.ClientNotification) -> None:
        session = self._session
        if session is not None:
            await session.send_notification(notification)

    # --- messages the upstream sends us -------------------------------------------------------

    async def _on_message(self, message: types.ServerNotification | Exception) -> None:
        if isinstance(message, Exception):
            logger.warning("upstream %s: transport error: %s", self.name, _describe(message))
            return
        match message:
            case types.ToolListChangedNotification():
                await self.refresh(frozenset({ListKind.TOOLS}))
            case types.PromptListChangedNotification():
                await self.refresh(frozenset({ListKind.PROMPTS}))
            case types.ResourceListChangedNotification():
                await self.refresh(frozenset({ListKind.RESOURCES}))
            case types.ResourceUpdatedNotification(params=params):
                await self._on_resource_updated(self, str(params.uri))
            case _:
                pass

    async def _relay_request(
        self, request: types.ServerRequest, result_type: type[Any], capability: types.ClientCapabilities, what: str
    ) -> Any:
        caller = self.in_flight.attribute()
        if caller is None:
            return types.ErrorData(
                code=INVALID_REQUEST,
                message=f"mcpgw cannot relay {what}: no single client call to {self.name!r} is in progress",
            )
        if not caller.session.check_client_capability(capability):
            return types.ErrorData(
                code=INVALID_REQUEST, message=f"the client connected to mcpgw does not support {what}"
            )
        try:
            return await caller.session.send_request(
                request, result_type, metadata=ServerMessageMetadata(related_request_id=caller.request_id)
            )
        except MCPError as exc:
            return exc.error
        except NoBackChannelError:
            return types.ErrorData(code=INVALID_REQUEST, message=f"the client connection cannot receive {what}")

    async def _relay_sampling(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult | types.ErrorData:
        result: types.CreateMessageResult | types.ErrorData = await self._relay_request(
            types.CreateMessageRequest(params=params),
            types.CreateMessageResult,
            types.ClientCapabilities(sampling=types.SamplingCapability()),
            "sampling",
        )
        return result

    async def _relay_elicitation(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        result: types.ElicitResult | types.ErrorData = await self._relay_request(
            types.ElicitRequest(params=params),
            types.ElicitResult,
            types.ClientCapabilities(elicitation=types.ElicitationCapability()),
            "elicitation",
        )
        return result

    async def _relay_list_roots(self, context: ClientRequestContext) -> types.ListRootsResult | types.ErrorData:
        result: types.ListRootsResult | types.ErrorData = await self._relay_request(
            types.ListRootsRequest(),
            types.ListRootsResult,
            types.ClientCapabilities(roots=types.RootsCapability()),
            "roots/list",
        )
        return result

    async def _relay_log(self, params: types.LoggingMessageNotificationParams) -> None:
        caller = self.in_flight.attribute()
        if caller is None:
            logger.debug("upstream %s log (%s), no caller to relay to", self.name, params.level)
            return
        await caller.session.send_notification(
            types.LoggingMessageNotification(params=params), related_request_id=caller.request_id
        )

    def summary(self) -> Mapping[str, Any]:
        """What /readyz and `mcpgw upstream list` show."""
        return {
            "name": self.name,
            "transport": self.config.transport,
            "state": self.state.value,
            "tools": len(self.tools),
            "prompts": len(self.prompts),
            "resources": len(self.resources) + len(self.resource_templates),
            "protocol_version": self.protocol_version,
            "error": self.last_error,
        }


class _WatchedStream:
    """Wraps the transport's read stream to notice the end of the connection (e.g. a stdio child exiting)."""

    def __init__(self, inner: Any, on_end: anyio.Event) -> None:
        self._inner = inner
        self._on_end = on_end

    @property
    def last_context(self) -> Any:
        # The SDK reads this to run handlers in the sender's context (exact caller attribution).
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_end.set()
            raise

    def __aiter__(self) -> _WatchedStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._inner.aclose()

    def close(self) -> None:
        self._inner.close()

    async def __aenter__(self) -> _WatchedStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def _fetch_all(list_method: Callable[..., Awaitable[Any]], attribute: str) -> list[Any]:
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


def _describe(exc: BaseException) -> str:
    """A one-line, human message for an exception (unwrapping exception groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, TimeoutError):
        return "timed out while connecting"
    if isinstance(exc, FileNotFoundError):
        return f"command not found: {exc.filename or exc}"
    text = str(exc) or type(exc).__name__
    if isinstance(exc, MCPError):
        return f"upstream error: {text}"
    return f"{type(exc).__name__}: {text}"
