"""An upstream whose calls carry each caller's own credentials: one catalog, one session per caller.

The catalog side (tools, prompts, resources) is shared: it is learnt once without credentials
when the server allows that, else from the first caller's session, and kept current by whichever
session hears `list_changed`. Calls never share: each identity gets its own upstream session
(`UpstreamConnection`), opened on first use with that identity's credentials, reused while it is
busy, closed after `user_session_idle_timeout` of disuse, and at most `max_user_sessions` of them
are open (idle ones are closed first to make room). A credential only ever travels on its owner's
session, and the client's own `Authorization` header never reaches the upstream.

Why one module of this length (~410 lines): the shared catalog and the per-caller session pool
both decide when a session is opened, reused, evicted or asked to re-list; the candidate split
(the pool's bookkeeping on its own) is noted for the lean-hot-path work.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import httpx2
import mcp_types as types
from mcp.shared.dispatcher import ProgressFnT

from mcp_gateway.config import HttpUpstream, OAuthClientSettings, PerUserHeaders, SseUpstream, StdioUpstream
from mcp_gateway.credentials import oauth
from mcp_gateway.credentials.broker import HEADERS_KIND, OAUTH_KIND, CredentialBroker
from mcp_gateway.errors import CredentialError, UpstreamUnavailable
from mcp_gateway.identity import identity_key, owner_label
from mcp_gateway.relay import Caller
from mcp_gateway.supervisor import Supervisor
from mcp_gateway.upstreams.connection import ChangeCallback, ResourceUpdatedCallback, UpstreamConnection, UpstreamState
from mcp_gateway.upstreams.lists import ListKind
from mcp_gateway.upstreams.transports import Streams, open_transport

logger = logging.getLogger(__name__)

CONNECT_TOOL = "authenticate"
"""Listed in place of the real tools until a first caller's session has listed them."""

Credentials = Callable[[bool], Awaitable[dict[str, str]]]
"""Headers carrying one caller's credentials; `True` asks for fresh ones (after a 401)."""


