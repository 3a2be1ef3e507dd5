"""The client connections attached to the gateway, for messages not tied to a request.

`notifications/tools/list_changed` (and the prompts/resources variants) and
`notifications/resources/updated` go to a client outside of any request, on its standalone
stream. The SDK hands handlers a per-request `ServerSession`; the long-lived per-client
`Connection` behind it is what can still send after the request ends, and its `exit_stack`
tells us when the client goes away, so the registry never holds dead connections.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import mcp_types as types
from mcp.server.connection import Connection
from mcp.server.session import ServerSession
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcp_gateway.identity import Identity, IdentityMode
from mcp_gateway.upstreams.connection import ListKind

logger = logging.getLogger(__name__)

_REGISTERED = "mcpgw.registered"
_IDENTITY = "mcpgw.identity"
_SEEN = "mcpgw.seen"


def connection_of(session: ServerSession) -> Connection:
    """The per-client connection behind a request-scoped session.

    The SDK (2.3) keeps it in a private attribute and offers no public accessor on the
    low-level context; this is the one place that reaches for it.
    """
    connection: Connection = session._connection
    return connection


class ClientConnections:
    """Live client connections and their resource subscriptions."""

    def __init__(self) -> None:
        self._connections: dict[int, Connection] = {}
        self._subscriptions: dict[str, set[int]] = {}

    def __len__(self) -> int:
        return len(self._connections)

    def register(
        self,
        session: ServerSession,
        identity: Identity,
        baseline: Callable[[], Mapping[ListKind, object]] | None = None,
    ) -> Connection:
        """Remember the client behind `session` and who it is (idempotent; cheap enough for every request).

        The session manager binds a session to the identity that created it, so the identity
        recorded on first sight stays the client's identity; only its narrowing headers can
        differ per request, and the latest ones are kept.
        """
        connection = connection_of(session)
        if connection.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return connection  # 2026-era exchanges have no standalone stream to notify on
        connection.state[_IDENTITY] = identity
        if _SEEN not in connection.state and baseline is not None:
            connection.state[_SEEN] = baseline()  # what this client saw first; later changes are diffs to it
        if connection.state.get(_REGISTERED):
            return connection
        connection.state[_REGISTERED] = True
        key = id(connection)
        self._connections[key] = connection
        connection.exit_stack.callback(self._forget, key)
        return connection

    async def announce_changes(
        self,
        fingerprint: Callable[[Identity], Mapping[ListKind, object]],
        refresh: Callable[[Identity], Awaitable[Identity]] | None = None,
    ) -> None:
        """Send `list_changed` for each kind whose fingerprint changed for that client's identity."""
        notifications: dict[ListKind, types.ServerNotification] = {
            ListKind.TOOLS: types.ToolListChangedNotification(),
            ListKind.PROMPTS: types.PromptListChangedNotification(),
            ListKind.RESOURCES: types.ResourceListChangedNotification(),
        }
        cache: dict[object, Mapping[ListKind, object]] = {}
        async with anyio.create_task_group() as tg:
            for connection in list(self._connections.values()):
                identity: Identity = connection.state[_IDENTITY]
                if refresh is not None:
                    # Grants may have changed since this client's last request (that is often why
                    # we are here): judge its view by what it would be allowed now.
                    identity = connection.state[_IDENTITY] = await refresh(identity)
                cache_key = (
                    identity.grants and tuple(sorted(identity.grants.items())),
                    identity.include_clients,
                    identity.include_tools,
                    identity.mode is IdentityMode.ANONYMOUS,
                )
                current = cache.get(cache_key)
                if current is None:
                    current = cache[cache_key] = fingerprint(identity)
                previous: Mapping[ListKind, object] = connection.state.get(_SEEN, {})
                connection.state[_SEEN] = current
                for kind, value in current.items():
                    if previous.get(kind, value) != value:
                        data = notifications[kind].model_dump(by_alias=True, mode="json", exclude_none=True)
                        tg.start_soon(_notify, connection, data)

    def _forget(self, key: int) -> None:
        self._connections.pop(key, None)
        for subscribers in self._subscriptions.values():
            subscribers.discard(key)

    def subscribe(self, connection: Connection, uri: str) -> bool:
        """Record a subscription; True when it is the first one for `uri` (subscribe upstream then)."""
        subscribers = self._subscriptions.setdefault(uri, set())
        first = not subscribers
        subscribers.add(id(connection))
        return first

    def unsubscribe(self, connection: Connection, uri: str) -> bool:
        """Drop a subscription; True when nobody is subscribed to `uri` any more."""
        subscribers = self._subscriptions.get(uri)
        if not subscribers:
            return False
        subscribers.discard(id(connection))
        if subscribers:
            return False
        del self._subscriptions[uri]
        return True

    async def resource_updated(self, uris: tuple[str, ...]) -> None:
        """Tell each subscriber, using the URI it subscribed with (plain or explicit form)."""
        async with anyio.create_task_group() as tg:
            for uri in uris:
                data = types.ResourceUpdatedNotification(
                    params=types.ResourceUpdatedNotificationParams(uri=uri)
                ).model_dump(by_alias=True, mode="json", exclude_none=True)
                for key in self._subscriptions.get(uri, ()):
                    connection = self._connections.get(key)
                    if connection is not None:
                        tg.start_soon(_notify, connection, data)


async def _notify(connection: Connection, data: dict[str, Any]) -> None:
    with anyio.move_on_after(5):
        await connection.notify(data["method"], data.get("params"))
