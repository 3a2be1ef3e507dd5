"""Relaying what an upstream sends *during* a call back to the client that made the call.

Upstream sessions are shared by every client, so when an upstream asks its client for
`sampling/createMessage`, `elicitation/create` or `roots/list`, or logs a message, the gateway
must find which client request it belongs to — and must never hand one user's request to
another user's client.

Attribution, most precise first:
1. `CURRENT_CALLER`: the gateway sets this context variable in the task serving the client's
   request. The SDK's streamable-HTTP client carries the sender's contextvars through to the
   handlers of messages that arrive on that request's response stream, so for HTTP upstreams
   the attribution is exact even with many concurrent callers.
2. Otherwise (stdio and SSE upstreams multiplex everything on one stream) the caller is the
   one client request in flight on that upstream. When requests from more than one client
   connection are in flight the message cannot be attributed: requests are refused with an
   error the upstream sees, log messages stay in the gateway log. Never guessed.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import mcp_types as types
from mcp import MCPError
from mcp.client.session import ClientRequestContext
from mcp.shared.exceptions import NoBackChannelError
from mcp_types import INVALID_REQUEST

from mcp_gateway.channel import ClientChannel
from mcp_gateway.identity import Identity

logger = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class Caller:
    """The client request the gateway is serving: where relayed messages must go, and who is asking."""

    channel: ClientChannel
    identity: Identity | None = None
    """Who is calling: per-user upstreams pick the session (and credentials) by it."""

    @property
    def connection_key(self) -> object:
        """Identifies the client connection, so two requests of one client count as one caller."""
        return self.channel.connection_key

    @property
    def base_url(self) -> str | None:
        """How the caller reached the gateway, for links they can open (derived on demand)."""
        return self.channel.base_url


CURRENT_CALLER: ContextVar[Caller | None] = ContextVar("mcpgw_current_caller", default=None)


class InFlight:
    """The callers with a request in flight on one upstream session."""

    def __init__(self) -> None:
        self._callers: dict[int, Caller] = {}
        self._ids = itertools.count()

    @contextmanager
    def track(self, caller: Caller | None) -> Iterator[None]:
        if caller is None:
            yield
            return
        key = next(self._ids)
        self._callers[key] = caller
        try:
            yield
        finally:
            del self._callers[key]

    def attribute(self) -> Caller | None:
        """The caller a message from this upstream belongs to, or None when it cannot be known."""
        current = CURRENT_CALLER.get()
        if current is not None:
            return current
        callers = list(self._callers.values())
        if not callers:
            return None
        if all(c.connection_key is callers[0].connection_key for c in callers):
            return callers[-1]
        return None

    def __len__(self) -> int:
        return len(self._callers)


class RelayToCaller:
    """The client side of one upstream session: what the upstream asks of "its client" goes to the caller.

    Its methods are the `ClientSession` callbacks (sampling, elicitation, roots, log messages);
    each finds the caller with `InFlight.attribute` and asks through the caller's `ClientChannel`,
    or answers the upstream with an error it can show when there is no single caller or the
    caller's client cannot take the request.
    """

    def __init__(self, upstream: str, in_flight: InFlight) -> None:
        self.name = upstream
        self._in_flight = in_flight

    async def _ask(
        self, request: types.ServerRequest, result_type: type[Any], capability: types.ClientCapabilities, what: str
    ) -> Any:
        caller = self._in_flight.attribute()
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

    async def sampling(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult | types.ErrorData:
        result: types.CreateMessageResult | types.ErrorData = await self._ask(
            types.CreateMessageRequest(params=params),
            types.CreateMessageResult,
            types.ClientCapabilities(sampling=types.SamplingCapability()),
            "sampling",
        )
        return result

    async def elicitation(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult | types.ErrorData:
        result: types.ElicitResult | types.ErrorData = await self._ask(
            types.ElicitRequest(params=params),
            types.ElicitResult,
            types.ClientCapabilities(elicitation=types.ElicitationCapability()),
            "elicitation",
        )
        return result

    async def list_roots(self, context: ClientRequestContext) -> types.ListRootsResult | types.ErrorData:
        result: types.ListRootsResult | types.ErrorData = await self._ask(
            types.ListRootsRequest(),
            types.ListRootsResult,
            types.ClientCapabilities(roots=types.RootsCapability()),
            "roots/list",
        )
        return result

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        caller = self._in_flight.attribute()
        if caller is None:
            logger.debug("upstream %s log (%s), no caller to relay to", self.name, params.level)
            return
        await caller.channel.notify(types.LoggingMessageNotification(params=params))
