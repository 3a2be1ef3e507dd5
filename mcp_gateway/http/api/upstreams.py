"""Upstreams ("MCP clients") in the admin API: add, change, remove, reconnect, and their tools.

Every change is written to the store first and then applied with `Gateway.sync()`: the same path
a change made by the CLI or another replica takes, minus the wait for the revision poll. So a new
upstream starts at once and connected clients whose visible tools changed are sent `list_changed`.

Secrets stay in: upstream `headers`, `env` and OAuth client secrets come back as `***` unless
they are `${VAR}` references, and `***` sent back stands for the stored value.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field, model_validator
from starlette.responses import Response

from mcp_gateway.config import UPSTREAM_NAME_PATTERN, UpstreamConfig
from mcp_gateway.http.api.errors import CONFLICT, NOT_FOUND, invalid
from mcp_gateway.http.api.fields import Body, UpstreamNameField
from mcp_gateway.store import UpstreamRecord, UpstreamSource
from mcp_gateway.upstreams.connection import UpstreamState

if TYPE_CHECKING:
    from mcp_gateway.http.gateway import Gateway

logger = logging.getLogger(__name__)

REDACTED = "***"
_SECRET_FIELDS = ("headers", "env")
_ENV_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}")
_CONFIG_FILE_NOTE = (
    "this upstream comes from gateway.yaml: the change applies now, but the next start mirrors the file "
    "again and overwrites it; edit gateway.yaml to keep it"
)

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


def upstream_routes(gateway: Gateway, router: APIRouter) -> None:
    """Adds the upstream endpoints to `router` (which carries the admin-token check)."""
    store = gateway.running_store

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

    @router.get("/mcp/clients", tags=["upstreams"])
    async def list_upstreams() -> list[UpstreamOut]:
        """Every stored upstream with its live state."""
        return [upstream_out(record) for record in await store().list_upstreams()]

    @router.post("/mcp/clients", status_code=201, tags=["upstreams"], responses=CONFLICT)
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

    @router.get("/mcp/client/{id}", tags=["upstreams"], responses=NOT_FOUND)
    async def get_upstream(id: str) -> UpstreamOut:
        """One upstream, by record id or name."""
        return upstream_out(await find_upstream(id))

    @router.put("/mcp/client/{id}", tags=["upstreams"], responses=NOT_FOUND)
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

    @router.delete("/mcp/client/{id}", status_code=204, tags=["upstreams"], responses=NOT_FOUND)
    async def delete_upstream(id: str) -> Response:
        """Stop and remove an upstream (one from gateway.yaml returns on the next start)."""
        record = await find_upstream(id)
        if not await store().delete_upstream(record.name):
            raise HTTPException(404, f"no upstream with id or name {id!r}")
        await gateway.sync()
        logger.info("admin API: removed upstream %s", record.name)
        return Response(status_code=204)

    @router.post("/mcp/client/{id}/reconnect", status_code=202, tags=["upstreams"], responses=NOT_FOUND | CONFLICT)
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
                raise invalid(
                    (*loc, name, key),
                    f'"{REDACTED}" stands for a stored value and there is none; send the value or a ${{VAR}} reference',
                )
            values[key] = before[key]
    auth = stored.get("auth")
    if isinstance(auth, dict) and auth.get("client_secret") == REDACTED:
        previous_auth = previous.get("auth")
        if not isinstance(previous_auth, Mapping) or not previous_auth.get("client_secret"):
            raise invalid(
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
