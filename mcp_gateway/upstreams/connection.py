"""One upstream MCP server: its session, its lists, its state, and calls into it.

The session lives in an *owner task* (`run`): it enters the transport and the `ClientSession`,
publishes the session, and waits until it breaks or the gateway stops. Request handlers call
into the published session from their own tasks. This split matters for HTTP upstreams: when
one dies, the SDK cancels everything inside the transport block, so a call made from inside
it would be cancelled instead of failing cleanly. From outside, calls get a clean error while
the owner notices, marks the upstream disconnected and reconnects with backoff.

While connected, two sibling tasks of the owner watch the upstream: a health monitor (`ping`,
or `tools/list` for servers configured `ping: false`, every `ping_interval`; after
`max_ping_failures` failures in a row the session is dropped) and a periodic re-list of tools,
prompts and resources every `sync_interval`, for servers that change them without notifying.

State machine (each change is kept in `history` and rebuilds the catalog, so clients hear
`list_changed` whenever what they see changes)::

    disabled                      (enabled: false; never leaves this state)
    connecting ──► connected ──► disconnected ──(backoff)──► connecting …
         │                            ▲
         └──── failed attempt ────────┘
    any ──► needs_reauth ──(reconnect())──► connecting
"""

from __future__ import annotations

import enum
import functools
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from datetime import UTC, datetime
from typing import Any, NamedTuple

import anyio
import anyio.abc
import httpx2
import mcp_types as types
from mcp import ClientSession, MCPError
from mcp.client.session import ClientRequestContext
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import NoBackChannelError
from mcp.shared.message import SessionMessage
from mcp_types import CONNECTION_CLOSED, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR, REQUEST_TIMEOUT
from pydantic import TypeAdapter, ValidationError

from mcp_gateway import __version__
from mcp_gateway.config import HttpUpstream, SseUpstream, StdioUpstream
from mcp_gateway.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from mcp_gateway.relay import Caller, InFlight
from mcp_gateway.supervisor import Supervisor
from mcp_gateway.tracing import upstream_span
from mcp_gateway.upstreams.direct import DirectHttp, NotDirect
from mcp_gateway.upstreams.streams import MergedInbound, ReceiveStreamBase
from mcp_gateway.upstreams.transports import Streams, open_transport

logger = logging.getLogger(__name__)

_RAW_RESULT: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])
"""Results are relayed as the upstream sent them: no model round trip, nothing dropped."""

_MAX_LIST_PAGES = 1000
_CANCEL_SECONDS = 2.0
"""Bound on sending the courtesy cancel of an abandoned direct call."""
HISTORY_LENGTH = 50
"""State changes kept per upstream (older ones are dropped)."""

LIVE_SETTINGS = frozenset(
    {
        "ping",
        "ping_interval",
        "ping_timeout",
        "max_ping_failures",
        "sync_interval",
        "reconnect_backoff_start",
        "reconnect_backoff_max",
    }
)
"""Config fields read afresh on every use: changing them needs no reconnect."""


class UpstreamState(enum.Enum):
    """Where one upstream is in its lifecycle; only `connected` serves tools, prompts and resources."""

    CONNECTING = "connecting"  # starting or reconnecting; serves nothing yet
    CONNECTED = "connected"  # initialized, listed and answering health checks; serves its lists
    DISCONNECTED = "disconnected"  # failed to start, lost or unhealthy; retried with backoff; serves nothing
    # The upstream refused its credentials and only a person can fix that (per-user OAuth
    # consent, an expired refresh token): serves nothing and is not retried on a timer, since
    # every attempt would fail the same way; `reconnect()` (after signing in) tries again.
    NEEDS_REAUTH = "needs_reauth"
    DISABLED = "disabled"  # `enabled: false` in the config; never started


class StateChange(NamedTuple):
    """One entry of an upstream's timeline."""

    at: datetime  # UTC
    state: UpstreamState
    reason: str


class ListKind(enum.Enum):
    TOOLS = "tools"
    PROMPTS = "prompts"
    RESOURCES = "resources"


