"""The admin REST API under /api: upstreams ("MCP clients"), virtual keys, users and the audit log.

Every change is written to the store first and then applied with `Gateway.sync()`: the same path
a change made by the CLI or another replica takes, minus the wait for the revision poll. So a new
upstream starts at once, a disabled key is refused on its very next request, and connected
clients whose visible tools changed are sent `list_changed`.

Secrets stay in: upstream `headers` and `env` values come back as `***` unless they are
`${VAR}` references, a virtual key is shown once (in the response that creates it), and
validation errors never echo the submitted input.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, StringConstraints, model_validator
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_gateway.admin_fields import Body, McpConfigsField, UpstreamNameField
from mcp_gateway.admin_users import admin_user_routes
from mcp_gateway.config import UPSTREAM_NAME_PATTERN, UpstreamConfig
from mcp_gateway.credentials.api import admin_credential_routes, caller_credential_routes
from mcp_gateway.store import (
    UNSET,
    AuditEventRecord,
    AuditOutcome,
    IdentityMode,
    RecordNotFound,
    Store,
    StoreError,
    UpstreamRecord,
    UpstreamSource,
    VirtualKeyRecord,
)
from mcp_gateway.upstreams.connection import UpstreamState

if TYPE_CHECKING:
    from mcp_gateway.app import Gateway

logger = logging.getLogger(__name__)

REDACTED = "***"
DISABLED_DETAIL = (
    "admin API disabled: set MCPGW_ADMIN_TOKEN (or run mcpgw serve --insecure-admin on a loopback address)"
)
_SECRET_FIELDS = ("headers", "env")
_ENV_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}")
_CONFIG_FILE_NOTE = (
    "this upstream comes from gateway.yaml: the change applies now, but the next start mirrors the file "
    "again and overwrites it; edit gateway.yaml to keep it"
)


# --- request and response bodies -----------------------------------------------------------------

StateName = Literal["connecting", "connected", "disconnected", "needs_reauth", "disabled", "invalid", "pending"]


class UpstreamCreate(Body):
    name: UpstreamNameField
    allow_on_all_virtual_keys: bool | None = Field(
        default=None, description="Default: the value in `config`, else false."
    )
    config: UpstreamConfig = Field(
        description=f'As in gateway.yaml, `transport` included. A value of "{REDACTED}" is refused; '
        "use the real value or a ${VAR} reference."
    )


class UpstreamUpdate(Body):
    allow_on_all_virtual_keys: bool | None = None
    config: UpstreamConfig | None = Field(
        default=None,
        description=f'Replaces the whole config. A `headers`/`env` value of "{REDACTED}" keeps the stored value '
        "for that key, so a config read from this API can be sent back unchanged.",
    )

    @model_validator(mode="after")
    def _something(self) -> UpstreamUpdate:
        if self.config is None and self.allow_on_all_virtual_keys is None:
            raise ValueError("give `config`, `allow_on_all_virtual_keys`, or both")
        return self


class StateChangeOut(BaseModel):
    at: datetime = Field(description="When, in UTC.")
    state: StateName
    reason: str


class UpstreamOut(BaseModel):
    id: str
    name: str
    transport: str
    state: StateName = Field(
        description="`invalid`: the stored config cannot be started here (see `error`); "
        "`pending`: stored but not applied yet; `needs_reauth`: its credentials need a person to sign in again."
    )
    tools: int
    prompts: int
    resources: int
    error: str | None
    history: list[StateChangeOut] = Field(
        default_factory=list, description="The latest state changes, oldest first (about 50 are kept)."
    )
    allow_on_all_virtual_keys: bool
    source: UpstreamSource = Field(description="`config`: mirrored from gateway.yaml; `api`: created here or by CLI.")
    config: dict[str, Any] = Field(description=f'The stored config; `headers`/`env` values are "{REDACTED}".')


class UpstreamUpdated(UpstreamOut):
    note: str | None = None


class ReconnectStarted(BaseModel):
    id: str
    name: str
    detail: str


class ToolOut(BaseModel):
    name: str = Field(description="As clients see it (prefixed).")
    upstream: str
    original_name: str
    title: str | None
    description: str | None


class VirtualKeyCreate(Body):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    description: str | None = None
    user_id: str | None = Field(default=None, description="An existing user who owns the key.")
    mcp_configs: McpConfigsField


class VirtualKeyUpdate(Body):
    """Only the fields present change; `description` and `user_id` may be null to clear them."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    description: str | None = None
    active: bool | None = None
    user_id: str | None = None
    mcp_configs: McpConfigsField | None = None

    @model_validator(mode="after")
    def _no_null_for_required(self) -> VirtualKeyUpdate:
        for name in ("name", "active", "mcp_configs"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"`{name}` cannot be null")
        return self


