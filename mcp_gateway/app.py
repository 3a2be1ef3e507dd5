"""The Starlette application and everything one running gateway owns.

Routes: /mcp (MCP clients), /api (admin), /healthz and /readyz (operators).

Source of truth for upstreams is the store: on start the config file's upstreams are mirrored
into it (rows from the admin API are kept), and the running set follows the store from then
on. Changes made by this process apply at once; changes made elsewhere (the CLI, another
replica) are noticed by polling one revision number.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import logging
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
from fastapi import HTTPException
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_gateway.answers import AnswerAsJson
from mcp_gateway.audit import AuditEvent, AuditLog
from mcp_gateway.calls import ToolCalls
from mcp_gateway.clients import ClientConnections
from mcp_gateway.config import (
    GatewayConfig,
    ServerSettings,
    SharedOAuth,
    StdioUpstream,
    UpstreamConfig,
    expand_environment,
)
from mcp_gateway.credentials.broker import SHARED_PRINCIPAL, CredentialBroker
from mcp_gateway.credentials.flows import FlowRegistry
from mcp_gateway.credentials.routes import credential_routes
from mcp_gateway.errors import AuthError, ConfigError, CredentialRequired
from mcp_gateway.guards import EnvelopeGuard, HostOriginGuard
from mcp_gateway.identity import Identity, IdentityMode, IdentityResolver, JwtVerifier, KeyGrant, UserAccess
from mcp_gateway.keys import KeyCaches
from mcp_gateway.metrics import Metrics
from mcp_gateway.policy import Policy
from mcp_gateway.ratelimit import call_limits, limit_requests
from mcp_gateway.request_context import RequestContextMiddleware
from mcp_gateway.sdk_server import end_session, is_running, open_sessions
from mcp_gateway.server import IDENTITY_SCOPE_KEY, build_server
from mcp_gateway.store import AuditEventIn, Store, StoreError, VirtualKeyRecord, open_store
from mcp_gateway.supervisor import Supervisor, describe
from mcp_gateway.toolmodes.base import ToolAccess, ToolMode
from mcp_gateway.toolmodes.codemode import META_TOOLS as CODE_META_TOOLS
from mcp_gateway.toolmodes.codemode import CodeMode
from mcp_gateway.toolmodes.presenter import Presenter
from mcp_gateway.toolmodes.search import META_TOOLS as SEARCH_META_TOOLS
from mcp_gateway.toolmodes.search import SearchMode
from mcp_gateway.upstreams.manager import UpstreamManager
from mcp_gateway.vault import open_vault

logger = logging.getLogger(__name__)

_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_UPSTREAM = TypeAdapter[Any](UpstreamConfig)
REVISION_POLL_SECONDS = 2.0
_SERVING_STATES = ("connected", "disabled")
"""Upstream states that are no reason for a 503 (a disabled upstream is meant to be off)."""
_RUNNING = "running"
_STORE_DOWN = "mcpgw cannot check credentials right now (its database is unavailable); try again shortly"


@dataclass
class Gateway:
    """Everything one running gateway owns; `app` is what uvicorn serves."""

    config: GatewayConfig
    manager: UpstreamManager
    clients: ClientConnections
    policy: Policy
    presenter: Presenter
    caches: KeyCaches
    sessions: StreamableHTTPSessionManager
    app: Starlette
    database_url: str | None
    resolver: IdentityResolver
    flows: FlowRegistry
    store: Store | None = None
    broker: CredentialBroker | None = None
    audit: AuditLog | None = None
    calls: ToolCalls | None = None
    """The call pipeline: every face that calls a tool as a caller goes through it."""
    supervisor: Supervisor = field(default_factory=Supervisor)
    skipped_upstreams: dict[str, str] = field(default_factory=dict)
    store_error: str | None = None
    """Why the store could not be read on the last poll; None while it answers."""
    _revision: int = -1
    _sync_lock: anyio.Lock = field(default_factory=anyio.Lock)

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

    async def shared_consent_link(self, upstream: str, caller_base: str | None) -> str:
        """The consent link an admin opens once for an `auth: oauth` upstream."""
        connection = self.manager.connections.get(upstream)
        config = connection.config if connection is not None else None
        if config is None or isinstance(config, StdioUpstream) or not isinstance(config.auth, SharedOAuth):
            raise HTTPException(409, f"upstream {upstream!r} does not use auth: oauth")
        if self.broker is None:
            raise HTTPException(503, "the gateway is starting or stopping; try again")
        needed = await self.broker.consent_link(SHARED_PRINCIPAL, upstream, config.auth, config.url, caller_base)
        if not isinstance(needed, CredentialRequired):
            raise HTTPException(502, needed.message)
        return needed.url


def resolve_database_url(config: GatewayConfig, override: str | None = None) -> str | None:
    return override or os.environ.get("DATABASE_URL") or config.database_url


def create_gateway(
    config: GatewayConfig,
    *,
    database_url: str | None = None,
    admin_token: str | None = None,
    insecure_admin: bool = False,
    supervisor: Supervisor | None = None,
) -> Gateway:
    """Build the gateway. `config` may still hold `${VAR}` references; they are expanded per upstream.

    `supervisor` runs the background tasks; tests pass one with a short restart backoff.
    """
    supervisor = supervisor or Supervisor()
    manager = UpstreamManager(config.model_copy(update={"upstreams": {}}), supervisor=supervisor)
    clients = ClientConnections(checkpoint=supervisor.checkpoint)
    policy = Policy(config.server.name_separator, lambda: manager.globals)
    gateway_ref: list[Gateway] = []

    async def grant_of(store: Store, record: VirtualKeyRecord) -> KeyGrant:
        """What identity needs to know of a key, its owner's standing included."""
        owner = await store.get_user(record.user_id) if record.user_id else None
        return KeyGrant(
            id=record.id,
            name=record.name,
            active=record.active,
            user_id=record.user_id,
            mcp_configs=dict(record.mcp_configs),
            user_active=owner is None or owner.active,
        )

    async def find_key(key_hash: str) -> KeyGrant | None:
        store = gateway_ref[0].store
        record = await store.find_virtual_key(key_hash) if store else None
        if record is None or store is None:
            return None
        if record.active:
            # Runs on cache misses only, so "last used" is accurate to the cache TTL (30 s)
            # and costs one write per key per TTL, not one per request.
            await store.touch_virtual_key(record.id)
        return await grant_of(store, record)

    async def find_user(user_id: str, claims: Mapping[str, Any]) -> UserAccess | None:
        store = gateway_ref[0].store
        if store is None:
            return None
        email = claims.get(config.auth.jwt.email_claim) if config.auth.jwt else None
        user = await store.upsert_user(user_id, email=email if isinstance(email, str) else None)
        return UserAccess(user.active, {k: tuple(v) for k, v in user.mcp_configs.items()})

    caches = KeyCaches(find_key, find_user)
    jwt = JwtVerifier(config.auth.jwt) if config.auth.jwt else None
    resolver = IdentityResolver(config.auth, caches.key, caches.user, jwt)
    flows = FlowRegistry()

    async def write_audit(events: Sequence[AuditEvent]) -> None:
        store = gateway_ref[0].store
        if store is not None:
            await store.record_audit([AuditEventIn(**_fields(e)) for e in events])

    metrics = (
        Metrics(
            manager,
            clients,
            gateway_tools=[tool.name for tool in (*SEARCH_META_TOOLS, *CODE_META_TOOLS)],
            invalid_upstreams=lambda: gateway_ref[0].skipped_upstreams,
        )
        if config.metrics.enabled
        else None
    )
    audit = AuditLog(write_audit, observers=[metrics.observe] if metrics is not None else ())

    async def refresh_identity(identity: Identity) -> Identity | None:
        """The same caller with the grants the store holds now; None once its key is disabled or deleted."""
        store = gateway_ref[0].store
        if store is None:
            return identity
        if identity.virtual_key is not None:
            record = await store.get_virtual_key(identity.virtual_key.id)
            grant = await grant_of(store, record) if record is not None else None
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

    async def end_client_session(session_id: str) -> None:
        await end_session(sessions, session_id)

    def mode_of(upstream: str) -> ToolMode:
        connection = manager.connections.get(upstream)
        configured = connection.config.tool_mode if connection is not None else None
        return configured or config.server.tool_mode

    presenter = Presenter(mode_of, {ToolMode.SEARCH: SEARCH_META_TOOLS, ToolMode.CODE: CODE_META_TOOLS})
    code_mode = _LazyCodeMode(CodeMode(config.server.code_mode))
    calls = ToolCalls(manager, policy, audit, credential_wait=config.server.credential_wait_seconds)
    server = build_server(
        manager,
        clients,
        policy,
        calls,
        refresh_identity,
        presenter,
        {ToolMode.SEARCH: SearchMode(), ToolMode.CODE: code_mode},
        end_session=end_client_session,
    )
    server.middleware.extend(call_limits(config.limits))
    security = transport_security(config.server)
    # Host/Origin are checked once, by HostOriginGuard in front of /mcp (before identity and rate
    # limits); handing the same settings to the SDK as well would check every request twice.
    sessions = StreamableHTTPSessionManager(
        app=server,
        security_settings=None,
        max_request_body_size=config.server.max_body_bytes,
    )

    async def healthz(request: Request) -> JSONResponse:
        """Liveness: cheap, and failing only when `/mcp` cannot be served at all (restart the process)."""
        if not is_running(sessions):
            return JSONResponse({"status": "failing", "reason": "the MCP session manager is not running"}, 503)
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        upstreams = [dict(c.summary()) for c in manager.connections.values()]
        upstreams += [
            {"name": name, "state": "invalid", "error": why} for name, why in gateway.skipped_upstreams.items()
        ]
        serving = is_running(sessions)
        tasks = supervisor.summary()
        # Every reason for a 503, one line each; ready is simply "no problems".
        problems = [
            *(
                f"upstream {u['name']} is {u['state']}"
                for u in upstreams
                if u["state"] not in ("connected", "disabled")
            ),
            *([] if serving else ["the MCP session manager is not running"]),
            *([] if gateway.store_error is None else [f"store unreachable: {gateway.store_error}"]),
            *(
                f"background task {t['name']} is {t['state']}"
                for t in tasks
                if t["required"] and t["state"] != "running"
            ),
        ]
        ready = not problems
        return JSONResponse(
            {
                "status": "ready" if ready else "degraded",
                "problems": problems,
                "upstreams": upstreams,
                "tools": len(manager.catalog.tools),
                "clients": len(clients),
                "sessions": {"running": serving, "open": open_sessions(sessions) if serving else 0},
                "store": {"reachable": gateway.store_error is None, "error": gateway.store_error},
                "tasks": tasks,
                "collisions": [c.describe() for c in manager.catalog.collisions],
            },
            status_code=200 if ready else 503,
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        url = resolve_database_url(config, database_url)
        gateway.store = await open_store(url)
        try:
            vault = await open_vault(gateway.store)
            gateway.broker = manager.broker = CredentialBroker(vault, flows, public_url=config.server.public_url)
            await gateway.store.mirror_config(
                {
                    name: (
                        u.model_dump(mode="json", exclude_defaults=True, exclude={"allow_on_all_virtual_keys"})
                        | {"transport": u.transport},
                        u.allow_on_all_virtual_keys,
                    )
                    for name, u in config.upstreams.items()
                }
            )
            async with anyio.create_task_group() as tg, sessions.run():
                await tg.start(manager.run)
                # Everything in this task group runs supervised: an exception in one of them would
                # otherwise cancel the group, and with it the session manager serving /mcp.
                supervisor.spawn(tg, "announcer", lambda: clients.run_announcer(supervisor.checkpoint), required=True)
                await gateway.sync()
                await manager.wait_first_attempts()
                supervisor.spawn(tg, "audit-writer", lambda: audit.run(supervisor.checkpoint), required=True)
                supervisor.spawn(tg, "store-watcher", gateway.watch_store, required=True)
                summary = ", ".join(f"{c.name}={c.state.value}" for c in manager.connections.values())
                logger.info("mcpgw ready: %d tools from %s", len(manager.catalog.tools), summary or "no upstreams")
                try:
                    yield
                finally:
                    supervisor.stopping = True
                    manager.stop()
                    await code_mode.close()
                    tg.cancel_scope.cancel()
        finally:
            if gateway.broker is not None:
                await gateway.broker.aclose()
                gateway.broker = manager.broker = None
            await gateway.store.close()

    # Host/Origin (421/403), the caller (401), the caller's request rate (429, before the body is
    # read), the body (413, JSON-RPC parse/envelope errors); then the SDK transport.
    guarded = EnvelopeGuard(AnswerAsJson(StreamableHTTPASGIApp(sessions)), config.server.max_body_bytes)
    mcp_endpoint = HostOriginGuard(IdentityMiddleware(limit_requests(guarded, config.limits), resolver), security)
    app = Starlette(
        routes=[
            Route("/mcp", endpoint=mcp_endpoint, methods=["GET", "POST", "DELETE"]),
            Route("/healthz", endpoint=healthz, methods=["GET"]),
            *credential_routes(
                flows,
                lambda: gateway.broker,
                lambda: {name: c.config for name, c in manager.connections.items()},
                manager.credential_stored,
            ),
            Route("/readyz", endpoint=readyz, methods=["GET"]),
            *([Route("/metrics", endpoint=metrics.endpoint, methods=["GET"])] if metrics is not None else []),
        ],
        middleware=[
            # Outermost: every log line of a request carries its id, and every response is counted.
            Middleware(RequestContextMiddleware, metrics=metrics),
            Middleware(
                CORSMiddleware,
                allow_origins=config.cors.allowed_origins,
                allow_methods=["GET", "POST", "DELETE", "PUT", "OPTIONS"],
                allow_headers=config.cors.allowed_headers,
                expose_headers=["Mcp-Session-Id", "X-Request-Id"],
            ),
        ],
        lifespan=lifespan,
    )
    gateway = Gateway(
        config=config,
        manager=manager,
        clients=clients,
        policy=policy,
        presenter=presenter,
        caches=caches,
        sessions=sessions,
        app=app,
        database_url=database_url,
        audit=audit,
        resolver=resolver,
        flows=flows,
        supervisor=supervisor,
        calls=calls,
    )
    gateway_ref.append(gateway)
    from mcp_gateway.admin_api import create_admin_api  # the admin API reads the Gateway it serves

    app.router.routes.insert(
        0, Mount("/api", app=create_admin_api(gateway, token=admin_token, insecure=insecure_admin))
    )
    return gateway


class _LazyCodeMode:
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


class IdentityMiddleware:
    """Resolves the caller before the MCP layer sees the request; refuses bad credentials with 401.

    The resolved identity also becomes the ASGI `user`, which makes the SDK bind each MCP
    session to the identity that created it (the same session id with other credentials: 404).
    """

    def __init__(self, app: ASGIApp, resolver: IdentityResolver) -> None:
        self.app = app
        self.resolver = resolver

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            identity = await self.resolver.resolve(headers)
        except AuthError as exc:
            await _unauthorized(exc.message, scope, receive, send)
            return
        except StoreError as exc:
            # A key not in the cache cannot be checked while the database is down: a retryable 503,
            # not a 500 with a traceback (and never a guess either way).
            logger.warning("cannot check a credential: %s", exc.message)
            body = {"jsonrpc": "2.0", "id": None, "error": {"code": -32603, "message": _STORE_DOWN}}
            await JSONResponse(body, status_code=503, headers={"Retry-After": "5"})(scope, receive, send)
            return
        scope.setdefault("state", {})[IDENTITY_SCOPE_KEY] = identity
        scope["user"] = _principal(identity)
        await self.app(scope, receive, send)


def _principal(identity: Identity) -> AuthenticatedUser:
    return AuthenticatedUser(AccessToken(token="", client_id="mcpgw", scopes=[], subject=identity.key))


async def _unauthorized(message: str, scope: Scope, receive: Receive, send: Send) -> None:
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": -32001, "message": message}}
    response = JSONResponse(body, status_code=401, headers={"WWW-Authenticate": 'Bearer realm="mcpgw"'})
    await response(scope, receive, send)


def transport_security(settings: ServerSettings) -> TransportSecuritySettings:
    """DNS-rebinding protection: on by default for loopback binds, or whenever hosts are listed."""
    loopback = is_loopback(settings.host)
    hosts = settings.allowed_hosts
    origins = settings.allowed_origins
    if hosts is None and loopback:
        hosts = [f"{name}:*" for name in _LOOPBACK_NAMES] + list(_LOOPBACK_NAMES)
    if origins is None and loopback:
        origins = [f"http://{name}:*" for name in _LOOPBACK_NAMES]
    if hosts is None:
        logger.warning(
            "bound to %s without server.allowed_hosts: Host/Origin checks on /mcp are off; "
            "list the hostnames clients use to turn them on",
            settings.host,
        )
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins or []
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