class CallerAuth(httpx2.Auth):
    """Puts one caller's credentials on every request of their session; notices when they are refused."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials
        self.rejected = False

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        try:
            headers = await self._credentials(False)
        except CredentialError:  # e.g. the refresh failed: let the upstream say 401 and mark it
            headers, self.rejected = {}, True
        request.headers.update(headers)
        response = yield request
        if response.status_code != 401:
            return
        try:
            fresh = await self._credentials(True)
        except CredentialError:
            self.rejected = True
            return
        if fresh == headers:
            self.rejected = True
            return
        request.headers.update(fresh)
        response = yield request
        if response.status_code == 401:
            self.rejected = True


@dataclass(eq=False)
class _Member:
    connection: UpstreamConnection
    auth: CallerAuth
    last_used: float = field(default_factory=time.monotonic)


class PerUserUpstream(UpstreamConnection):
    """A `per_user_headers` / `per_user_oauth` upstream (see the module docstring)."""

    def __init__(
        self,
        name: str,
        config: HttpUpstream | SseUpstream,
        *,
        broker: CredentialBroker | None,
        on_change: ChangeCallback,
        on_resource_updated: ResourceUpdatedCallback,
        supervisor: Supervisor | None = None,
    ) -> None:
        super().__init__(
            name, config, on_change=on_change, on_resource_updated=on_resource_updated, supervisor=supervisor
        )
        self.config: HttpUpstream | SseUpstream = config
        self._broker = broker
        self._members: dict[str, _Member] = {}
        self._opening: dict[str, anyio.Lock] = {}
        self._group: anyio.abc.TaskGroup | None = None
        self._stopped = anyio.Event()
        self._listed = False
        """True once the real lists are known (else the `authenticate` stand-in is listed)."""

    @property
    def _kind(self) -> str:
        return HEADERS_KIND if isinstance(self.config.auth, PerUserHeaders) else OAUTH_KIND

    # --- lifecycle ------------------------------------------------------------------------------

    async def run(self) -> None:
        if not self.config.enabled:
            self.first_attempt_done.set()
            return
        try:
            async with anyio.create_task_group() as group:
                self._group = group
                await self._discover()
                self.first_attempt_done.set()
                self._supervisor.spawn(group, f"evict:{self.name}", self._evict_idle)
                await self._stopped.wait()
                group.cancel_scope.cancel()
        finally:
            self._group = None
            for member in self._members.values():
                member.connection.stop()
            self._members.clear()
            self.first_attempt_done.set()

    async def _discover(self) -> None:
        """Learn the lists without credentials when the server allows it; otherwise list a stand-in."""
        probe = UpstreamConnection(
            self.name,
            self._member_config(),
            on_change=_ignore_change,
            on_resource_updated=_ignore_resource,
            supervisor=self._supervisor,
        )
        assert self._group is not None
        self._supervisor.spawn(self._group, f"discover:{self.name}", probe.run)
        await probe.first_attempt_done.wait()
        if probe.state is UpstreamState.CONNECTED:
            self._adopt(probe)
            reason = f"per-user: {len(self.tools)} tools, listed without credentials"
        else:
            self._stand_in()
            reason = "per-user: tools are listed once a first caller has connected"
        probe.stop()
        await self._enter(UpstreamState.CONNECTED, reason)

    def stop(self) -> None:
        self._stopping = True
        self._stopped.set()

    def reconnect(self) -> None:
        """Close every caller's session; each reopens (with fresh credentials) on its next call."""
        for owner in list(self._members):
            self._evict(owner)

    def _member_config(self) -> HttpUpstream | SseUpstream:
        # Periodic re-listing per caller would multiply the load by the number of callers;
        # `list_changed` from any session still reaches the shared catalog.
        return self.config.model_copy(update={"sync_interval": 0})

    # --- the shared lists -----------------------------------------------------------------------

    def _stand_in(self) -> None:
        description = (
            f"Connect your own account to {self.name} (its tools are listed once someone has connected). "
            "Calling this returns a link to sign in or enter your credentials, or confirms you are connected."
        )
        tool = types.Tool(name=CONNECT_TOOL, description=description, input_schema={"type": "object"})
        self._set_list(ListKind.TOOLS, tools=[tool])

    def _adopt(self, source: UpstreamConnection) -> frozenset[ListKind]:
        """Take the lists a live session sees; returns the kinds whose content changed."""
        before = dict(self.versions)
        self.capabilities = source.capabilities
        self.server_info = source.server_info
        self.protocol_version = source.protocol_version
        self._set_list(ListKind.TOOLS, tools=list(source.tools))
        self._set_list(ListKind.PROMPTS, prompts=list(source.prompts))
        self._set_list(
            ListKind.RESOURCES, resources=list(source.resources), resource_templates=list(source.resource_templates)
        )
        self._listed = True
        return frozenset(kind for kind in ListKind if self.versions[kind] != before[kind])

    async def _member_changed(self, member: UpstreamConnection, kinds: frozenset[ListKind]) -> None:
        if member.state is not UpstreamState.CONNECTED:
            return  # a closing session's empty lists say nothing about the upstream
        changed = self._adopt(member)
        if changed:
            await self._on_change(self, changed)

    async def _member_resource_updated(self, member: UpstreamConnection, uri: str) -> None:
        await self._on_resource_updated(self, uri)

    # --- calls ----------------------------------------------------------------------------------

    async def request(
        self,
        request: types.ClientRequest,
        *,
        caller: Caller | None = None,
        progress: ProgressFnT | None = None,
    ) -> dict[str, Any]:
        """Send `request` on the caller's own session (opened with their credentials on first use).

        Raises `IdentityRequired` for anonymous callers and `CredentialRequired` (with a link) for
        callers without a usable credential, on top of what `UpstreamConnection.request` raises.
        """
        owner = identity_key(caller.identity if caller else None, self.name, self._kind.replace("_", " "))
        with self.in_flight.track(caller):
            member = await self._member(owner, caller)
            if self._is_stand_in_call(request):
                return self._connected_note()
            try:
                return await member.connection.request(request, caller=caller, progress=progress)
            finally:
                member.last_used = time.monotonic()
                if member.auth.rejected:
                    await self._refused(owner, caller)

    def _is_stand_in_call(self, request: types.ClientRequest) -> bool:
        """A call of `authenticate` once the real tools are known (and none of them has that name)."""
        return (
            isinstance(request, types.CallToolRequest)
            and request.params.name == CONNECT_TOOL
            and all(tool.name != CONNECT_TOOL for tool in self.tools)
        )

    def _connected_note(self) -> dict[str, Any]:
        names = ", ".join(tool.name for tool in self.tools[:20]) + (", …" if len(self.tools) > 20 else "")
        text = (
            f"You are connected to {self.name}. Its {len(self.tools)} tools are listed now "
            f"(refresh your client's tool list if they do not show): {names}"
        )
        return {"content": [{"type": "text", "text": text}], "isError": False, "resultType": "complete"}

    async def _member(self, owner: str, caller: Caller | None) -> _Member:
        lock = self._opening.setdefault(owner, anyio.Lock())
        async with lock:
            member = self._members.get(owner)
            if member is not None and member.connection.state is UpstreamState.CONNECTED:
                return member
            if member is not None:
                self._evict(owner)
            return await self._open(owner, caller)

    async def _open(self, owner: str, caller: Caller | None) -> _Member:
        if self._broker is None or self._group is None:
            raise UpstreamUnavailable(self.name, f"upstream {self.name!r} is not running")
        credentials = self._credentials(owner, caller)
        await credentials(False)  # no credential yet: CredentialRequired with a link, before connecting
        self._make_room()
        auth = CallerAuth(credentials)

        def opener(config: StdioUpstream | HttpUpstream | SseUpstream) -> AbstractAsyncContextManager[Streams]:
            return open_transport(config, auth)

        connection = UpstreamConnection(
            self.name,
            self._member_config(),
            on_change=self._member_changed,
            on_resource_updated=self._member_resource_updated,
            open_transport=opener,
            supervisor=self._supervisor,
        )
        self._supervisor.spawn(self._group, f"upstream:{self.name}:{owner}", connection.run)
        await connection.first_attempt_done.wait()
        if connection.state is not UpstreamState.CONNECTED:
            connection.stop()
            if auth.rejected:
                await self._refused(owner, caller)
            raise UpstreamUnavailable(
                self.name,
                f"upstream {self.name!r} could not be reached as you: {connection.last_error or 'unknown error'}",
            )
        member = _Member(connection, auth)
        self._members[owner] = member
        logger.info("upstream %s: opened a session for %s (%d open)", self.name, owner, len(self._members))
        return member

    def _credentials(self, owner: str, caller: Caller | None) -> Credentials:
        broker = self._broker
        assert broker is not None
        base = caller.base_url if caller else None
        auth = self.config.auth
        if isinstance(auth, PerUserHeaders):
            header_auth = auth

            label = owner_label(caller.identity if caller else None)

            async def headers(fresh: bool) -> dict[str, str]:
                return await broker.headers(owner, self.name, header_auth, base, label)

            return _cached_once(headers)
        assert isinstance(auth, OAuthClientSettings)
        return bearer_credentials(broker, owner, self.name, auth, self.config.url, base)

    async def _refused(self, owner: str, caller: Caller | None) -> None:
        """The upstream refused this caller's credential: forget the session, ask the person again."""
        self._evict(owner)
        assert self._broker is not None
        await self._broker.reject(owner, self.name, self._kind)
        raise await self._link(owner, caller)

    async def _link(self, owner: str, caller: Caller | None) -> CredentialError:
        try:
            await self._credentials(owner, caller)(False)
        except CredentialError as exc:
            return exc
        return CredentialError(self.name, f"{self.name} refused your credentials")

    # --- the pool -------------------------------------------------------------------------------

    def _evict(self, owner: str) -> None:
        member = self._members.pop(owner, None)
        if member is not None:
            member.connection.stop()

    def _make_room(self) -> None:
        if len(self._members) < self.config.max_user_sessions:
            return
        idle = [(m.last_used, o) for o, m in self._members.items() if len(m.connection.in_flight) == 0]
        if not idle:
            raise UpstreamUnavailable(
                self.name,
                f"upstream {self.name!r} has {len(self._members)} per-user sessions open, all busy "
                f"(max_user_sessions: {self.config.max_user_sessions}); try again shortly",
            )
        self._evict(min(idle)[1])

    async def _evict_idle(self) -> None:
        while True:
            timeout = self.config.user_session_idle_timeout
            await anyio.sleep(min(30.0, timeout / 2))
            self._supervisor.checkpoint(f"evict:{self.name}")
            cutoff = time.monotonic() - timeout
            for owner, member in list(self._members.items()):
                if member.last_used < cutoff and len(member.connection.in_flight) == 0:
                    logger.info("upstream %s: closing the idle session of %s", self.name, owner)
                    self._evict(owner)

    def prime(self, owner: str) -> None:
        """Open `owner`'s session in the background when the tools are not known yet (to list them)."""
        if self._listed or self._group is None:
            return

        async def open_quietly() -> None:
            with contextlib.suppress(CredentialError, UpstreamUnavailable):
                await self._member(owner, None)

        self._supervisor.spawn(self._group, f"prime:{self.name}", open_quietly)

    def close_session(self, owner: str) -> None:
        """Close `owner`'s session (their credential was revoked): the next call starts over."""
        self._evict(owner)

    @property
    def open_sessions(self) -> int:
        return len(self._members)

    def summary(self) -> Mapping[str, Any]:
        return {**super().summary(), "per_user": self._kind, "sessions": len(self._members)}


def bearer_credentials(
    broker: CredentialBroker,
    owner: str,
    upstream: str,
    settings: OAuthClientSettings,
    url: str,
    caller_base: str | None,
) -> Credentials:
    """`Authorization` for `owner`'s OAuth token, kept with the session and only re-read from the
    vault when it nears expiry (or after a 401), so a call costs no vault read."""
    token: list[oauth.TokenSet] = []

    async def bearer(fresh: bool) -> dict[str, str]:
        if fresh or not token or token[0].expires_soon(broker.now()):
            token[:] = [await broker.access_token(owner, upstream, settings, url, caller_base, force_refresh=fresh)]
        return {"Authorization": f"Bearer {token[0].access_token}"}

    return bearer


def _cached_once(credentials: Credentials) -> Credentials:
    """Header values are read from the vault once per session (they do not change under it)."""
    cache: list[dict[str, str]] = []

    async def cached(fresh: bool) -> dict[str, str]:
        if not cache:
            cache.append(await credentials(fresh))
        return cache[0]

    return cached


async def _ignore_change(connection: UpstreamConnection, kinds: frozenset[ListKind]) -> None:
    return None


async def _ignore_resource(connection: UpstreamConnection, uri: str) -> None:
    return None
