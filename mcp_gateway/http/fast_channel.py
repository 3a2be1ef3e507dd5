"""The `ClientChannel` of a fast-path call (`fast_calls.py`): the call's own response stream.

What an upstream sends while it works on the call goes where the SDK path sends it: on the
response of the client's POST, which becomes an event stream at the first such message. That
includes what the upstream asks the client (roots, sampling, elicitation), when the client
declared the capability: the request goes out as an event, and the client's answer comes back as
a POST of a JSON-RPC response, which `FastCalls` hands to `ClientAnswers` (the SDK's session never
sees it, as it never saw the request). A question the client declared no capability for is
refused without asking, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio
import mcp_types as types
import pydantic_core
from mcp import MCPError
from mcp.shared.exceptions import NoBackChannelError
from mcp_types import methods as _methods
from starlette.types import Scope, Send

from mcp_gateway.channel import OneWayChannel
from mcp_gateway.http.raw_headers import raw_headers
from mcp_gateway.http.sdk_server import client_declares

_R = TypeVar("_R")
SESSION_HEADER = b"mcp-session-id"
KEEP_ALIVE_SECONDS = 15.0
"""As the SDK's event streams (sse_starlette's default ping interval)."""
_NEEDS: Mapping[str, types.ClientCapabilities] = {
    "roots/list": types.ClientCapabilities(roots=types.RootsCapability()),
    "sampling/createMessage": types.ClientCapabilities(sampling=types.SamplingCapability()),
    "elicitation/create": types.ClientCapabilities(elicitation=types.ElicitationCapability()),
}
"""The capability a client must have declared to be asked each method (`ping` needs none)."""
_HOP_META_KEYS = frozenset({"progress_token", "progressToken"})
"""`_meta` keys of one hop (the gateway makes its own for the upstream): never forwarded."""
_RESERVED_META_PREFIX = "io.modelcontextprotocol/"


def forwardable_meta(meta: Mapping[str, Any] | None) -> types.RequestParamsMeta | None:
    """What of a client request's `_meta` goes on to the upstream: all but the hop's own keys and the
    protocol's reserved ones (e.g. Claude Code's `claudecode/toolUseId` goes on, its `progressToken` not)."""
    if not meta:
        return None
    kept = {k: v for k, v in meta.items() if k not in _HOP_META_KEYS and not k.startswith(_RESERVED_META_PREFIX)}
    return types.RequestParamsMeta(**kept) if kept else None  # type: ignore[typeddict-item]


class _Waiting:
    __slots__ = ("answer", "arrived")

    def __init__(self) -> None:
        self.arrived = anyio.Event()
        self.answer: Mapping[str, Any] = {}


class ClientAnswers:
    """Requests fast-path calls sent to clients, by (session id, request id), until the client answers."""

    def __init__(self) -> None:
        self._waiting: dict[tuple[str, str], _Waiting] = {}
        self._ids = itertools.count(1)

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def deliver(self, session_id: str, message: Mapping[str, Any]) -> bool:
        """Hand a client's JSON-RPC response to the call waiting for it; False if no call is."""
        waiting = self._waiting.get((session_id, message.get("id")))  # type: ignore[arg-type]
        if waiting is None:
            return False
        waiting.answer = message
        waiting.arrived.set()
        return True

    async def ask(self, channel: FastChannel, method: str, params: Mapping[str, Any] | None) -> Mapping[str, Any]:
        """Send one request on `channel`'s stream and wait for the client's response message."""
        request_id = f"mcpgw-fast-{next(self._ids)}"  # strings: cannot collide with the SDK's integer ids
        key = (channel.session_id, request_id)
        waiting = self._waiting[key] = _Waiting()
        try:
            body: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
            if params is not None:
                body["params"] = params
            await channel.event(pydantic_core.to_json(body))
            await waiting.arrived.wait()
            return waiting.answer
        finally:
            del self._waiting[key]


