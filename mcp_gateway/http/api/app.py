"""The REST API under /api: the admin endpoints (one module per resource) and the caller's own `/me`.

Admin endpoints need the admin token (`MCPGW_ADMIN_TOKEN`), a separate principal from MCP
callers, checked here in constant time and never logged. `/me/...` endpoints are the caller's
own, identified exactly as on `/mcp`. Errors, whatever raised them, answer `{"detail": ...}`
(`http/api/errors.py`).
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mcp_gateway.http.api.audit import audit_routes
from mcp_gateway.http.api.credentials import admin_credential_routes
from mcp_gateway.http.api.errors import ERRORS, install_error_handlers
from mcp_gateway.http.api.keys import virtual_key_routes
from mcp_gateway.http.api.llm import llm_routes
from mcp_gateway.http.api.me import caller_routes
from mcp_gateway.http.api.oauth import oauth_grant_routes
from mcp_gateway.http.api.upstreams import upstream_routes
from mcp_gateway.http.api.users import user_routes

if TYPE_CHECKING:
    from mcp_gateway.http.gateway import Gateway

DISABLED_DETAIL = (
    "admin API disabled: set MCPGW_ADMIN_TOKEN (or run mcpgw serve --insecure-admin on a loopback address)"
)


def create_admin_api(gateway: Gateway, *, token: str | None, insecure: bool = False) -> FastAPI:
    """The FastAPI app mounted at /api; `token` is compared in constant time and never logged."""
    api = FastAPI(
        title="mcpgw admin API",
        version="1",
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    install_error_handlers(api)
    router = APIRouter(dependencies=[Depends(_authorizer(gateway, token, insecure))], responses=ERRORS)
    upstream_routes(gateway, router)
    virtual_key_routes(gateway, router)
    audit_routes(gateway, router)
    user_routes(gateway, router)
    admin_credential_routes(gateway, router)
    llm_routes(gateway, router)
    oauth_grant_routes(gateway, router)
    api.include_router(router)
    api.include_router(caller_routes(gateway), responses=ERRORS)
    return api


# --- auth ----------------------------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, description="The admin token: `Authorization: Bearer <MCPGW_ADMIN_TOKEN>`.")


def _authorizer(gateway: Gateway, token: str | None, insecure: bool) -> Any:
    expected = token.encode("utf-8") if token else None
    token_env = gateway.config.admin.token_env
    how = f"send 'Authorization: Bearer <token>' with the admin token (the value of {token_env})"

    async def authorize(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
        if not gateway.config.admin.enabled:
            raise HTTPException(503, "admin API disabled in gateway.yaml (admin.enabled: false)")
        if expected is None:
            if insecure:
                return
            raise HTTPException(503, DISABLED_DETAIL)
        if credentials is None:
            raise HTTPException(401, f"admin token required: {how}", headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(credentials.credentials.encode("utf-8"), expected):
            raise HTTPException(401, f"invalid admin token: {how}", headers={"WWW-Authenticate": "Bearer"})

    return authorize
