"""Virtual keys in the admin API: create (the key is shown once), list, change, disable, delete.

A change takes effect on the key's next request (`Gateway.sync()` clears the key caches); a
disabled or deleted key's open MCP sessions are ended.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field, StringConstraints, model_validator
from starlette.responses import Response

from mcp_gateway.config_llm import KeyLlmPolicy
from mcp_gateway.http.api.errors import NOT_FOUND, invalid
from mcp_gateway.http.api.fields import Body, McpConfigsField
from mcp_gateway.store import UNSET, RecordNotFound, VirtualKeyRecord

if TYPE_CHECKING:
    from mcp_gateway.http.gateway import Gateway

logger = logging.getLogger(__name__)


class VirtualKeyCreate(Body):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    description: str | None = None
    user_id: str | None = Field(default=None, description="An existing user who owns the key.")
    mcp_configs: McpConfigsField
    llm: KeyLlmPolicy | None = Field(default=None, description="Models and budgets on /anthropic, /openai.")


class VirtualKeyUpdate(Body):
    """Only the fields present change; `description` and `user_id` may be null to clear them."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    description: str | None = None
    active: bool | None = None
    user_id: str | None = None
    mcp_configs: McpConfigsField | None = None
    llm: KeyLlmPolicy | None = Field(default=None, description="Replaces the key's LLM policy; null removes it.")

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
    llm: KeyLlmPolicy | None = Field(default=None, description="Models and budgets on /anthropic, /openai.")


class VirtualKeyCreated(VirtualKeyOut):
    key: str = Field(description="The key itself. Shown only in this response: store it now.")


class VirtualKeyPage(BaseModel):
    items: list[VirtualKeyOut]
    total: int


def virtual_key_routes(gateway: Gateway, router: APIRouter) -> None:
    """Adds the virtual-key endpoints to `router` (which carries the admin-token check)."""
    store = gateway.running_store

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
        return VirtualKeyPage(items=[key_out(r) for r in records], total=await store().count_virtual_keys())

    @router.post("/virtual-keys", status_code=201, tags=["virtual keys"])
    async def create_virtual_key(body: VirtualKeyCreate) -> VirtualKeyCreated:
        """Create an active key; the response is the only time the key is shown."""
        try:
            record, key = await store().create_virtual_key(
                body.name,
                description=body.description,
                user_id=body.user_id,
                mcp_configs=body.mcp_configs,
                llm=body.llm.model_dump(exclude_none=True) if body.llm is not None else None,
            )
        except RecordNotFound as exc:
            raise invalid(("body", "user_id"), exc.message) from None
        await gateway.sync()
        logger.info("admin API: created virtual key %s (%s)", record.id, record.key_prefix)
        return VirtualKeyCreated(**key_out(record).model_dump(), key=key)

    @router.get("/virtual-keys/{id}", tags=["virtual keys"], responses=NOT_FOUND)
    async def get_virtual_key(id: str) -> VirtualKeyOut:
        return key_out(await find_key(id))

    @router.put("/virtual-keys/{id}", tags=["virtual keys"], responses=NOT_FOUND)
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
                llm=(body.llm.model_dump(exclude_none=True) if body.llm else None) if "llm" in given else UNSET,
            )
        except RecordNotFound as exc:
            raise invalid(("body", "user_id"), exc.message) from None
        if record is None:
            raise HTTPException(404, f"no virtual key with id {id!r}")
        await gateway.sync()
        logger.info("admin API: updated virtual key %s (%s)", record.id, ", ".join(sorted(given)))
        return key_out(record)

    @router.delete("/virtual-keys/{id}", status_code=204, tags=["virtual keys"], responses=NOT_FOUND)
    async def delete_virtual_key(id: str) -> Response:
        if not await store().delete_virtual_key(id):
            raise HTTPException(404, f"no virtual key with id {id!r}")
        await gateway.sync()
        logger.info("admin API: deleted virtual key %s", id)
        return Response(status_code=204)


def key_out(record: VirtualKeyRecord) -> VirtualKeyOut:
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
        llm=KeyLlmPolicy.model_validate(record.llm) if record.llm else None,
    )
