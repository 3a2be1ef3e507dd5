"""Exceptions raised by the gateway.

Hierarchy::

    GatewayError
    ├── ConfigError            the configuration file or a CLI argument is invalid
    └── UpstreamError          something went wrong talking to one upstream server
        ├── UpstreamUnavailable    not connected (failed to start, crashed, disconnected)
        └── UpstreamTimeout        did not answer within its configured call timeout

Foreign exceptions (from the MCP SDK, httpx2, anyio) are translated into these at the
boundary where the gateway calls them, so clients only ever see messages we wrote.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base class: raised when the gateway cannot do what was asked; `message` is safe to show a user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(GatewayError):
    """Raised when gateway.yaml (or an imported mcpServers file) is invalid; the message names field and line."""


class UpstreamError(GatewayError):
    """Raised when an upstream call fails for a reason on the upstream's side."""

    def __init__(self, upstream: str, message: str) -> None:
        super().__init__(message)
        self.upstream = upstream


class UpstreamUnavailable(UpstreamError):
    """Raised when a call targets an upstream that is not connected right now.

    `sent` tells whether the request may already have reached the upstream (the connection
    broke mid-call): then the tool may have run, and the call must not be retried elsewhere.
    """

    def __init__(self, upstream: str, message: str, *, sent: bool = False) -> None:
        super().__init__(upstream, message)
        self.sent = sent


class UpstreamTimeout(UpstreamError):
    """Raised when an upstream does not answer a call within its `timeout`."""
