"""`/healthz`, `/readyz` and `/metrics`: what an operator's probes and scrapers ask of one gateway.

Liveness (`/healthz`) fails only when `/mcp` cannot be served at all, so a restart is the
cure; readiness (`/readyz`) lists every reason to keep traffic away, one line each, and is
ready exactly when that list is empty.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mcp_gateway.http.gateway import Gateway
from mcp_gateway.http.sdk_server import is_running, open_sessions

_SERVING_STATES = ("connected", "disabled")
"""Upstream states that are no reason for a 503 (a disabled upstream is meant to be off)."""


def operator_routes(gateway: Gateway) -> list[Route]:
    """The probe endpoints of `gateway`, and `/metrics` when enabled (no authentication: no secrets in them)."""

    async def healthz(request: Request) -> JSONResponse:
        """Liveness: cheap, and failing only when `/mcp` cannot be served at all (restart the process)."""
        if not is_running(gateway.sessions):
            return JSONResponse({"status": "failing", "reason": "the MCP session manager is not running"}, 503)
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        manager = gateway.manager
        upstreams = [dict(c.summary()) for c in manager.connections.values()]
        upstreams += [
            {"name": name, "state": "invalid", "error": why} for name, why in gateway.skipped_upstreams.items()
        ]
        serving = is_running(gateway.sessions)
        tasks = gateway.supervisor.summary()
        problems = [
            *(f"upstream {u['name']} is {u['state']}" for u in upstreams if u["state"] not in _SERVING_STATES),
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
                "clients": len(gateway.clients),
                "sessions": {"running": serving, "open": open_sessions(gateway.sessions) if serving else 0},
                "store": {"reachable": gateway.store_error is None, "error": gateway.store_error},
                "tasks": tasks,
                "collisions": [c.describe() for c in manager.catalog.collisions],
            },
            status_code=200 if ready else 503,
        )

    routes = [Route("/healthz", endpoint=healthz, methods=["GET"]), Route("/readyz", endpoint=readyz, methods=["GET"])]
    metrics = gateway.metrics
    if metrics is not None:

        async def metrics_endpoint(request: Request) -> Response:
            return Response(metrics.exposition(), media_type=metrics.content_type)

        routes.append(Route("/metrics", endpoint=metrics_endpoint, methods=["GET"]))
    return routes
