"""The client a call is made for, as the call pipeline and upstream connections see it.

While an upstream works on a call it may report progress, log, or ask the client something
(sampling, elicitation, roots). Those go back through the `ClientChannel` of the request that
made the call. The `/mcp` face implements it over the SDK's request-scoped server session
(`http.mcp_server.McpChannel`); an LLM request implements it without a back channel (progress and logs are
dropped, questions refused, a credential link goes into the tool result). Nothing here knows
about HTTP frameworks or the SDK's server side, so `calls.py` and `upstreams/` can depend on it.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

import mcp_types as types
from mcp.shared.exceptions import NoBackChannelError

_R = TypeVar("_R")


class ClientChannel(Protocol):
    """Where what an upstream sends during one call goes: the client request that made the call."""

    @property
    def connection_key(self) -> object:
        """Identifies the client connection: two requests of one client count as one caller."""
        ...

    @property
    def base_url(self) -> str | None:
        """How the caller reached the gateway (scheme://host[:port]), for links they can open; None if unknown."""
        ...

    @property
    def wants_progress(self) -> bool:
        """Whether the client asked for progress notifications for this request."""
        ...

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        """Relay a progress notification for this request."""
        ...

    def supports(self, capability: types.ClientCapabilities) -> bool:
        """Whether the client declared `capability` (sampling, elicitation, roots, URL elicitation)."""
        ...

    async def request(self, request: types.ServerRequest, result_type: type[_R]) -> _R:
        """Ask the client something on this request's stream.

        Raises:
            MCPError: the client answered with an error.
            NoBackChannelError: this client cannot be asked anything now.
        """
        ...

    async def notify(self, notification: types.ServerNotification) -> None:
        """Send a notification related to this request (a log message, an elicitation completing)."""
        ...


class OneWayChannel:
    """The part of a `ClientChannel` with nobody to ask: no progress wanted, no capability, questions refused.

    Subclasses give the connection key and base URL, and decide what a notification does (a model's
    tool call drops it; the `/mcp` fast path streams it to the client).
    """

    __slots__ = ()
    refusal = "this client cannot be asked anything during the call"

    @property
    def wants_progress(self) -> bool:
        return False

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        return None

    def supports(self, capability: types.ClientCapabilities) -> bool:
        return False

    async def request(self, request: types.ServerRequest, result_type: type[_R]) -> _R:
        raise NoBackChannelError(self.refusal)