class VirtualKeyOut(BaseModel):
    id: str
    name: str
    description: str | None
    key_prefix: str = Field(description="The key's first characters, to tell keys apart.")
    user_id: str | None
    active: bool
    mcp_configs: dict[str, list[str]]
    created_at: datetime
    updated_at: datetime
    last_used_at: datetime | None


class VirtualKeyCreated(VirtualKeyOut):
    key: str = Field(description="The key itself. Shown only in this response: store it now.")


class VirtualKeyPage(BaseModel):
    items: list[VirtualKeyOut]
    total: int


class AuditEventOut(BaseModel):
    id: int
    ts: datetime
    identity_mode: IdentityMode
    subject: str | None = Field(description="User id, virtual key id, or a hash of the session id.")
    virtual_key_id: str | None
    upstream: str | None
    tool: str | None
    method: str
    duration_ms: float
    outcome: AuditOutcome
    detail: str | None


class AuditPage(BaseModel):
    items: list[AuditEventOut] = Field(description="Newest first; page back with `before_id=<last id>`.")


class ErrorOut(BaseModel):
    detail: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Missing or wrong admin token."},
    503: {"model": ErrorOut, "description": "Admin API disabled, or the store is unavailable."},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut}}
_CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": ErrorOut}}


# --- the app -------------------------------------------------------------------------------------


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
    api.add_middleware(_InternalErrors)
    api.add_exception_handler(RequestValidationError, _validation_failed)  # type: ignore[arg-type]
    api.add_exception_handler(StoreError, _store_failed)  # type: ignore[arg-type]
    router = APIRouter(dependencies=[Depends(_authorizer(gateway, token, insecure))], responses=_ERRORS)

    def store() -> Store:
        if gateway.store is None:
            raise HTTPException(503, "the gateway is starting or stopping; try again")
        return gateway.store

    def upstream_out(record: UpstreamRecord) -> UpstreamOut:
        state: StateName = "pending"
        counts = {"tools": 0, "prompts": 0, "resources": 0}
        error: str | None = None
        history: list[StateChangeOut] = []
        connection = gateway.manager.connections.get(record.name)
        if record.name in gateway.skipped_upstreams:
            state, error = "invalid", gateway.skipped_upstreams[record.name]
        elif connection is not None:
            summary = connection.summary()
            state, error = summary["state"], summary["error"]
            counts = {kind: int(summary[kind]) for kind in counts}
            history = [StateChangeOut.model_validate(change) for change in summary["history"]]
        return UpstreamOut(
            id=record.id,
            name=record.name,
            transport=str(record.config.get("transport", "")),
            state=state,
            error=error,
            history=history,
            allow_on_all_virtual_keys=record.allow_on_all_virtual_keys,
            source=record.source,
            config=redact(record.config),
            **counts,
        )

    async def find_upstream(ref: str) -> UpstreamRecord:
        if UPSTREAM_NAME_PATTERN.match(ref):
            record = await store().get_upstream(ref)
            if record is not None:
                return record
        for record in await store().list_upstreams():
            if record.id == ref:
                return record
        raise HTTPException(404, f"no upstream with id or name {ref!r}")

    # --- upstreams -------------------------------------------------------------------------------

    @router.get("/mcp/clients", tags=["upstreams"])
    async def list_upstreams() -> list[UpstreamOut]:
        """Every stored upstream with its live state."""
        return [upstream_out(record) for record in await store().list_upstreams()]

    @router.post("/mcp/clients", status_code=201, tags=["upstreams"], responses=_CONFLICT)
    async def create_upstream(body: UpstreamCreate) -> UpstreamOut:
        """Add an upstream; it starts at once and its tools reach clients when it connects."""
        if await store().get_upstream(body.name) is not None:
            raise HTTPException(409, f"an upstream named {body.name!r} exists; PUT /api/mcp/client/{body.name}")
        config = _stored_config(body.config, previous={}, loc=("body", "config"))
        allow = _flag(body.allow_on_all_virtual_keys, body.config, current=False)
        record = await store().put_upstream(body.name, config, allow_on_all_virtual_keys=allow, source="api")
        await gateway.sync()
        logger.info("admin API: added upstream %s (%s)", record.name, config["transport"])
        return upstream_out(record)

    @router.get("/mcp/client/{id}", tags=["upstreams"], responses=_NOT_FOUND)
    async def get_upstream(id: str) -> UpstreamOut:
        """One upstream, by record id or name."""
        return upstream_out(await find_upstream(id))

    @router.put("/mcp/client/{id}", tags=["upstreams"], responses=_NOT_FOUND)
    async def update_upstream(id: str, body: UpstreamUpdate) -> UpstreamUpdated:
        """Replace the config and/or the visibility flag; a changed connection setting reconnects."""
        current = await find_upstream(id)
        config = current.config
        if body.config is not None:
            config = _stored_config(body.config, previous=current.config, loc=("body", "config"))
        allow = _flag(body.allow_on_all_virtual_keys, body.config, current=current.allow_on_all_virtual_keys)
        record = await store().put_upstream(
            current.name, config, allow_on_all_virtual_keys=allow, source=current.source
        )
        await gateway.sync()
        logger.info("admin API: updated upstream %s", record.name)
        note = _CONFIG_FILE_NOTE if record.source == "config" else None
        return UpstreamUpdated(**upstream_out(record).model_dump(), note=note)

    @router.delete("/mcp/client/{id}", status_code=204, tags=["upstreams"], responses=_NOT_FOUND)
    async def delete_upstream(id: str) -> Response:
        """Stop and remove an upstream (one from gateway.yaml returns on the next start)."""
        record = await find_upstream(id)
        if not await store().delete_upstream(record.name):
            raise HTTPException(404, f"no upstream with id or name {id!r}")
        await gateway.sync()
        logger.info("admin API: removed upstream %s", record.name)
        return Response(status_code=204)

    @router.post("/mcp/client/{id}/reconnect", status_code=202, tags=["upstreams"], responses=_NOT_FOUND | _CONFLICT)
    async def reconnect_upstream(id: str) -> ReconnectStarted:
        """Drop the upstream's session (if any) and connect again now."""
        record = await find_upstream(id)
        if record.name in gateway.skipped_upstreams:
            why = gateway.skipped_upstreams[record.name]
            raise HTTPException(409, f"upstream {record.name!r} cannot start: {why}; fix its config first")
        connection = gateway.manager.connections.get(record.name)
        if connection is None:
            raise HTTPException(409, f"upstream {record.name!r} is not running yet; try again in a moment")
        if connection.state is UpstreamState.DISABLED:
            raise HTTPException(409, f"upstream {record.name!r} is disabled (enabled: false); enable it first")
        connection.reconnect()
        return ReconnectStarted(id=record.id, name=record.name, detail=f"reconnecting {record.name!r}")

    @router.get("/mcp/tools", tags=["upstreams"])
    async def list_tools() -> list[ToolOut]:
        """Every tool of every connected upstream, as clients would see them without any policy."""
        catalog = gateway.manager.catalog
        return [
            ToolOut(
                name=tool.name,
                upstream=catalog.tool_routes[tool.name].upstream,
                original_name=catalog.tool_routes[tool.name].original,
                title=tool.title,
                description=tool.description,
            )
            for tool in catalog.tools
        ]

    # --- virtual keys ----------------------------------------------------------------------------

    async def find_key(id: str) -> VirtualKeyRecord:
        record = await store().get_virtual_key(id)
        if record is None:
            raise HTTPException(404, f"no virtual key with id {id!r}")
        return record

    @router.get("/virtual-keys", tags=["virtual keys"])
    async def list_virtual_keys(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100, offset: Annotated[int, Query(ge=0)] = 0
    ) -> VirtualKeyPage:
        """A page of keys, newest first (never the keys themselves)."""
        records = await store().list_virtual_keys(limit=limit, offset=offset)
        return VirtualKeyPage(items=[_key_out(r) for r in records], total=await store().count_virtual_keys())

    @router.post("/virtual-keys", status_code=201, tags=["virtual keys"])
    async def create_virtual_key(body: VirtualKeyCreate) -> VirtualKeyCreated:
        """Create an active key; the response is the only time the key is shown."""
        try:
            record, key = await store().create_virtual_key(
                body.name, description=body.description, user_id=body.user_id, mcp_configs=body.mcp_configs
            )
        except RecordNotFound as exc:
            raise _invalid(("body", "user_id"), exc.message) from None
        await gateway.sync()
        logger.info("admin API: created virtual key %s (%s)", record.id, record.key_prefix)
        return VirtualKeyCreated(**_key_out(record).model_dump(), key=key)

    @router.get("/virtual-keys/{id}", tags=["virtual keys"], responses=_NOT_FOUND)
    async def get_virtual_key(id: str) -> VirtualKeyOut:
        return _key_out(await find_key(id))

    @router.put("/virtual-keys/{id}", tags=["virtual keys"], responses=_NOT_FOUND)
    async def update_virtual_key(id: str, body: VirtualKeyUpdate) -> VirtualKeyOut:
        """Change the fields present; takes effect on the key's next request."""
        given = body.model_fields_set
        try:
            record = await store().update_virtual_key(
                id,
                name=body.name if "name" in given and body.name is not None else UNSET,
                description=body.description if "description" in given else UNSET,
                active=body.active if "active" in given and body.active is not None else UNSET,
                user_id=body.user_id if "user_id" in given else UNSET,
                mcp_configs=body.mcp_configs if "mcp_configs" in given and body.mcp_configs is not None else UNSET,
            )
        except RecordNotFound as exc:
            raise _invalid(("body", "user_id"), exc.message) from None
        if record is None:
            raise HTTPException(404, f"no virtual key with id {id!r}")
        await gateway.sync()
        logger.info("admin API: updated virtual key %s (%s)", record.id, ", ".join(sorted(given)))
        return _key_out(record)

    @router.delete("/virtual-keys/{id}", status_code=204, tags=["virtual keys"], responses=_NOT_FOUND)
    async def delete_virtual_key(id: str) -> Response:
        if not await store().delete_virtual_key(id):
            raise HTTPException(404, f"no virtual key with id {id!r}")
        await gateway.sync()
        logger.info("admin API: deleted virtual key %s", id)
        return Response(status_code=204)

    # --- audit -----------------------------------------------------------------------------------

    @router.get("/audit", tags=["audit"])
    async def list_audit(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        before_id: int | None = None,
        after_id: int | None = None,
        upstream: str | None = None,
        virtual_key_id: str | None = None,
        outcome: AuditOutcome | None = None,
    ) -> AuditPage:
        """Tool calls, newest first, with `after_id < id < before_id` and the given filters."""
        if gateway.audit is not None:
            await gateway.audit.flush()
        records = await store().list_audit(
            limit=limit,
            before_id=before_id,
            after_id=after_id,
            upstream=upstream,
            virtual_key_id=virtual_key_id,
            outcome=outcome,
        )
        return AuditPage(items=[_audit_out(r) for r in records])

    admin_user_routes(gateway, router, _NOT_FOUND)
    admin_credential_routes(gateway, router)
    api.include_router(router)
    api.include_router(caller_credential_routes(gateway), responses=_ERRORS)
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


