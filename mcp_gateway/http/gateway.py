"""`Gateway`: everything one running gateway owns, and how it follows the store while it runs.

Why a module of its own: every face (the `/mcp` server, the admin API, the consent pages, the
coming LLM routes) reads the same runtime state — the upstream manager, the identity resolver,
the call pipeline, the store once it is open. Keeping that state here, apart from
`http/app.py` (which assembles the Starlette application), lets a face import `Gateway`
without importing the assembly that imports every face.

Source of truth for upstreams is the store: on start the config file's upstreams are mirrored
into it (rows from the admin API are kept), and the running set follows the store from then
on. Changes made by this process apply at once; changes made elsewhere (the CLI, another
replica) are noticed by polling one revision number.

Domain errors only (`NotReady`, `Conflict`, `UpstreamError`): the faces map them to HTTP.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import TypeAdapter, ValidationError

from llm_gateway.service import LlmService
from llm_gateway.usage import UsageEvent, UsageLog, observe_llm, usage_row
from mcp_gateway.audit import AuditEvent, AuditLog
from mcp_gateway.caller_tools import CallerTools
from mcp_gateway.calls import ToolCalls
from mcp_gateway.config import (
    GatewayConfig,
    SharedOAuth,
    StdioUpstream,
    UpstreamConfig,
    expand_environment,
    expand_llm_environment,
)
from mcp_gateway.config_llm import overlay
from mcp_gateway.credentials.broker import SHARED_PRINCIPAL, CredentialBroker
from mcp_gateway.credentials.flows import FlowRegistry
from mcp_gateway.errors import ConfigError, Conflict, CredentialRequired, NotReady, UpstreamError
from mcp_gateway.http.clients import ClientConnections
from mcp_gateway.http.fast_calls import FastCalls, SessionFacts
from mcp_gateway.http.tool_lists import ToolLists
from mcp_gateway.identity import (
    Identity,
    IdentityMode,
    IdentityResolver,
    JwtVerifier,
    KeyGrant,
    UserAccess,
    key_grant,
)
from mcp_gateway.keys import KeyCaches
from mcp_gateway.metrics import Metrics
from mcp_gateway.oauth_server.tokens import IssuedTokenCheck, TokenKeys
from mcp_gateway.policy import Policy
from mcp_gateway.store import AuditEventIn, Store, VirtualKeyRecord, open_store
from mcp_gateway.supervisor import Supervisor, describe
from mcp_gateway.toolmodes.base import ToolAccess, ToolMode
from mcp_gateway.toolmodes.codemode import META_TOOLS as CODE_META_TOOLS
from mcp_gateway.toolmodes.codemode import CodeMode
from mcp_gateway.toolmodes.presenter import Presenter
from mcp_gateway.toolmodes.search import META_TOOLS as SEARCH_META_TOOLS
from mcp_gateway.toolmodes.search import SearchMode
from mcp_gateway.upstreams.manager import UpstreamManager
from mcp_gateway.vault import open_vault

if TYPE_CHECKING:
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from starlette.applications import Starlette

logger = logging.getLogger(__name__)

_UPSTREAM = TypeAdapter[Any](UpstreamConfig)
REVISION_POLL_SECONDS = 2.0


def resolve_database_url(config: GatewayConfig, override: str | None = None) -> str | None:
    """The store to open: the command line, then `DATABASE_URL`, then the config file (None: embedded SQLite)."""
    return override or os.environ.get("DATABASE_URL") or config.database_url


class Gateway:
    """Everything one running gateway owns; `app` is what uvicorn serves (set by `http.app.create_gateway`).

    `supervisor` runs the background tasks; tests pass one with a short restart backoff.
    """

    sessions: StreamableHTTPSessionManager
    """The SDK's session manager behind `/mcp` (set by the assembly: it needs the MCP server)."""
    fast: FastCalls | None = None
    """The `/mcp` fast path for plain tools/call (None when switched off)."""
    tool_lists: ToolLists | None = None
    """Shaped `tools/list` pages per view (set with the MCP server)."""
    app: Starlette

    def __init__(self, config: GatewayConfig, *, database_url: str | None, supervisor: Supervisor) -> None:
        self.config = config
        self.database_url = database_url
        self.supervisor = supervisor
        self.store: Store | None = None
        self.broker: CredentialBroker | None = None
        self.skipped_upstreams: dict[str, str] = {}
        self.store_error: str | None = None
        """Why the store could not be read on the last poll; None while it answers."""
        self._revision = -1
        self._sync_lock = anyio.Lock()

        self.manager = UpstreamManager(config.model_copy(update={"upstreams": {}}), supervisor=supervisor)
        self.clients = ClientConnections(checkpoint=supervisor.checkpoint)
        self.facts = SessionFacts()
        """What the fast path must know of each MCP session (the client's capabilities)."""
        self.policy = Policy(config.server.name_separator, lambda: self.manager.globals)
        self.caches = KeyCaches(self._find_key, self._find_user, self._find_key_by_id)
        jwt = JwtVerifier(config.auth.jwt) if config.auth.jwt else None
        self.oauth_keys: TokenKeys | None = None
        """The keys of the gateway's own OAuth server for `/mcp` (loaded from the vault while running)."""
        self.revoked_grants: frozenset[str] = frozenset()
        self._issued: IssuedTokenCheck | None = None
        self.resolver = IdentityResolver(
            config.auth,
            self.caches.key,
            self.caches.user,
            jwt,
            lookup_key_by_id=self.caches.key_by_id,
            issued=lambda: self._issued,
        )
        self.flows = FlowRegistry()
        self.metrics = (
            Metrics(
                self.manager,
                self.clients,
                gateway_tools=[tool.name for tool in (*SEARCH_META_TOOLS, *CODE_META_TOOLS)],
                invalid_upstreams=lambda: self.skipped_upstreams,
            )
            if config.metrics.enabled
            else None
        )
        self.audit = AuditLog(self._write_audit, observers=[self.metrics.observe] if self.metrics is not None else ())
        self.presenter = Presenter(self._mode_of, {ToolMode.SEARCH: SEARCH_META_TOOLS, ToolMode.CODE: CODE_META_TOOLS})
        self.code_mode = LazyCodeMode(CodeMode(config.server.code_mode))
        self.calls = ToolCalls(
            self.manager, self.policy, self.audit, credential_wait=config.server.credential_wait_seconds
        )
        """The call pipeline: every face that calls a tool as a caller goes through it."""
        self.tools = CallerTools(
            self.policy,
            self.presenter,
            self.calls,
            lambda: self.manager.catalog,
            self._upstream_config,
            {ToolMode.SEARCH: SearchMode(), ToolMode.CODE: self.code_mode},
        )
        """Each caller's tools as `/mcp` lists them, and calling them (meta tools too): `/mcp` and the LLM faces."""
        # Expanded here, not per row like upstreams: the llm section lives in the file only.
        llm = expand_llm_environment(config.llm, os.environ, source="gateway.yaml")
        self.llm: LlmService | None = None
        """The LLM gateway (`/anthropic`, `/openai`); None when no provider is configured."""
        self.llm_skipped: dict[str, str] = {}
        """Run-time LLM settings (admin API, CLI) that could not be applied, with why."""
        if llm.enabled:
            metrics = self.metrics
            observers = [self._observe_llm] if metrics is not None else []
            usage = UsageLog(self._write_llm_usage, observers=observers)
            self.llm = LlmService(llm, usage, spent_since=self._llm_spent_since, tools=self.tools)

    # -- identity, as the store holds it ------------------------------------------------------

    async def _grant_of(self, store: Store, record: VirtualKeyRecord) -> KeyGrant:
        """What identity needs to know of a key, its owner's standing included."""
        owner = await store.get_user(record.user_id) if record.user_id else None
        return key_grant(record, user_active=owner is None or owner.active)

    async def _find_key(self, key_hash: str) -> KeyGrant | None:
        store = self.store
        record = await store.find_virtual_key(key_hash) if store else None
        if record is None or store is None:
            return None
        if record.active:
            # Runs on cache misses only, so "last used" is accurate to the cache TTL (30 s)
            # and costs one write per key per TTL, not one per request.
            await store.touch_virtual_key(record.id)
        return await self._grant_of(store, record)

    async def _find_key_by_id(self, key_id: str) -> KeyGrant | None:
        store = self.store
        record = await store.get_virtual_key(key_id) if store else None
        if record is None or store is None:
            return None
        return await self._grant_of(store, record)

    def grant_revoked(self, grant_id: str) -> None:
        """An OAuth grant was revoked in this process: refuse its access tokens from now on."""
        self.revoked_grants = self.revoked_grants | {grant_id}

    async def find_user_by_id(self, user_id: str) -> UserAccess | None:
        """A user's standing, without recording a sign-in (None: no such user)."""
        user = await self.store.get_user(user_id) if self.store else None
        return UserAccess(user.active, {k: tuple(v) for k, v in user.mcp_configs.items()}) if user else None

    async def _find_user(self, user_id: str, claims: Mapping[str, Any]) -> UserAccess | None:
        if self.store is None:
            return None
        jwt = self.config.auth.jwt
        email = claims.get(jwt.email_claim) if jwt else None
        user = await self.store.upsert_user(user_id, email=email if isinstance(email, str) else None)
        return UserAccess(user.active, {k: tuple(v) for k, v in user.mcp_configs.items()})

    async def refresh_identity(self, identity: Identity) -> Identity | None:
        """The same caller with the grants the store holds now; None once its key (or user) is disabled or deleted."""
        store = self.store
        if store is None:
            return identity
        if identity.virtual_key is not None:
            record = await store.get_virtual_key(identity.virtual_key.id)
            grant = await self._grant_of(store, record) if record is not None else None
            if grant is None or not grant.active or not grant.user_active:
                return None
            return dataclasses.replace(identity, grants=grant.mcp_configs)
        if identity.mode is IdentityMode.USER and identity.user_id:
            user = await store.get_user(identity.user_id)
            if user is not None and not user.active:
                return None
            grants = {k: tuple(v) for k, v in user.mcp_configs.items()} if user is not None else identity.grants
            return dataclasses.replace(identity, grants=grants)
        return identity

    def _observe_llm(self, event: UsageEvent) -> None:
        if self.metrics is not None and self.llm is not None:
            observe_llm(self.metrics, event, self.llm.known_models)

    async def _apply_llm_settings(self) -> None:
        """The `llm:` section of the file with the store's run-time entries over it, applied to the LLM service."""
        if self.llm is None or self.store is None:
            return
        rows = [(r.kind, r.name, dict(r.config)) for r in await self.store.list_llm_settings()]
        merged, skipped = overlay(self.config.llm, rows)
        try:
            merged = expand_llm_environment(merged, os.environ, source="llm settings")
        except ConfigError as exc:
            skipped["llm"] = f"run-time settings ignored: {exc.message}"
            merged = expand_llm_environment(self.config.llm, os.environ, source="gateway.yaml")
        for what, why in skipped.items():
            if self.llm_skipped.get(what) != why:
                logger.error("LLM setting %s not applied: %s", what, why)
        self.llm_skipped = skipped
        self.llm.reconfigure(merged)

    async def _llm_spent_since(self, virtual_key_id: str, since: datetime) -> float:
        return await self.running_store().llm_spent_usd(virtual_key_id, since)

    async def _write_llm_usage(self, events: Sequence[UsageEvent]) -> None:
        if self.store is not None:
            await self.store.record_llm_usage([usage_row(e) for e in events])

    async def _write_audit(self, events: Sequence[AuditEvent]) -> None:
        if self.store is not None:
            await self.store.record_audit([AuditEventIn(**_fields(e)) for e in events])

    def _upstream_config(self, upstream: str) -> UpstreamConfig | None:
        connection = self.manager.connections.get(upstream)
        return connection.config if connection is not None else None

    def _mode_of(self, upstream: str) -> ToolMode:
        connection = self.manager.connections.get(upstream)
        configured = connection.config.tool_mode if connection is not None else None
        return configured or self.config.server.tool_mode

    # -- running ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self, *faces: AbstractAsyncContextManager[Any]) -> AsyncIterator[None]:
        """Open the store and vault, start upstreams and every background task; stop them all on exit.

        `faces` (the SDK session manager behind `/mcp`) run inside the same task group, entered
        after it and left before the upstreams are stopped.
        """
        self.store = await open_store(resolve_database_url(self.config, self.database_url))
        supervisor = self.supervisor
        try:
            vault = await open_vault(self.store)
            if self.config.auth.mcp_auth != "headers":
                self.oauth_keys = await TokenKeys.load_or_create(vault)
                self._issued = IssuedTokenCheck(
                    self.oauth_keys, self.config.server.public_url, lambda: self.revoked_grants
                )
            self.broker = self.manager.broker = CredentialBroker(
                vault, self.flows, public_url=self.config.server.public_url
            )
            await self.store.mirror_config(
                {
                    name: (
                        u.model_dump(mode="json", exclude_defaults=True, exclude={"allow_on_all_virtual_keys"})
                        | {"transport": u.transport},
                        u.allow_on_all_virtual_keys,
                    )
                    for name, u in self.config.upstreams.items()
                }
            )
            async with anyio.create_task_group() as tg, contextlib.AsyncExitStack() as stack:
                for face in faces:
                    await stack.enter_async_context(face)
                await tg.start(self.manager.run)
                # Everything in this task group runs supervised: an exception in one of them would
                # otherwise cancel the group, and with it the session manager serving /mcp.
                announcer = self.clients.run_announcer
                supervisor.spawn(tg, "announcer", lambda: announcer(supervisor.checkpoint), required=True)
                await self.sync()
                await self.manager.wait_first_attempts()
                supervisor.spawn(tg, "audit-writer", lambda: self.audit.run(supervisor.checkpoint), required=True)
                supervisor.spawn(tg, "store-watcher", self.watch_store, required=True)
                if self.llm is not None:
                    usage = self.llm.usage
                    supervisor.spawn(tg, "usage-writer", lambda: usage.run(supervisor.checkpoint), required=True)
                connections = self.manager.connections.values()
                summary = ", ".join(f"{c.name}={c.state.value}" for c in connections)
                logger.info("mcpgw ready: %d tools from %s", len(self.manager.catalog.tools), summary or "no upstreams")
                try:
                    yield
                finally:
                    supervisor.stopping = True
                    self.manager.stop()
                    await self.code_mode.close()
                    tg.cancel_scope.cancel()
        finally:
            if self.broker is not None:
                await self.broker.aclose()
                self.broker = self.manager.broker = None
            await self.store.close()

    async def sync(self) -> None:
        """Bring the running gateway in line with the store (upstreams, keys, grants)."""
        assert self.store is not None
        async with self._sync_lock:
            self._revision = await self.store.revision()
            self.caches.clear()
            self.policy.invalidate()
            self.presenter.invalidate()
            await self.manager.apply(await self._upstreams_from_store())
            await self.manager.announce()
            await self._apply_llm_settings()
            if self._issued is not None:
                # Tokens of grants revoked longer ago than a token lives have expired by themselves.
                since = datetime.now(UTC) - timedelta(seconds=self.config.auth.oauth.access_token_seconds + 120)
                self.revoked_grants = frozenset(await self.store.oauth_grants_revoked_since(since))

    async def _upstreams_from_store(self) -> dict[str, UpstreamConfig]:
        assert self.store is not None
        records = await self.store.list_upstreams()
        file_order = list(self.config.upstreams)
        records = sorted(
            records, key=lambda r: (file_order.index(r.name) if r.name in file_order else len(file_order), r.name)
        )
        upstreams: dict[str, UpstreamConfig] = {}
        self.skipped_upstreams = {}
        for record in records:
            try:
                raw = _UPSTREAM.validate_python(
                    {**record.config, "allow_on_all_virtual_keys": record.allow_on_all_virtual_keys}
                )
                expanded = expand_environment(GatewayConfig(upstreams={record.name: raw}), os.environ, source="store")
                upstreams[record.name] = expanded.upstreams[record.name]
            except (ValidationError, ConfigError) as exc:
                # One bad row (e.g. a variable unset on this machine) must not keep the rest down.
                self.skipped_upstreams[record.name] = str(exc).splitlines()[0]
                logger.error("upstream %s not started: %s", record.name, self.skipped_upstreams[record.name])
        return upstreams

    async def watch_store(self) -> None:
        """Poll the store's revision; apply changes made elsewhere. Also what `/readyz` knows of the store."""
        assert self.store is not None
        while True:
            await anyio.sleep(REVISION_POLL_SECONDS)
            self.supervisor.checkpoint("store-watcher")
            try:
                revision = await self.store.revision()
            except Exception as exc:  # a database outage must not stop the watcher: report it, retry next tick
                if self.store_error is None:
                    logger.error("cannot read the store: %s", describe(exc), exc_info=exc)
                self.store_error = describe(exc)
                continue
            if self.store_error is not None:
                logger.warning("the store answers again (was: %s)", self.store_error)
                self.store_error = None
            if revision != self._revision:
                await self.sync()

    def running_store(self) -> Store:
        """The store, which is open only while the gateway runs."""
        if self.store is None:
            raise NotReady("the gateway is starting or stopping; try again")
        return self.store

    def running_broker(self) -> CredentialBroker:
        """The credential broker, which exists only while the gateway runs (it needs the store)."""
        if self.broker is None:
            raise NotReady("the gateway is starting or stopping; try again")
        return self.broker

    async def shared_consent_link(self, upstream: str, caller_base: str | None) -> str:
        """The consent link an admin opens once for an `auth: oauth` upstream."""
        connection = self.manager.connections.get(upstream)
        config = connection.config if connection is not None else None
        if config is None or isinstance(config, StdioUpstream) or not isinstance(config.auth, SharedOAuth):
            raise Conflict(f"upstream {upstream!r} does not use auth: oauth")
        needed = await self.running_broker().consent_link(
            SHARED_PRINCIPAL, upstream, config.auth, config.url, caller_base
        )
        if not isinstance(needed, CredentialRequired):
            raise UpstreamError(upstream, needed.message)
        return needed.url


class LazyCodeMode:
    """Starts the sandbox worker pool on the first `run_code`, so gateways without code mode pay nothing."""

    def __init__(self, code_mode: CodeMode) -> None:
        self._code_mode = code_mode
        self._lock = anyio.Lock()
        self._started = False

    async def call(self, name: str, arguments: Mapping[str, Any], access: ToolAccess) -> dict[str, Any]:
        if not self._started:
            async with self._lock:
                if not self._started:
                    await self._code_mode.start()
                    self._started = True
        return await self._code_mode.call(name, arguments, access)

    async def close(self) -> None:
        if self._started:
            self._started = False
            with anyio.CancelScope(shield=True):
                await self._code_mode.close()


def _fields(event: AuditEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in AuditEvent.__dataclass_fields__}
