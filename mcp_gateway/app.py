"""The Starlette application: /mcp for MCP clients, /healthz and /readyz for operators."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mcp_gateway.clients import ClientConnections
from mcp_gateway.config import GatewayConfig, ServerSettings
from mcp_gateway.server import build_server
from mcp_gateway.upstreams.manager import UpstreamManager

logger = logging.getLogger(__name__)

_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


@dataclass
class Gateway:
    """Everything one running gateway owns; `app` is what uvicorn serves."""

    config: GatewayConfig
    manager: UpstreamManager
    clients: ClientConnections
    sessions: StreamableHTTPSessionManager
    app: Starlette


def create_gateway(config: GatewayConfig) -> Gateway:
    manager = UpstreamManager(config)
    clients = ClientConnections()
    server = build_server(manager, clients)
    sessions = StreamableHTTPSessionManager(app=server, security_settings=transport_security(config.server))

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        upstreams = [dict(c.summary()) for c in manager.connections.values()]
        ready = manager.ready
        return JSONResponse(
            {
                "status": "ready" if ready else "degraded",
                "upstreams": upstreams,
                "tools": len(manager.catalog.tools),
                "clients": len(clients),
                "collisions": [c.describe() for c in manager.catalog.collisions],
            },
            status_code=200 if ready else 503,
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg, sessions.run():
            await tg.start(manager.run)
            summary = ", ".join(f"{c.name}={c.state.value}" for c in manager.connections.values())
            logger.info("mcpgw ready: %d tools from %s", len(manager.catalog.tools), summary or "no upstreams")
            try:
                yield
            finally:
                manager.stop()
                tg.cancel_scope.cancel()

    app = Starlette(
        routes=[
            Route("/mcp", endpoint=StreamableHTTPASGIApp(sessions), methods=["GET", "POST", "DELETE"]),
            Route("/healthz", endpoint=healthz, methods=["GET"]),
            Route("/readyz", endpoint=readyz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    return Gateway(config=config, manager=manager, clients=clients, sessions=sessions, app=app)


def transport_security(settings: ServerSettings) -> TransportSecuritySettings:
    """DNS-rebinding protection: on by default for loopback binds, or whenever hosts are listed."""
    loopback = _is_loopback(settings.host)
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


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
