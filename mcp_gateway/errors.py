"""Exceptions raised by the gateway: one tree, so a face can map any of them to its own error shape.

Hierarchy::

    GatewayError
    ├── ConfigError            the configuration file or a CLI argument is invalid
    ├── AuthError              a request's credentials are missing or invalid (HTTP 401)
    ├── UnknownTool            no such tool, or the caller may not see it (both look the same)
    ├── OAuthError             a step of the gateway's OAuth client (discovery, registration, tokens) failed
    ├── NotReady               the gateway is starting or stopping: try again shortly (HTTP 503)
    ├── Conflict               the request does not apply to its target as configured (HTTP 409)
    ├── StoreError             a database operation failed            (store/errors.py: StoreUnavailable,
    │                                                                  RecordNotFound)
    ├── VaultError             the credential vault cannot do it      (vault/errors.py: MasterKeyError,
    │                                                                  WrongMasterKey, CredentialUnreadable,
    │                                                                  RotationFailed)
    └── UpstreamError          something went wrong talking to one upstream server
        ├── UpstreamUnavailable    not connected (failed to start, crashed, disconnected)
        │   └── SessionLost            it answered 404 for our session: refused before running anything
        ├── UpstreamTimeout        did not answer within its configured call timeout
        └── CredentialError        a per-user upstream cannot be called as this caller (yet)
            ├── IdentityRequired       the caller is anonymous: there is nobody to hold a credential
            └── CredentialRequired     the caller has no (working) credential: `url` collects one

`StoreError` and `VaultError` live beside the code that raises them (their subclasses are
specific to it) and are drawn here so the whole tree is in one place.

Foreign exceptions (from the MCP SDK, httpx2, anyio) are translated into these at the
boundary where the gateway calls them, so clients only ever see messages we wrote.
"""

from __future__ import annotations

import anyio


class GatewayError(Exception):
    """Base class: raised when the gateway cannot do what was asked; `message` is safe to show a user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(GatewayError):
    """Raised when gateway.yaml (or an imported mcpServers file) is invalid; the message names field and line."""


class AuthError(GatewayError):
    """Raised when a request's credentials are missing or invalid; faces answer HTTP 401 with `message`."""


class UnknownTool(GatewayError):
    """Raised for a tool that does not exist or the caller may not use (the two are never told apart)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Unknown tool: {name}")
        self.name = name


class OAuthError(GatewayError):
    """Raised when a step of the OAuth client fails; `message` (and `str(error)`) is safe to show the end user.

    `error` is the provider's OAuth error code when it sent one (`invalid_grant`, …). `transient` marks
    failures worth retrying later (network, timeouts, 5xx) as opposed to ones that need a person
    (re-consent, configuration).
    """

    def __init__(self, message: str, *, error: str | None = None, transient: bool = False) -> None:
        super().__init__(message)
        self.error = error
        self.transient = transient


class NotReady(GatewayError):
    """Raised when what was asked needs a part of the gateway that only exists while it runs (store, vault)."""


class Conflict(GatewayError):
    """Raised when the request names a real target that it does not apply to (e.g. consent for a non-OAuth upstream)."""


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


class SessionLost(UpstreamUnavailable):
    """The upstream answered 404 for our session (it restarted, or reaped it): the request was refused
    before it ran, so it may be sent again on a new session."""


class UpstreamTimeout(UpstreamError):
    """Raised when an upstream does not answer a call within its `timeout`."""


class CredentialError(UpstreamError):
    """Raised when a per-user upstream cannot be called with the caller's credentials."""


class IdentityRequired(CredentialError):
    """Raised when an anonymous caller uses a per-user upstream: a credential needs someone to belong to."""


class CredentialRequired(CredentialError):
    """Raised when the caller has no usable credential for an upstream yet.

    `url` is the single-use link (gateway form or provider consent page) that collects one.
    """

    def __init__(self, upstream: str, message: str, *, url: str, done: anyio.Event | None = None) -> None:
        super().__init__(upstream, message)
        self.url = url
        self.done = done
        """Set once the credential is stored (lets a caller wait for the person to finish)."""
