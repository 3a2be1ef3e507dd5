"""One upstream MCP server: its session, its lists, its state, and calls into it.

The session lives in an *owner task* (`run`): it enters the transport and the `ClientSession`,
publishes the session, and waits until it breaks or the gateway stops. Request handlers call
into the published session from their own tasks. This split matters for HTTP upstreams: when
one dies, the SDK cancels everything inside the transport block, so a call made from inside
it would be cancelled instead of failing cleanly. From outside, calls get a clean error while
the owner notices, marks the upstream disconnected and reconnects with backoff.

While connected, two sibling tasks of the owner watch the upstream (`health.py`): a health
monitor (`ping`, or `tools/list` for servers configured `ping: false`, every `ping_interval`;
after `max_ping_failures` failures in a row the session is dropped) and a periodic re-list of
tools, prompts and resources every `sync_interval`, for servers that change them without
notifying. What the upstream asks of its client during a call (sampling, elicitation, roots,
logs) is answered by the caller, through `relay.RelayToCaller`.

Why this module is longer than most: lifecycle, state, lists and calls all read and write the
one published session and its state together (a call that finds the session gone wakes the
owner; the owner drops lists when it leaves `connected`); split apart, each would reach into
the others' private state.

State machine (each change is kept in `history` and rebuilds the catalog, so clients hear
`list_changed` whenever what they see changes)::

    disabled                      (enabled: false; never leaves this state)
    connecting ──► connected ──► disconnected ──(backoff)──► connecting …
         │                            ▲
         └──── failed attempt ────────┘
    any ──► needs_reauth ──(reconnect())──► connecting
"""

from __future__ import annotations

import asyncio
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
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.message import SessionMessage
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT
from pydantic import TypeAdapter, ValidationError

from mcp_gateway import __version__
from mcp_gateway.config import HttpUpstream, SseUpstream, StdioUpstream
from mcp_gateway.errors import SessionLost, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from mcp_gateway.relay import Caller, InFlight, RelayToCaller
from mcp_gateway.supervisor import Supervisor
from mcp_gateway.tracing import upstream_span
from mcp_gateway.upstreams.direct import DirectHttp, NotDirect
from mcp_gateway.upstreams.failures import describe, session_gone
from mcp_gateway.upstreams.health import SESSION_GONE, sync_lists, watch_health
from mcp_gateway.upstreams.lists import ListKind, fetch_all
from mcp_gateway.upstreams.progress import ProgressRoutes, with_progress_token
from mcp_gateway.upstreams.streams import MergedInbound, WatchedStream
from mcp_gateway.upstreams.transports import Streams, open_transport
from mcp_gateway.wire_results import RelayedResult

logger = logging.getLogger(__name__)

_RAW_RESULT: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])
"""Results are relayed as the upstream sent them: no model round trip, nothing dropped."""

