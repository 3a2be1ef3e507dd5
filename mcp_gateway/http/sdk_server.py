"""The few private internals of the SDK's server side that mcpgw needs, in one place.

The SDK (2.3) offers no public way to (a) reach the long-lived per-client `Connection` behind a
request-scoped `ServerSession`, (b) end one session from outside its own requests (a caller's
key was disabled), or (c) ask whether the session manager is running. Each accessor checks what
it reaches for and fails loudly with `SdkInternalsChanged` when an upgrade removed it, so a test
catches the upgrade instead of the gateway silently misbehaving.
"""

from __future__ import annotations

from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, authorization_context
from mcp.server.connection import Connection
from mcp.server.session import ServerSession
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp_types import ClientCapabilities


class SdkInternalsChanged(RuntimeError):
    """Raised when an SDK internal this module relies on is gone (after an SDK upgrade)."""


def connection_of(session: ServerSession) -> Connection:
    """The per-client connection behind a request-scoped session."""
    connection = getattr(session, "_connection", None)
    if not isinstance(connection, Connection):
        raise SdkInternalsChanged("ServerSession._connection is gone: update mcp_gateway/http/sdk_server.py")
    return connection


def _instances(sessions: StreamableHTTPSessionManager) -> dict[str, Any]:
    instances = getattr(sessions, "_server_instances", None)
    if not isinstance(instances, dict) or not hasattr(sessions, "_discard_session"):
        raise SdkInternalsChanged(
            "StreamableHTTPSessionManager._server_instances/_discard_session are gone: "
            "update mcp_gateway/http/sdk_server.py"
        )
    return instances


async def end_session(sessions: StreamableHTTPSessionManager, session_id: str) -> bool:
    """End one MCP session now (its id answers 404 from here on); False if it was not open."""
    transport = _instances(sessions).get(session_id)
    if transport is None:
        return False
    await sessions._discard_session(session_id, transport)
    return True


def session_open_for(sessions: StreamableHTTPSessionManager, session_id: str, user: object) -> bool:
    """Whether `session_id` is an open session that the ASGI `user` may use (the SDK's own ownership test)."""
    owners = getattr(sessions, "_session_owners", None)
    if not isinstance(owners, dict):
        raise SdkInternalsChanged(
            "StreamableHTTPSessionManager._session_owners is gone: update mcp_gateway/http/sdk_server.py"
        )
    if session_id not in _instances(sessions):
        return False
    requestor = authorization_context(user) if isinstance(user, AuthenticatedUser) else None
    return bool(requestor == owners.get(session_id))


def client_declares(declared: ClientCapabilities, wanted: ClientCapabilities) -> bool:
    """The SDK's own test of whether a client that declared `declared` supports `wanted`
    (`Connection.check_capability`, run on the capabilities alone: the fast path has no `Connection`)."""
    check = getattr(Connection, "check_capability", None)
    if check is None:
        raise SdkInternalsChanged("Connection.check_capability is gone: update mcp_gateway/http/sdk_server.py")
    return bool(check(_Declared(declared), wanted))


class _Declared:
    """What `Connection.check_capability` reads of a connection."""

    __slots__ = ("client_capabilities",)

    def __init__(self, capabilities: ClientCapabilities) -> None:
        self.client_capabilities = capabilities


def open_sessions(sessions: StreamableHTTPSessionManager) -> int:
    return len(_instances(sessions))


def is_running(sessions: StreamableHTTPSessionManager) -> bool:
    """Whether the session manager can serve requests (its `run()` is active)."""
    if not hasattr(sessions, "_task_group"):
        raise SdkInternalsChanged(
            "StreamableHTTPSessionManager._task_group is gone: update mcp_gateway/http/sdk_server.py"
        )
    return sessions._task_group is not None