class FastChannel(OneWayChannel):
    """`ClientChannel` of a fast-path call: the answer is JSON, unless something is sent first (then SSE).

    Progress goes to the client when its request carried a progress token; questions as the module says.
    """

    refusal = "this client declared no capability for requests from the server"

    __slots__ = (
        "_answers",
        "_capabilities",
        "_key",
        "_pinger",
        "_progress_token",
        "_scope",
        "_send",
        "_sending",
        "_streaming",
        "_timer",
        "_version",
        "answered",
        "session_id",
    )

    def __init__(
        self,
        scope: Scope,
        send: Send,
        session_id: str,
        version: str,
        capabilities: types.ClientCapabilities | None = None,
        answers: ClientAnswers | None = None,
        progress_token: str | int | None = None,
    ) -> None:
        self._scope = scope
        self._progress_token = progress_token
        self._send = send
        self.session_id = session_id
        self._version = version
        self._capabilities = capabilities
        self._answers = answers
        self._key = sys.intern("mcp-session:" + session_id)
        """One object per session: the relay compares connection keys by identity."""
        self._streaming = False
        self.answered = False
        self._sending: asyncio.Lock | None = None
        """One message at a time once the keep-alive task shares the response with the call's own messages
        (made when it starts: until then the call's task is the only writer, and most calls end before)."""
        self._timer: asyncio.TimerHandle | None = None
        self._pinger: asyncio.Task[None] | None = None

    def keep_alive(self) -> None:
        """Once the call has run `KEEP_ALIVE_SECONDS`, a comment every `KEEP_ALIVE_SECONDS` (as the SDK's
        streams send), so a proxy's idle timeout never cuts a long call. A timer, not a task, until then."""
        self._timer = asyncio.get_running_loop().call_later(KEEP_ALIVE_SECONDS, self._start_pinging)

    def _start_pinging(self) -> None:
        self._timer = None
        if not self.answered:
            self._sending = asyncio.Lock()
            self._pinger = asyncio.get_running_loop().create_task(self._ping(), name="mcpgw-fast-keepalive")

    async def _ping(self) -> None:
        assert self._sending is not None
        while not self.answered:
            async with self._sending:
                if self.answered:
                    return
                await self._start_stream()
                comment = f": ping - {datetime.now(UTC)}\r\n\r\n".encode()
                await self._send({"type": "http.response.body", "body": comment, "more_body": True})
            await asyncio.sleep(KEEP_ALIVE_SECONDS)

    async def stop_keeping_alive(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pinger, self._pinger = self._pinger, None
        if pinger is not None:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger

    @property
    def connection_key(self) -> object:
        return self._key

    @property
    def base_url(self) -> str | None:
        host = raw_headers(self._scope).get(b"host", b"").decode("latin-1")
        return f"{self._scope.get('scheme', 'http')}://{host}" if host else None

    @property
    def wants_progress(self) -> bool:
        return self._progress_token is not None

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        """A progress notification for the client's token, numbers as given (as the SDK's dispatcher writes it)."""
        if self._progress_token is None:
            return
        params: dict[str, Any] = {"progressToken": self._progress_token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        await self.event(
            pydantic_core.to_json({"jsonrpc": "2.0", "method": "notifications/progress", "params": params})
        )

    def supports(self, capability: types.ClientCapabilities) -> bool:
        return self._capabilities is not None and client_declares(self._capabilities, capability)

    async def request(self, request: types.ServerRequest, result_type: type[_R]) -> _R:
        """Ask the client on this call's stream (see the module docstring).

        Raises:
            NoBackChannelError: the client declared no capability for this request.
            MCPError: the client answered with an error.
        """
        needed = _NEEDS.get(request.method)
        if self._answers is None or (needed is not None and not self.supports(needed)):
            raise NoBackChannelError(self.refusal)
        data = request.model_dump(by_alias=True, mode="json", exclude_none=True)
        answer = await self._answers.ask(self, data["method"], data.get("params"))
        error = answer.get("error")
        if error is not None:
            raise MCPError.from_error_data(types.ErrorData.model_validate(error))
        result = answer.get("result")
        if not isinstance(result, dict):
            raise MCPError(types.INVALID_PARAMS, f"the client's answer to {request.method} has no result object")
        with contextlib.suppress(KeyError):  # a method the surface does not list: nothing to check
            _methods.validate_client_result(request.method, self._version, result)
        return result_type.model_validate(result, by_name=False)  # type: ignore[attr-defined, no-any-return]

    async def notify(self, notification: types.ServerNotification) -> None:
        data = notification.model_dump(by_alias=True, mode="json", exclude_none=True)
        await self.event(pydantic_core.to_json({"jsonrpc": "2.0", **data}))

    async def answer(self, body: bytes) -> None:
        """The response: a JSON body, or the last event of the stream once one was sent (`b""`: just the end)."""
        self.answered = True  # first: a keep-alive task starting now sends nothing more
        await self._alone(lambda: self._answer(body))

    async def _answer(self, body: bytes) -> None:
        if self._streaming:
            if body:
                await self._event(body)
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (SESSION_HEADER, self.session_id.encode("latin-1")),
        ]
        await self._send({"type": "http.response.start", "status": 200, "headers": headers})
        await self._send({"type": "http.response.body", "body": body, "more_body": False})

    async def end(self) -> None:
        """Close the answer without a message (a cancelled call)."""
        self.answered = True
        await self._alone(self._end)

    async def _end(self) -> None:
        await self._start_stream()
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    async def event(self, data: bytes) -> None:
        """One SSE event (the response becomes a stream, framed as the SDK frames its streams)."""
        await self._alone(lambda: self._event(data))

    async def _alone(self, write: Callable[[], Awaitable[None]]) -> None:
        """`write`, not interleaved with the keep-alive task's comments once that task runs (see `_sending`)."""
        if self._sending is None:
            await write()
        else:
            async with self._sending:
                await write()

    async def _event(self, data: bytes) -> None:
        await self._start_stream()
        await self._send(
            {"type": "http.response.body", "body": b"event: message\r\ndata: " + data + b"\r\n\r\n", "more_body": True}
        )

    async def _start_stream(self) -> None:
        if not self._streaming:
            self._streaming = True
            headers = [
                (b"cache-control", b"no-cache, no-transform"),
                (b"content-type", b"text/event-stream"),
                (SESSION_HEADER, self.session_id.encode("latin-1")),
                (b"x-accel-buffering", b"no"),
            ]
            await self._send({"type": "http.response.start", "status": 200, "headers": headers})