# --- errors --------------------------------------------------------------------------------------


def _invalid(loc: Sequence[str], message: str) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": tuple(loc), "msg": message}])


async def _validation_failed(request: Request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's default also returns each error's `input`, which would echo submitted secrets.
    errors = [{"type": e.get("type"), "loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()]
    return JSONResponse({"detail": errors}, status_code=422)


async def _store_failed(request: Request, exc: StoreError) -> JSONResponse:
    logger.error("admin API: %s %s: %s", request.method, request.url.path, exc.message)
    return JSONResponse({"detail": f"store unavailable: {exc.message}"}, status_code=503)


class _InternalErrors:
    """Turns an unexpected exception into a JSON 500 (no traceback); the traceback goes to the log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:  # top-level handler: the client gets JSON, the log gets the traceback
            logger.exception("admin API: %s %s failed", scope.get("method"), scope.get("path"))
            if started:
                raise
            response = JSONResponse({"detail": "internal error in the admin API; see the gateway log"}, 500)
            await response(scope, receive, send)


# --- conversions ---------------------------------------------------------------------------------


def redact(config: Mapping[str, Any]) -> dict[str, Any]:
    """A stored upstream config fit to show: `headers`/`env` values become `***` unless `${VAR}` references."""
    shown = dict(config)
    for name in _SECRET_FIELDS:
        values = shown.get(name)
        if isinstance(values, Mapping):
            shown[name] = {k: v if _is_reference(v) else REDACTED for k, v in values.items()}
    auth = shown.get("auth")
    if isinstance(auth, Mapping) and auth.get("client_secret") and not _is_reference(auth["client_secret"]):
        shown["auth"] = {**auth, "client_secret": REDACTED}
    return shown


def _is_reference(value: object) -> bool:
    return isinstance(value, str) and _ENV_REFERENCE.fullmatch(value) is not None


def _stored_config(config: UpstreamConfig, *, previous: Mapping[str, Any], loc: tuple[str, ...]) -> dict[str, Any]:
    """The JSON the store keeps (as `mirror_config` writes it), `***` replaced by the value it stands for."""
    stored = {"transport": config.transport} | config.model_dump(
        mode="json", exclude_defaults=True, exclude={"allow_on_all_virtual_keys"}
    )
    for name in _SECRET_FIELDS:
        values = stored.get(name)
        if not isinstance(values, dict):
            continue
        before = previous.get(name) if previous.get("transport") == config.transport else None
        for key, value in values.items():
            if value != REDACTED:
                continue
            if not isinstance(before, Mapping) or key not in before:
                raise _invalid(
                    (*loc, name, key),
                    f'"{REDACTED}" stands for a stored value and there is none; send the value or a ${{VAR}} reference',
                )
            values[key] = before[key]
    auth = stored.get("auth")
    if isinstance(auth, dict) and auth.get("client_secret") == REDACTED:
        previous_auth = previous.get("auth")
        if not isinstance(previous_auth, Mapping) or not previous_auth.get("client_secret"):
            raise _invalid(
                (*loc, "auth", "client_secret"),
                f'"{REDACTED}" stands for a stored value and there is none; send the value or a ${{VAR}} reference',
            )
        auth["client_secret"] = previous_auth["client_secret"]
    return stored


def _flag(explicit: bool | None, config: UpstreamConfig | None, *, current: bool) -> bool:
    if explicit is not None:
        return explicit
    if config is not None and "allow_on_all_virtual_keys" in config.model_fields_set:
        return config.allow_on_all_virtual_keys
    return current


def _key_out(record: VirtualKeyRecord) -> VirtualKeyOut:
    return VirtualKeyOut(
        id=record.id,
        name=record.name,
        description=record.description,
        key_prefix=record.key_prefix,
        user_id=record.user_id,
        active=record.active,
        mcp_configs={upstream: list(tools) for upstream, tools in record.mcp_configs.items()},
        created_at=record.created_at,
        updated_at=record.updated_at,
        last_used_at=record.last_used_at,
    )


def _audit_out(record: AuditEventRecord) -> AuditEventOut:
    return AuditEventOut(
        id=record.id,
        ts=record.ts,
        identity_mode=record.identity_mode,
        subject=record.subject,
        virtual_key_id=record.virtual_key_id,
        upstream=record.upstream,
        tool=record.tool,
        method=record.method,
        duration_ms=record.duration_ms,
        outcome=record.outcome,
        detail=record.detail,
    )
