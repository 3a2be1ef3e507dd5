"""All upstreams together: start and stop them, and keep the merged catalog current."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from mcp_gateway.catalog import Catalog, Contribution
from mcp_gateway.config import GatewayConfig, SharedOAuth, StdioUpstream, UpstreamConfig, prefix_of
from mcp_gateway.credentials.broker import SHARED_PRINCIPAL
from mcp_gateway.errors import UpstreamUnavailable
from mcp_gateway.supervisor import Supervisor
from mcp_gateway.upstreams.connection import LIVE_SETTINGS, TransportOpener, UpstreamConnection, UpstreamState
from mcp_gateway.upstreams.lists import ListKind
from mcp_gateway.upstreams.per_user import PerUserUpstream
from mcp_gateway.upstreams.shared_oauth import SharedOAuthUpstream
from mcp_gateway.upstreams.transports import open_transport

if TYPE_CHECKING:
    from mcp_gateway.credentials.broker import CredentialBroker
    from mcp_gateway.credentials.flows import PendingFlow

logger = logging.getLogger(__name__)

CatalogListener = Callable[[frozenset[ListKind]], Awaitable[None]]
ResourceListener = Callable[[str, str], Awaitable[None]]


class UpstreamManager:
    """Owns every `UpstreamConnection`; publishes an immutable `Catalog` whenever one changes."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        supervisor: Supervisor | None = None,
        open_transport: TransportOpener | None = None,
    ) -> None:
        self.config = config
        self._open_transport = open_transport
        """Transports of shared-credential upstreams; tests pass an in-memory one."""
        self.supervisor = supervisor or Supervisor()
        """Runs every upstream task: one failing never stops the others (or the gateway)."""
        self.separator = config.server.name_separator
        self.broker: CredentialBroker | None = None
        """Per-user credentials; set before per-user upstreams are started (it needs the store)."""
        self.connections: dict[str, UpstreamConnection] = {
            name: self._connection(name, upstream) for name, upstream in config.upstreams.items()
        }
        self._globals = _globals(self.connections)
        self.catalog = Catalog()
        self._catalog_listeners: list[CatalogListener] = []
        self._resource_listeners: list[ResourceListener] = []
        self._rebuild_lock = anyio.Lock()
        self._task_group: anyio.abc.TaskGroup | None = None

    def on_catalog_change(self, listener: CatalogListener) -> None:
        self._catalog_listeners.append(listener)

    def on_resource_updated(self, listener: ResourceListener) -> None:
        self._resource_listeners.append(listener)

    def get(self, name: str) -> UpstreamConnection:
        try:
            return self.connections[name]
        except KeyError:
            raise UpstreamUnavailable(name, f"no upstream named {name!r}") from None

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run every upstream until cancelled; `started` fires once each has made its first attempt."""
        try:
            async with anyio.create_task_group() as tg:
                self._task_group = tg
                for connection in self.connections.values():
                    self.supervisor.spawn(tg, f"upstream:{connection.name}", connection.run)
                await self.wait_first_attempts()
                task_status.started()
                await anyio.sleep_forever()  # stay up for upstreams added later by apply()
        finally:
            self._task_group = None

    async def wait_first_attempts(self) -> None:
        """Until every current upstream has connected or failed once (what "started" means to a user)."""
        for connection in list(self.connections.values()):
            await connection.first_attempt_done.wait()

    async def announce(self) -> None:
        """Let listeners re-check what each client sees (after a policy change, say)."""
        for listener in self._catalog_listeners:
            await listener(frozenset(ListKind))

    def stop(self) -> None:
        for connection in self.connections.values():
            connection.stop()

    async def apply(self, upstreams: Mapping[str, UpstreamConfig]) -> None:
        """Make the running upstreams match `upstreams`: start new ones, stop removed ones, and
        restart those whose connection settings changed. Policy-only fields (visibility flags)
        and health settings (`LIVE_SETTINGS`) are swapped in place without reconnecting."""
        if self._task_group is None:
            raise RuntimeError("UpstreamManager.apply() needs a running manager")
        current = self.connections
        updated: dict[str, UpstreamConnection] = {}
        for name, config in upstreams.items():
            existing = current.get(name)
            if existing is not None and _connection_settings(existing.config) == _connection_settings(config):
                existing.config = config
                updated[name] = existing
                continue
            if existing is not None:
                existing.stop()
                if self.broker is not None:
                    self.broker.forget(name)
            connection = self._connection(name, config)
            updated[name] = connection
            self.supervisor.spawn(self._task_group, f"upstream:{name}", connection.run)
        for name, connection in current.items():
            if name not in updated:
                connection.stop()
        self.connections = updated
        self._globals = _globals(updated)
        await self.rebuild()

    def _connection(self, name: str, config: UpstreamConfig) -> UpstreamConnection:
        if not isinstance(config, StdioUpstream) and isinstance(config.auth, SharedOAuth):
            return SharedOAuthUpstream(
                name,
                config,
                config.auth,
                broker=self.broker,
                on_change=self._on_upstream_change,
                on_resource_updated=self._on_resource_updated,
                supervisor=self.supervisor,
            )
        if not isinstance(config, StdioUpstream) and config.per_user:
            return PerUserUpstream(
                name,
                config,
                broker=self.broker,
                on_change=self._on_upstream_change,
                on_resource_updated=self._on_resource_updated,
                supervisor=self.supervisor,
            )
        return UpstreamConnection(
            name,
            config,
            on_change=self._on_upstream_change,
            on_resource_updated=self._on_resource_updated,
            open_transport=self._open_transport or open_transport,
            supervisor=self.supervisor,
        )

    def credential_stored(self, flow: PendingFlow) -> None:
        """A person just handed over a credential: a shared OAuth upstream connects now; a per-user one
        whose tools are not known yet opens that person's session to learn them (clients hear list_changed)."""
        connection = self.connections.get(flow.upstream)
        if isinstance(connection, PerUserUpstream):
            connection.prime(flow.identity_key)
        elif connection is not None and flow.identity_key == SHARED_PRINCIPAL:
            connection.reconnect()

    @property
    def globals(self) -> frozenset[str]:
        """Upstreams every caller may see (unless their grants say otherwise)."""
        return self._globals

    def calls_in_flight(self) -> int:
        return sum(len(c.in_flight) for c in self.connections.values())

    @property
    def ready(self) -> bool:
        """Every enabled upstream is connected."""
        return all(c.state is UpstreamState.CONNECTED for c in self.connections.values() if c.config.enabled)

    async def _on_upstream_change(self, connection: UpstreamConnection, kinds: frozenset[ListKind]) -> None:
        await self.rebuild()

    async def rebuild(self) -> None:
        """Merge every connected upstream's lists into a new catalog; tell listeners what changed."""
        async with self._rebuild_lock:
            before = self.catalog
            after = Catalog.build(
                (
                    Contribution(
                        upstream=c.name,
                        prefix=prefix_of(c.name, c.config),
                        tools=c.tools,
                        prompts=c.prompts,
                        resources=c.resources,
                        resource_templates=c.resource_templates,
                    )
                    for c in self.connections.values()
                    if c.state is UpstreamState.CONNECTED
                ),
                self.separator,
                self.config.dedupe,
            )
            self.catalog = after
        for collision in set(after.collisions) - set(before.collisions):
            logger.warning(collision.describe())
        changed = set()
        if before.tools != after.tools:
            changed.add(ListKind.TOOLS)
        if before.prompts != after.prompts:
            changed.add(ListKind.PROMPTS)
        if before.resources != after.resources or before.resource_templates != after.resource_templates:
            changed.add(ListKind.RESOURCES)
        if changed:
            for listener in self._catalog_listeners:
                await listener(frozenset(changed))

    async def _on_resource_updated(self, connection: UpstreamConnection, uri: str) -> None:
        for listener in self._resource_listeners:
            await listener(connection.name, uri)


def _connection_settings(config: UpstreamConfig) -> dict[str, object]:
    """The fields whose change needs a new session; the rest are read live from `config`."""
    return config.model_dump(exclude={"allow_on_all_virtual_keys", "description", "tool_mode", *LIVE_SETTINGS})


def _globals(connections: Mapping[str, UpstreamConnection]) -> frozenset[str]:
    return frozenset(n for n, c in connections.items() if c.config.allow_on_all_virtual_keys)