_CANCEL_SECONDS = 2.0
"""Bound on sending the courtesy cancel of an abandoned direct call."""
_REOPEN_POLL_SECONDS = 0.02
"""How often a call waiting for a new session (after the upstream forgot ours) looks for it."""
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
        self._relay = RelayToCaller(name, self.in_flight)
        self._on_change = on_change
        self._on_resource_updated = on_resource_updated
        self._open_transport = open_transport
        self._clock = clock
        self._supervisor = supervisor or Supervisor()
        self._session: ClientSession | None = None
        self._direct: tuple[DirectHttp, MergedInbound] | None = None
        self._progress = ProgressRoutes(name)
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
                self.last_error = describe(exc)
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

    def drop(self, reason: str) -> None:
        """End the current session (it is unusable) and reconnect; `reason` is what operators are told."""
        self._drop_reason = reason
        self._wake.set()

    def checkpoint(self, task: str) -> None:
        """The supervisor's fault-injection hook (see `Supervisor.checkpoint`), for the watchers."""
        self._supervisor.checkpoint(task)

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
            inbound: WatchedStream | MergedInbound = WatchedStream(read, self._wake, self._progress)
            direct = extra[0] if extra and isinstance(extra[0], DirectHttp) else None
            if direct is not None:
                inbound = MergedInbound(read, self._wake, self._progress)
                pumps = await stack.enter_async_context(anyio.create_task_group())
                stack.callback(pumps.cancel_scope.cancel)  # runs first on the way out: the pump never ends by itself
                pumps.start_soon(inbound.pump, name=f"inbound:{self.name}")
            session = await stack.enter_async_context(
                ClientSession(
                    inbound,
                    write,
                    sampling_callback=self._relay.sampling,
                    elicitation_callback=self._relay.elicitation,
                    list_roots_callback=self._relay.list_roots,
                    logging_callback=self._relay.log,
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
                self._supervisor.spawn(watchers, f"health:{self.name}", functools.partial(watch_health, self, session))
                self._supervisor.spawn(watchers, f"sync:{self.name}", functools.partial(sync_lists, self))
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

    # --- lists --------------------------------------------------------------------------------

    async def _refresh(self, session: ClientSession, kinds: frozenset[ListKind]) -> None:
        caps = self.capabilities or types.ServerCapabilities()
        if ListKind.TOOLS in kinds and caps.tools is not None:
            self._set_list(ListKind.TOOLS, tools=await fetch_all(session.list_tools, "tools"))
        if ListKind.PROMPTS in kinds and caps.prompts is not None:
            self._set_list(ListKind.PROMPTS, prompts=await fetch_all(session.list_prompts, "prompts"))
        if ListKind.RESOURCES in kinds and caps.resources is not None:
            self._set_list(
                ListKind.RESOURCES,
                resources=await fetch_all(session.list_resources, "resources"),
                resource_templates=await fetch_all(session.list_resource_templates, "resource_templates"),
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
            why = describe(exc)
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
        if progress is not None:
            # Our own token, not the SDK's callback (which would make the upstream's integers floats).
            async with self._progress.route(progress) as token:
                return await self._again_if_session_lost(with_progress_token(request, token), caller)
        return await self._again_if_session_lost(request, caller)

    async def _again_if_session_lost(self, request: types.ClientRequest, caller: Caller | None) -> dict[str, Any]:
        """`_request`, sent once more on a new session when the upstream had forgotten ours.

        A 404 for our session id means the upstream refused the request before running it (it
        restarted, or reaped the session), so sending it again cannot run it twice. The new
        session is opened at once (`_request` asks for it); if it is not there within the
        upstream's connect timeout, or is lost again, the caller gets the error.
        """
        lost = self._session
        try:
            return await self._request(request, caller)
        except SessionLost:
            if not await self._reopened_after(lost):
                raise
        logger.info("upstream %s: sending %s again on the new session", self.name, request.method)
        return await self._request(request, caller)

    async def _reopened_after(self, lost: ClientSession | None) -> bool:
        with anyio.move_on_after(min(self.config.connect_timeout, self.config.timeout)):
            while self._session is None or self._session is lost or self.state is not UpstreamState.CONNECTED:
                if self._stopping:
                    return False
                await anyio.sleep(_REOPEN_POLL_SECONDS)
            return True
        return False

    async def _request(self, request: types.ClientRequest, caller: Caller | None) -> dict[str, Any]:
        session = self._live_session()
        with self.in_flight.track(caller), upstream_span(self.name, self.config.transport, request) as traced:
            try:
                direct = self._direct
                if direct is not None and request.method == "tools/call" and direct[0].ready:
                    try:
                        raw = await self._direct_request(session, *direct, request)
                        return traced.result(RelayedResult(raw, direct[0].protocol_version))
                    except NotDirect:
                        pass  # the upstream redirects: the SDK follows same-origin redirects
                result = await session.send_request(
                    request,
                    _RAW_RESULT,  # type: ignore[type-var]  # a TypeAdapter of dict works at runtime
                    request_read_timeout_seconds=self.config.timeout,
                )
                # Checked by the SDK client against the negotiated version: may go to clients as sent.
                return traced.result(RelayedResult(result, self.protocol_version))
            except MCPError as exc:
                if exc.error.code == REQUEST_TIMEOUT:
                    raise UpstreamTimeout(
                        self.name,
                        f"upstream {self.name!r} did not answer {request.method} within {self.config.timeout:g}s",
                    ) from None
                if session_gone(exc):
                    # Rejected before it ran: safe to send again on a new session (or for a replica to take).
                    self.drop(SESSION_GONE)
                    self._reconnect_now.set()  # at once: the upstream is up, it only forgot us
                    raise SessionLost(
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
        params = _wire_params(request.params)

        async def on_message(message: types.JSONRPCMessage) -> None:
            if isinstance(message, types.JSONRPCNotification) and message.method == "notifications/message":
                # Relayed before the answer goes back, as the SDK session's logging callback would be.
                try:
                    params = types.LoggingMessageNotificationParams.model_validate(message.params)
                except ValidationError:
                    logger.debug("upstream %s: malformed log message dropped", self.name)
                    return
                await self._relay.log(params)
            elif not self._progress.take_message(message):
                await inbound.deliver(SessionMessage(message))

        try:
            async with asyncio.timeout(self.config.timeout):  # asyncio's: anyio's scope costs more, per call
                return await direct.request(request_id, request.method, params, on_message)
        except TimeoutError:
            await self._cancel_upstream(session, request_id, "timed out")
            raise MCPError(REQUEST_TIMEOUT, f"no answer within {self.config.timeout:g}s") from None
        except anyio.get_cancelled_exc_class():
            await self._cancel_upstream(session, request_id, "the client cancelled")
            raise
        except httpx2.TransportError as exc:
            # As with the SDK transport, a failed exchange ends the session: reconnect.
            self.drop(f"HTTP connection failed: {describe(exc)}")
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
            logger.warning("upstream %s: transport error: %s", self.name, describe(message))
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


def _wire_params(params: types.RequestParams | None) -> dict[str, Any]:
    """A request's params as JSON: for a plain tools/call (name, arguments, `_meta`) built directly, which
    is what the model's dump gives at a fraction of the cost (arguments are JSON already: they came as JSON)."""
    if params is None:
        return {}
    if (
        isinstance(params, types.CallToolRequestParams)
        and params.task is None
        and params.input_responses is None
        and params.request_state is None
    ):
        wire: dict[str, Any] = {"name": params.name}
        if params.arguments is not None:
            wire["arguments"] = params.arguments
        if params.meta is not None:
            wire["_meta"] = {_META_ALIASES.get(key, key): value for key, value in params.meta.items()}
        return wire
    return params.model_dump(by_alias=True, mode="json", exclude_none=True)


_META_ALIASES = {"progress_token": "progressToken"}
"""`RequestParamsMeta` keys whose wire name differs (the others are written as they are)."""
