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
from mcp import MCPError
from mcp.server.connection import Connection
from mcp.server.session import ServerSession
from mcp.shared.exceptions import NoBackChannelError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcp_gateway.http.sdk_server import connection_of
from mcp_gateway.identity import Identity, IdentityMode
from mcp_gateway.upstreams.lists import ListKind

logger = logging.getLogger(__name__)

Fingerprint = Callable[[Identity], Mapping[ListKind, object]]
Refresh = Callable[[Identity], Awaitable[Identity | None]]
EndSession = Callable[[str], Awaitable[None]]

_REGISTERED = "mcpgw.registered"
_IDENTITY = "mcpgw.identity"
_SEEN = "mcpgw.seen"


class ClientConnections:
    """Live client connections and their resource subscriptions."""

    def __init__(self, checkpoint: Callable[[str], None] = lambda name: None) -> None:
        self._connections: dict[int, Connection] = {}
        self._by_session: dict[str, Connection] = {}
        self._subscriptions: dict[str, set[int]] = {}
        self._checkpoint = checkpoint
        self._pending = anyio.Event()
        self._fingerprint: Fingerprint | None = None
        self._refresh: Refresh | None = None
        self._end_session: EndSession | None = None

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
        if connection.session_id is not None:
            self._by_session[connection.session_id] = connection
        connection.exit_stack.callback(self._forget, key)
        return connection

    def touch(self, session_id: str, identity: Identity) -> bool:
        """`register` for a session seen before, by its id (the fast path has no SDK session object);
        False when the session was never registered (then the SDK path must see the request)."""
        connection = self._by_session.get(session_id)
        if connection is None:
            return False
        connection.state[_IDENTITY] = identity
        return True

    def configure_announcements(
        self,
        fingerprint: Fingerprint,
        refresh: Refresh | None = None,
        end_session: EndSession | None = None,
    ) -> None:
        """How to judge what a client sees (`fingerprint`), re-read its grants (`refresh`: None when
        its credential is no longer valid) and end the session of a caller who lost access."""
        self._fingerprint = fingerprint
        self._refresh = refresh
        self._end_session = end_session

    def request_announce(self) -> None:
        """Ask the announcer to re-check every client soon; cheap, never blocks, never raises.

        Callers are upstream owner tasks and the store watcher: notifying clients (which can be
        slow, or fail for one client) must neither hold them up nor be able to break them.
        """
        self._pending.set()

    async def run_announcer(self, checkpoint: Callable[[str], None] = lambda name: None) -> None:
        """The one task that sends `list_changed`: runs until cancelled, coalescing requests."""
        while True:
            await self._pending.wait()
            self._pending = anyio.Event()
            try:
                checkpoint("announcer")
                await self.announce_changes()
            except BaseException:
                self._pending.set()  # not done: try again once restarted (or never, when cancelled)
                raise

    async def announce_changes(self) -> None:
        """Send `list_changed` for each kind whose fingerprint changed for that client's identity.

        Clients are handled one by one in isolation: a failure with one (a closed stream, a bug
        in judging its view) is logged and affects that client only.
        """
        fingerprint = self._fingerprint
        if fingerprint is None:
            return
        cache: dict[object, Mapping[ListKind, object]] = {}
        async with anyio.create_task_group() as tg:
            for connection in list(self._connections.values()):
                try:
                    self._checkpoint(f"notify:{connection.session_id}")
                    kinds = await self._changes_for(connection, fingerprint, cache)
                except Exception:
                    logger.exception("cannot judge list changes for client session %s", _short(connection))
                    continue
                for kind in kinds:
                    tg.start_soon(_notify, connection, _NOTIFICATIONS[kind])

    async def _changes_for(
        self, connection: Connection, fingerprint: Fingerprint, cache: dict[object, Mapping[ListKind, object]]
    ) -> list[ListKind]:
        identity: Identity = connection.state[_IDENTITY]
        if self._refresh is not None:
            # Grants may have changed since this client's last request (that is often why we are
            # here): judge its view by what it would be allowed now.
            refreshed = await self._refresh(identity)
            if refreshed is None:
                # Its key was disabled or deleted: end the session (the client's next request is
                # refused), rather than keep serving a stream to someone who lost access.
                self._forget(id(connection))
                if self._end_session is not None and connection.session_id is not None:
                    logger.info("ending client session %s: its credential is no longer valid", _short(connection))
                    await self._end_session(connection.session_id)
                return []
            identity = connection.state[_IDENTITY] = refreshed
        key = _view_key(identity)
        current = cache.get(key)
        if current is None:
            current = cache[key] = fingerprint(identity)
        previous: Mapping[ListKind, object] = connection.state.get(_SEEN, {})
        connection.state[_SEEN] = current
        return [kind for kind, value in current.items() if previous.get(kind, value) != value]

    def _forget(self, key: int) -> None:
        connection = self._connections.pop(key, None)
        if connection is not None and connection.session_id is not None:
            self._by_session.pop(connection.session_id, None)
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


_NOTIFICATIONS: dict[ListKind, dict[str, Any]] = {
    kind: notification.model_dump(by_alias=True, mode="json", exclude_none=True)
    for kind, notification in (
        (ListKind.TOOLS, types.ToolListChangedNotification()),
        (ListKind.PROMPTS, types.PromptListChangedNotification()),
        (ListKind.RESOURCES, types.ResourceListChangedNotification()),
    )
}


def _view_key(identity: Identity) -> object:
    """What decides a client's view, hashable: clients with equal keys see the same lists."""
    grants = identity.grants
    return (
        None if grants is None else frozenset((upstream, tuple(tools)) for upstream, tools in grants.items()),
        identity.include_clients,
        identity.include_tools,
        identity.mode is IdentityMode.ANONYMOUS,
    )


def _short(connection: Connection) -> str:
    return (connection.session_id or "?")[:8]


async def _notify(connection: Connection, data: dict[str, Any]) -> None:
    """One notification to one client; a client that is gone or stuck only loses its own."""
    with anyio.move_on_after(5):
        try:
            await connection.notify(data["method"], data.get("params"))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, NoBackChannelError, MCPError) as exc:
            logger.debug("client session %s did not take %s: %r", _short(connection), data["method"], exc)
        except Exception:
            logger.exception("cannot send %s to client session %s", data["method"], _short(connection))
