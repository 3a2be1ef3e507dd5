"""`tools/call` without the SDK's per-message server machinery, for the common case.

Through the SDK a call passes the session manager, the streamable-HTTP transport (memory
streams, a task per message), the server runner's request validation and middleware chain, and
an SSE response that `answers.AnswerAsJson` turns back into JSON — most of the gateway's CPU per
call (see `benchmarks/proxy_overhead.py`). `FastCalls` answers the call itself when that is
plainly equivalent, and hands everything else to the SDK untouched:

- a POST whose body (decoded once, by `guards.EnvelopeGuard`) is one `tools/call` request (a
  progress token in its `_meta` is honoured: progress goes on the call's stream; the rest of
  `_meta` is forwarded as on the SDK path);
- on an open session of this caller (the SDK's own ownership test) that speaks a handshake-era
  protocol version (its `mcp-protocol-version` header), whose initialize request this gateway saw
  (`SessionFacts`: the client's declared capabilities);
- with a free slot under `limits.concurrent_calls` (otherwise the SDK path answers the refusal).

What the upstream asks the client during the call (roots, sampling, elicitation) goes out on the
call's response stream and the client's answer comes back by POST, as on the SDK path
(`fast_channel.py`). The call itself goes through the same pipeline as ever
(`caller_tools.CallerTools.call`: policy, tool modes, per-user credentials, failover, one audit
record), and the result is shaped by `wire_results.shape_result`, as `mcp_server.RelayAsSent`
shapes it on the SDK path, so the bytes the client gets are the same either way. A message sent
before the answer (a log message, progress, a question) turns the answer into an SSE stream (as on
the SDK path); so does a call still running after 15 s, which then gets a keep-alive comment every
15 s, as the SDK's streams do, so proxies with an idle timeout never cut it. With an OpenTelemetry
SDK configured, the call gets the SERVER span the SDK would make (`tracing.request_span`).
A session's later `tools/list` requests are answered here too, from the view's cached page
(`tool_lists.py`). `MCPGW_FAST_PATH=off` (or `server.fast_tool_calls: false`) sends every request
through the SDK, which the test suite also runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import mcp_types as types
import pydantic_core
from mcp import MCPError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_gateway.caller_tools import CallerTools
from mcp_gateway.errors import UnknownTool
from mcp_gateway.http.clients import ClientConnections
from mcp_gateway.http.fast_channel import SESSION_HEADER, ClientAnswers, FastChannel, forwardable_meta
from mcp_gateway.http.guards import JSONRPC_MESSAGE_KEY
from mcp_gateway.http.ratelimit import ConcurrentCalls
from mcp_gateway.http.raw_headers import raw_headers
from mcp_gateway.http.sdk_server import session_open_for
from mcp_gateway.http.tool_lists import ToolLists
from mcp_gateway.identity import identity_in_scope
from mcp_gateway.tracing import request_outcome, request_span
from mcp_gateway.wire_results import shape_result

logger = logging.getLogger(__name__)
VERSION_HEADER = b"mcp-protocol-version"
_VERSIONS = frozenset(HANDSHAKE_PROTOCOL_VERSIONS)
_MAX_SESSIONS_REMEMBERED = 100_000


class SessionFacts:
    """What the SDK keeps private about each session that the fast path needs: the client's capabilities.

    Recorded from the `initialize` request as it passes (`record`), keyed by the session id the SDK
    answers with; forgotten when the session ends.
    """

    def __init__(self) -> None:
        self._capabilities: dict[str, types.ClientCapabilities] = {}

    def record(self, app: ASGIApp) -> ASGIApp:
        """`app` with initialize requests watched for the client's capabilities and its new session id."""

        async def watched(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and scope["method"] == "DELETE":
                await app(scope, receive, send)
                session_id = _session_of(scope)
                if session_id is not None:
                    self.forget(session_id)
                return
            message = scope.get("state", {}).get(JSONRPC_MESSAGE_KEY) if scope["type"] == "http" else None
            if not isinstance(message, dict) or message.get("method") != "initialize":
                await app(scope, receive, send)
                return
            params = message.get("params")
            capabilities = params.get("capabilities") if isinstance(params, dict) else None

            async def seen(reply: Message) -> None:
                if reply["type"] == "http.response.start" and isinstance(capabilities, dict):
                    for name, value in reply.get("headers", ()):
                        if name.lower() == SESSION_HEADER:
                            self.remember(value.decode("latin-1"), capabilities)
                await send(reply)

            await app(scope, receive, seen)

        return watched

    def remember(self, session_id: str, capabilities: Mapping[str, Any]) -> None:
        try:
            declared = types.ClientCapabilities.model_validate(capabilities, by_name=False)
        except ValidationError:
            return  # the SDK answers what is wrong with them; such a session's calls take the full path
        if len(self._capabilities) >= _MAX_SESSIONS_REMEMBERED:
            self._capabilities.clear()  # sessions the SDK forgot without telling us; their calls take the full path
        self._capabilities[session_id] = declared

    def forget(self, session_id: str) -> None:
        self._capabilities.pop(session_id, None)

    def capabilities(self, session_id: str) -> types.ClientCapabilities | None:
        return self._capabilities.get(session_id)


class FastCalls:
    """ASGI: answers eligible `tools/call` POSTs itself; everything else goes to `app` (the SDK path)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        sessions: StreamableHTTPSessionManager,
        facts: SessionFacts,
        tools: CallerTools,
        limiter: ConcurrentCalls | None,
        lists: ToolLists | None = None,
        clients: ClientConnections | None = None,
    ) -> None:
        self.app = app
        self.lists = lists
        self.clients = clients
        self.listed = 0
        """`tools/list` requests answered here from cached bytes."""
        self.sessions = sessions
        self.facts = facts
        self.tools = tools
        self.limiter = limiter
        self.served = 0
        """Calls answered here (tests check which path a call took)."""
        self.answers = ClientAnswers()
        """Questions fast-path calls asked their clients, until the answers come back."""
        self._running: dict[tuple[str, Any], asyncio.Task[Any]] = {}
        """Calls in progress here by (session id, request id): what a client's `notifications/cancelled` stops.
        The call's task is cancelled (and the cancellation told apart by `_cancelled`, as `asyncio.timeout`
        does): an anyio cancel scope per call cost ~15 µs of CPU, for a cancel that rarely comes."""
        self._cancelled: set[tuple[str, Any]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = scope.get("state", {}).get(JSONRPC_MESSAGE_KEY) if scope["type"] == "http" else None
        plan = None
        if isinstance(message, dict) and scope["method"] == "POST":
            method = message.get("method")
            if method == "tools/call":
                plan = self._eligible(scope, message)
            elif method == "tools/list":
                if await self._list(scope, send, message):
                    return
            elif method is None:
                if self.answers and await self._client_answered(scope, send, message):
                    return
            elif method == "notifications/cancelled" and self._running:
                self._cancel_if_asked(scope, message)  # the notification still goes on to the SDK
        if plan is None:
            await self.app(scope, receive, send)
            return
        message, session_id, version, capabilities = plan
        identity = identity_in_scope(scope)
        assert identity is not None  # eligible only behind the identity middleware
        limiter = self.limiter
        if limiter is not None and not limiter.enter(identity.key):
            await self.app(scope, receive, send)  # the SDK path answers the refusal
            return
        key = (session_id, message["id"])
        task = asyncio.current_task()
        assert task is not None
        try:
            self.served += 1
            meta = message["params"].get("_meta") or {}
            channel = FastChannel(
                scope, send, session_id, version, capabilities, self.answers, progress_token=meta.get("progressToken")
            )
            channel.keep_alive()
            try:
                self._running[key] = task
                try:
                    await self._call(scope, channel, message, version)
                except asyncio.CancelledError:
                    # Ours (the client cancelled) ends the call quietly; any other goes on (as with a timeout).
                    if key not in self._cancelled or task.uncancel() > 0:
                        raise
                else:
                    if key in self._cancelled:
                        task.uncancel()  # the call finished anyway: our request is void
                finally:
                    del self._running[key]
                    self._cancelled.discard(key)
                if not channel.answered:
                    await channel.end()  # cancelled by the client: no answer (as the spec says), just the end
            finally:
                await channel.stop_keeping_alive()
        finally:
            if limiter is not None:
                limiter.leave(identity.key)

    async def _list(self, scope: Scope, send: Send, message: dict[str, Any]) -> bool:
        """Answer a `tools/list` from the view's cached page, when the session is one the SDK path has
        already registered for `list_changed` (its first list goes there); True when answered."""
        if self.lists is None or self.clients is None or "id" not in message:
            return False
        params = message.get("params")
        if params is None:
            cursor = None
        elif isinstance(params, dict) and params.keys() <= {"cursor"} and isinstance(params.get("cursor"), str | None):
            cursor = params.get("cursor")
        else:
            return False  # `_meta` or anything unusual: the SDK path
        headers = _call_headers(scope)
        if headers is None:
            return False
        session_id, version = headers
        identity = identity_in_scope(scope)
        if identity is None or not session_open_for(self.sessions, session_id, scope.get("user")):
            return False
        if not self.clients.touch(session_id, identity):
            return False
        page = self.lists.page(self.tools.presentation(identity), version, cursor)
        if page is None:
            return False
        self.listed += 1
        body = b'{"jsonrpc":"2.0","id":' + pydantic_core.to_json(message["id"]) + b',"result":' + page.encoded + b"}"
        # As an event stream, as the SDK answers lists (clients and conformance suites expect its framing).
        channel = FastChannel(scope, send, session_id, version)
        await channel.event(body)
        await channel.answer(b"")
        return True

    async def _client_answered(self, scope: Scope, send: Send, message: dict[str, Any]) -> bool:
        """A POST carrying the client's response to a question a fast-path call asked: handed to the call,
        answered 202 (as the SDK answers responses); True when it was one."""
        if "result" not in message and "error" not in message:
            return False
        session_id = _session_of(scope)
        if session_id is None or not session_open_for(self.sessions, session_id, scope.get("user")):
            return False
        if not self.answers.deliver(session_id, message):
            return False
        await send({"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return True

    def _cancel_if_asked(self, scope: Scope, message: dict[str, Any]) -> None:
        """A client's `notifications/cancelled` for a call running here stops it (and so the upstream call,
        which sends its own cancel upstream); the notification still goes on to the SDK, which answers it."""
        params = message.get("params")
        request_id = params.get("requestId") if isinstance(params, dict) else None
        session_id = _session_of(scope)
        if session_id is None:
            return
        key = (session_id, request_id)
        running = self._running.get(key)
        if running is not None and key not in self._cancelled:
            self._cancelled.add(key)
            running.cancel()

    def _eligible(
        self, scope: Scope, message: dict[str, Any]
    ) -> tuple[dict[str, Any], str, str, types.ClientCapabilities] | None:
        if "id" not in message:
            return None
        params = message.get("params")
        meta = params.get("_meta") if isinstance(params, dict) else None
        if (
            not isinstance(params, dict)
            or not isinstance(params.get("name"), str)
            or not isinstance(params.get("arguments", {}), dict | None)
            or not (meta is None or (isinstance(meta, dict) and _token_or_none(meta.get("progressToken"))))
        ):
            return None  # the SDK explains what is wrong
        headers = _call_headers(scope)
        if headers is None:
            return None
        session_id, version = headers
        capabilities = self.facts.capabilities(session_id)
        if capabilities is None:
            return None
        if identity_in_scope(scope) is None or not session_open_for(self.sessions, session_id, scope.get("user")):
            return None
        return message, session_id, version, capabilities

    async def _call(self, scope: Scope, channel: FastChannel, message: dict[str, Any], version: str) -> None:
        params = message["params"]
        request_id = message["id"]
        identity = identity_in_scope(scope)
        assert identity is not None
        with request_span("tools/call", params["name"], request_id, version, params.get("_meta")) as span:
            try:
                meta = forwardable_meta(params.get("_meta"))
                result = await self.tools.call(identity, params["name"], params.get("arguments"), channel, meta)
                try:
                    shaped = shape_result("tools/call", version, result)
                except ValidationError:
                    logger.exception("the result of %s is not a valid tools/call result", params["name"])
                    raise MCPError(INTERNAL_ERROR, "Handler returned an invalid result") from None
                body: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "result": shaped}
            except UnknownTool:
                unknown = types.ErrorData(code=INVALID_PARAMS, message=f"Unknown tool: {params['name']}")
                body = _error(request_id, unknown)
            except MCPError as exc:
                body = _error(request_id, exc.error)
            request_outcome(span, body)
        await channel.answer(pydantic_core.to_json(body))


def _token_or_none(token: object) -> bool:
    """Whether `token` may be a progress token (a string or an integer, not a boolean), or is absent."""
    return token is None or (isinstance(token, str | int) and not isinstance(token, bool))


def _session_of(scope: Scope) -> str | None:
    """The request's `mcp-session-id`, if it has one."""
    value = raw_headers(scope).get(SESSION_HEADER)
    return value.decode("latin-1") if value is not None else None


def _call_headers(scope: Scope) -> tuple[str, str] | None:
    """Session id and protocol version of a request that may take the fast path: a handshake-era
    version, an answer the client accepts as JSON; None otherwise."""
    headers = raw_headers(scope)
    session_id = headers.get(SESSION_HEADER)
    version = headers.get(VERSION_HEADER)
    if session_id is None or version is None or b"application/json" not in headers.get(b"accept", b""):
        return None
    text = version.decode("latin-1")
    return (session_id.decode("latin-1"), text) if text in _VERSIONS else None


def _error(request_id: Any, error: types.ErrorData) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": error.model_dump(by_alias=True, exclude_none=True)}