ChangeCallback = Callable[["UpstreamConnection", frozenset[ListKind]], Awaitable[None]]
ResourceUpdatedCallback = Callable[["UpstreamConnection", str], Awaitable[None]]
TransportOpener = Callable[[StdioUpstream | HttpUpstream | SseUpstream], AbstractAsyncContextManager[Streams]]
Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class UpstreamConnection:
    """Owns the session to one upstream; safe to call from any task.

    `open_transport` and `clock` are injectable so unit tests can run an upstream in memory and
    read a deterministic timeline.
    """

    def __init__(
        self,
        name: str,
        config: StdioUpstream | HttpUpstream | SseUpstream,
        *,
        on_change: ChangeCallback,
        on_resource_updated: ResourceUpdatedCallback,
        open_transport: TransportOpener = open_transport,
        clock: Clock = _utcnow,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.state = UpstreamState.CONNECTING if config.enabled else UpstreamState.DISABLED
        self.last_error: str | None = None
        self.history: deque[StateChange] = deque(maxlen=HISTORY_LENGTH)
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
        self._open_transport = open_transport
        self._clock = clock
        self._supervisor = supervisor or Supervisor()
        self._session: ClientSession | None = None
        self._direct: tuple[DirectHttp, MergedInbound] | None = None
        """Plain POSTs for tools/call beside the session (streamable HTTP only), see `direct.py`."""
        self._wake = anyio.Event()
        self._stopping = False
        self._reconnect_now = anyio.Event()
        self._reconnect_requested = False
        self._drop_reason: str | None = None
        self._reauth_reason: str | None = None
        self.first_attempt_done = anyio.Event()
        self.history.append(
            StateChange(self._clock(), self.state, "starting" if config.enabled else "enabled: false in the config")
        )

    # --- lifecycle ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, serve until broken, reconnect with backoff; returns only when cancelled or stopped."""
        if not self.config.enabled:
            self.first_attempt_done.set()
            return
        try:
            await self._run()
        except Exception:
            # A bug, not an upstream failure (those are handled inside): stop serving at once so
            # clients stop seeing its tools; the supervisor logs it and starts the task again.
            await self._lose(UpstreamState.DISCONNECTED, "owner task failed; restarting")
            raise
        finally:
            # However the owner task ends (stopped, cancelled, crashed), what is reported must be
            # what is true: no session, nothing served. Restarted by the supervisor, it reconnects.
            self._session = None
            self._direct = None
            if self.state in (UpstreamState.CONNECTED, UpstreamState.CONNECTING):
                self._drop_lists()
                self._record(UpstreamState.DISCONNECTED, "stopped" if self._stopping else "owner task ended")
            self.first_attempt_done.set()

    async def _run(self) -> None:
        backoff = self.config.reconnect_backoff_start
        reason = "starting"
        while not self._stopping:
            self._supervisor.checkpoint(f"upstream:{self.name}")
            await self._enter(UpstreamState.CONNECTING, reason)
            was_connected = False
            try:
                was_connected = await self._connect_and_serve()
            except Exception as exc:  # the owner task must survive anything an upstream does
                self.last_error = _describe(exc)
                logger.warning("upstream %s: %s", self.name, self.last_error)
            finally:
                self._session = None
                self._direct = None
            self.first_attempt_done.set()
            if self._stopping:
                self._drop_lists()
                self._record(UpstreamState.DISCONNECTED, "stopped")
                break
            if self._reauth_reason is not None:
                self.last_error = self._reauth_reason  # what a person must do beats the HTTP error
                await self._lose(UpstreamState.NEEDS_REAUTH, self._reauth_reason)
                # Retrying on a timer cannot help: wait until someone asks for a reconnect.
                await self._reconnect_now.wait()
                self._reconnect_now = anyio.Event()
                self._reauth_reason = None
                backoff, reason = self.config.reconnect_backoff_start, "reconnect requested"
                continue
            await self._lose(UpstreamState.DISCONNECTED, self._why_down())
            if was_connected:
                backoff = self.config.reconnect_backoff_start
            delay = backoff * random.uniform(0.8, 1.2)
            logger.info("upstream %s: reconnecting in %.1fs", self.name, delay)
            reason = "retrying after backoff"
            with anyio.move_on_after(delay):
                await self._reconnect_now.wait()
                reason = "reconnect requested"
            self._reconnect_now = anyio.Event()
            backoff = min(backoff * 2, self.config.reconnect_backoff_max)

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        self._reconnect_now.set()

    def reconnect(self) -> None:
        """Drop the current session (if any) and connect again right away."""
        self._reconnect_requested = True
        self._wake.set()
        self._reconnect_now.set()

    def needs_reauth(self, reason: str) -> None:
        """Drop the session and wait for `reconnect()`: the credentials need a person (see `NEEDS_REAUTH`)."""
        self._reauth_reason = reason
        self._wake.set()

    async def _connect_and_serve(self) -> bool:
        self._wake = anyio.Event()
        self._reconnect_requested = False
        self._drop_reason = None
        async with AsyncExitStack() as stack:
            # Transports connect lazily (or bound their own connect time), so the deadline covers
            # the first exchange; a cancel scope cannot wrap contexts that stay entered after it.
            read, write, *extra = await stack.enter_async_context(self._open_transport(self.config))
            inbound: _WatchedStream | MergedInbound = _WatchedStream(read, self._wake)
            direct = extra[0] if extra and isinstance(extra[0], DirectHttp) else None
            if direct is not None:
                inbound = MergedInbound(read, self._wake)
                pumps = await stack.enter_async_context(anyio.create_task_group())
                stack.callback(pumps.cancel_scope.cancel)  # runs first on the way out: the pump never ends by itself
                pumps.start_soon(inbound.pump, name=f"inbound:{self.name}")
            session = await stack.enter_async_context(
                ClientSession(
                    inbound,
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
            self._direct = (direct, inbound) if direct is not None and isinstance(inbound, MergedInbound) else None
            self.last_error = None
            self._reauth_reason = None  # whatever was asked for, these credentials work
            logger.info(
                "upstream %s: connected (%s, protocol %s, %d tools)",
                self.name,
                self.config.transport,
                self.protocol_version,
                len(self.tools),
            )
            await self._enter(UpstreamState.CONNECTED, f"{len(self.tools)} tools, protocol {self.protocol_version}")
            self.first_attempt_done.set()
            async with anyio.create_task_group() as watchers:
                self._supervisor.spawn(watchers, f"health:{self.name}", functools.partial(self._watch_health, session))
                self._supervisor.spawn(watchers, f"sync:{self.name}", self._sync_lists)
                await self._wake.wait()
                # Say so before anything is torn down: closing an unresponsive session can take
                # a while (a health probe's courtesy cancel, the HTTP DELETE), and clients
                # should stop seeing its tools at once.
                await self._leave_connected()
                watchers.cancel_scope.cancel()
            return True

    async def _leave_connected(self) -> None:
        if self._stopping:
            return
        if self._reauth_reason is not None:
            logger.warning("upstream %s: needs re-authorization: %s", self.name, self._reauth_reason)
            await self._lose(UpstreamState.NEEDS_REAUTH, self._reauth_reason)
            return
        if self._reconnect_requested:
            logger.info("upstream %s: reconnecting on request", self.name)
        else:
            self.last_error = self._drop_reason or (
                "the server process exited" if self.config.transport == "stdio" else "connection lost"
            )
            logger.warning("upstream %s: %s", self.name, self.last_error)
        await self._lose(UpstreamState.DISCONNECTED, self._why_down())

    def _why_down(self) -> str:
        if self._reconnect_requested:
            return "reconnect requested"
        return self.last_error or "connection lost"

    # --- state and timeline -------------------------------------------------------------------

    def _record(self, state: UpstreamState, reason: str) -> bool:
        """Set the state and log the change in `history`; False when it is not a change."""
        if state is self.state:
            return False
        self.state = state
        self.history.append(StateChange(self._clock(), state, reason))
        return True

    async def _enter(self, state: UpstreamState, reason: str) -> None:
        """Change state and let the manager rebuild the catalog (clients hear of what they lose or gain)."""
        if self._record(state, reason):
            await self._on_change(self, frozenset(ListKind))

    async def _lose(self, state: UpstreamState, reason: str) -> None:
        """Stop serving: drop the session and lists, then change state (a no-op when already there)."""
        self._session = None
        self._direct = None
        self._drop_lists()
        await self._enter(state, reason)

    def _drop_lists(self) -> None:
        self._set_list(ListKind.TOOLS, tools=[])
        self._set_list(ListKind.PROMPTS, prompts=[])
        self._set_list(ListKind.RESOURCES, resources=[], resource_templates=[])

    # --- health and sync ----------------------------------------------------------------------

    async def _watch_health(self, session: ClientSession) -> None:
        """Probe every `ping_interval`; after `max_ping_failures` failures in a row, drop the session."""
        failures = 0
        async with anyio.create_task_group() as probes:
            while True:
                await anyio.sleep(self.config.ping_interval)
                self._supervisor.checkpoint(f"health:{self.name}")
                problem = await self._check(session, probes)
                if problem is None:
                    failures = 0
                    continue
                failures += 1
                limit = self.config.max_ping_failures
                logger.warning("upstream %s: health check failed (%d/%d): %s", self.name, failures, limit, problem)
                if failures >= limit:
                    self._drop_reason = f"{failures} health checks failed in a row (last: {problem})"
                    self._wake.set()
                    return

    async def _check(self, session: ClientSession, probes: anyio.abc.TaskGroup) -> str | None:
        """One health check: None when the upstream answered in time, else what went wrong.

        The probe runs in its own task: when it times out the SDK sends a courtesy cancel, which
        can itself wait on a wedged transport, and the monitor must keep its own pace.
        """
        timeout = self.config.ping_timeout
        what = "ping" if self.config.ping else "tools/list"
        outcome: list[str | None] = []
        done = anyio.Event()

        async def probe() -> None:
            try:
                with anyio.fail_after(timeout):
                    outcome.append(await self._probe(session))
            except TimeoutError:
                pass
            finally:
                done.set()

        probes.start_soon(probe)
        with anyio.move_on_after(timeout):
            await done.wait()
        return outcome[0] if outcome else f"no answer to {what} within {timeout:g}s"

    async def _probe(self, session: ClientSession) -> str | None:
        try:
            if self.config.ping:
                await session.send_ping()
            else:
                await session.list_tools()
        except MCPError as exc:
            if exc.error.code == METHOD_NOT_FOUND:
                return None  # an answer all the same: the server is alive, it just lacks the method
            if _session_gone(exc):
                self._drop_reason = "the upstream no longer knows our session (it restarted?)"
                self._wake.set()  # no point in asking again: only a new session helps
            return f"{'ping' if self.config.ping else 'tools/list'} failed: {exc.error.message}"
        except ValidationError:
            return "malformed answer to a health check"
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream):
            return "the connection is closed"
        return None

    async def _sync_lists(self) -> None:
        """Re-list everything every `sync_interval`; catches servers that change lists silently."""
        while (interval := self.config.sync_interval) > 0:
            await anyio.sleep(interval)
            self._supervisor.checkpoint(f"sync:{self.name}")
            with anyio.move_on_after(self.config.timeout) as scope:
                await self.refresh(frozenset(ListKind))
            if scope.cancelled_caught:
                logger.warning("upstream %s: periodic re-list timed out after %gs", self.name, self.config.timeout)
        await anyio.sleep_forever()

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
        except (MCPError, UpstreamError, ValidationError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            why = _describe(exc)
            logger.warning("upstream %s: could not refresh %s: %s", self.name, sorted(k.value for k in kinds), why)
            return
        if self._session is not session:
            self._drop_lists()  # the session was dropped meanwhile: these lists are not served
            return
        await self._on_change(self, kinds)

    # --- calls --------------------------------------------------------------------------------

    @property
    def calls_directly(self) -> bool:
        """Whether tools/call goes out as a plain POST on the session (see `direct.py`)."""
        return self._direct is not None and self._direct[0].ready

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
        with self.in_flight.track(caller), upstream_span(self.name, self.config.transport, request) as traced:
            try:
                direct = self._direct
                if direct is not None and progress is None and request.method == "tools/call" and direct[0].ready:
                    try:
                        return traced.result(await self._direct_request(session, *direct, request))
                    except NotDirect:
                        pass  # the upstream redirects: the SDK follows same-origin redirects
                result = await session.send_request(
                    request,
                    _RAW_RESULT,  # type: ignore[type-var]  # a TypeAdapter of dict works at runtime
                    request_read_timeout_seconds=self.config.timeout,
                    progress_callback=progress,
                )
                return traced.result(result)
            except MCPError as exc:
                if exc.error.code == REQUEST_TIMEOUT:
                    raise UpstreamTimeout(
                        self.name,
                        f"upstream {self.name!r} did not answer {request.method} within {self.config.timeout:g}s",
                    ) from None
                if _session_gone(exc):
                    # Rejected before it ran: safe for a replica to take it while we reconnect.
                    self._drop_reason = "the upstream no longer knows our session (it restarted?)"
                    self._wake.set()
                    raise UpstreamUnavailable(
                        self.name, f"upstream {self.name!r} lost its session; reconnecting, try again"
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

    async def _direct_request(
        self, session: ClientSession, direct: DirectHttp, inbound: MergedInbound, request: types.ClientRequest
    ) -> dict[str, Any]:
        """`request` as one plain POST (see `direct.py`), failing the way `session.send_request` fails."""
        request_id = direct.next_id()
        params = request.params.model_dump(by_alias=True, mode="json", exclude_none=True) if request.params else {}

        async def on_message(message: types.JSONRPCMessage) -> None:
            if isinstance(message, types.JSONRPCNotification) and message.method == "notifications/message":
                # Relayed before the answer goes back, as the SDK session's logging callback would be.
                try:
                    params = types.LoggingMessageNotificationParams.model_validate(message.params)
                except ValidationError:
                    logger.debug("upstream %s: malformed log message dropped", self.name)
                    return
                await self._relay_log(params)
            else:
                await inbound.deliver(SessionMessage(message))

        try:
            with anyio.fail_after(self.config.timeout):
                return await direct.request(request_id, request.method, params, on_message)
        except TimeoutError:
            await self._cancel_upstream(session, request_id, "timed out")
            raise MCPError(REQUEST_TIMEOUT, f"no answer within {self.config.timeout:g}s") from None
        except anyio.get_cancelled_exc_class():
            await self._cancel_upstream(session, request_id, "the client cancelled")
            raise
        except httpx2.TransportError as exc:
            # As with the SDK transport, a failed exchange ends the session: reconnect.
            self._drop_reason = f"HTTP connection failed: {_describe(exc)}"
            self._wake.set()
            if isinstance(exc, httpx2.ConnectError):
                raise UpstreamUnavailable(
                    self.name, f"upstream {self.name!r} did not answer {request.method}: the connection closed"
                ) from None
            raise MCPError(CONNECTION_CLOSED, "Connection closed") from None

    async def _cancel_upstream(self, session: ClientSession, request_id: str, reason: str) -> None:
        """The courtesy `notifications/cancelled` the SDK sends for a request it stops waiting for."""
        notification = types.CancelledNotification(
            params=types.CancelledNotificationParams(request_id=request_id, reason=reason)
        )
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CANCEL_SECONDS):
            try:
                await session.send_notification(notification)
            except Exception as exc:  # the session may be gone already; the upstream will notice
                logger.debug("upstream %s: could not send cancel for %s: %s", self.name, request_id, exc)

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
        if not caller.channel.supports(capability):
            return types.ErrorData(
                code=INVALID_REQUEST, message=f"the client connected to mcpgw does not support {what}"
            )
        try:
            return await caller.channel.request(request, result_type)
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
        await caller.channel.notify(types.LoggingMessageNotification(params=params))

    def summary(self) -> Mapping[str, Any]:
        """What /readyz, the admin API and `mcpgw upstream list` show; `history` is oldest first."""
        return {
            "name": self.name,
            "transport": self.config.transport,
            "state": self.state.value,
            "tools": len(self.tools),
            "prompts": len(self.prompts),
            "resources": len(self.resources) + len(self.resource_templates),
            "protocol_version": self.protocol_version,
            "error": self.last_error,
            "history": [
                {"at": change.at.isoformat(), "state": change.state.value, "reason": change.reason}
                for change in self.history
            ],
        }


class _WatchedStream(ReceiveStreamBase):
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

    async def aclose(self) -> None:
        await self._inner.aclose()

    def close(self) -> None:
        self._inner.close()


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


_SESSION_GONE = frozenset({"session not found", "session terminated"})
_SESSION_GONE_CODES = frozenset({INVALID_REQUEST, -32001})  # -32001: the TypeScript SDK's servers


def _session_gone(exc: MCPError) -> bool:
    """HTTP 404 for our session id: the server forgot the session (it restarted, or reaped it).

    SDK servers answer with a JSON-RPC error "Session not found"; for a bare 404 the client SDK
    makes up "Session terminated".
    """
    return exc.error.code in _SESSION_GONE_CODES and exc.error.message.strip().lower() in _SESSION_GONE


def _describe(exc: BaseException) -> str:
    """A one-line, human message for an exception (unwrapping exception groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, TimeoutError):
        return "timed out while connecting"
    if isinstance(exc, FileNotFoundError):
        return f"command not found: {exc.filename or exc}"
    text = (str(exc) or type(exc).__name__).splitlines()[0]
    if isinstance(exc, httpx2.TransportError):
        return f"HTTP connection failed: {text}" + (f" ({type(exc).__name__})" if text != type(exc).__name__ else "")
    if isinstance(exc, MCPError):
        if exc.error.code == PARSE_ERROR:
            return "upstream error: its answer is not JSON-RPC (not an MCP endpoint?)"
        return f"upstream error: {text}"
    return f"{type(exc).__name__}: {text}"
