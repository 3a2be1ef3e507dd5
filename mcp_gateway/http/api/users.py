"""Users in the admin API: SSO users (and owners of virtual keys), their grants, and disabling them.

A user is created the first time they sign in (or when a key is made for them). Until an admin
grants them tools they see only upstreams allowed on all virtual keys. Disabling a user refuses
their SSO tokens and every virtual key they own, and ends their open MCP sessions; enabling them
again restores both. Like every admin change, it is written to the store and applied with
`Gateway.sync()`.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field, model_validator

from mcp_gateway.http.api.errors import NOT_FOUND
from mcp_gateway.http.api.fields import Body, McpConfigsField
from mcp_gateway.store import UserRecord

if TYPE_CHECKING:
    from mcp_gateway.http.gateway import Gateway


class UserOut(BaseModel):
    id: str = Field(description="The identity provider's subject (the `sub` claim, unless configured otherwise).")
    email: str | None
    display_name: str | None
    active: bool = Field(description="False: the user's SSO tokens and virtual keys are refused.")
    mcp_configs: dict[str, list[str]]
    created_at: datetime
    last_seen_at: datetime | None = Field(description="Last sign-in with an SSO token; null if never.")


class UserUpdate(Body):
    """Only the fields present change."""

    active: bool | None = None
    mcp_configs: McpConfigsField | None = None

    @model_validator(mode="after")
    def _something(self) -> UserUpdate:
        if self.active is None and self.mcp_configs is None:
            raise ValueError("give `active`, `mcp_configs`, or both")
        return self


def user_out(record: UserRecord) -> UserOut:
    return UserOut(
        id=record.id,
        email=record.email,
        display_name=record.display_name,
        active=record.active,
        mcp_configs={upstream: list(tools) for upstream, tools in record.mcp_configs.items()},
        created_at=record.created_at,
        last_seen_at=record.last_seen_at,
    )


def user_routes(gateway: Gateway, router: APIRouter) -> None:
    """Adds the user endpoints to `router` (which carries the admin-token check)."""
    store = gateway.running_store

    @router.get("/users", tags=["users"])
    async def list_users() -> list[UserOut]:
        """Every known user, oldest first."""
        return [user_out(record) for record in await store().list_users()]

    @router.get("/users/{id}", tags=["users"], responses=NOT_FOUND)
    async def get_user(id: str) -> UserOut:
        record = await store().get_user(id)
        if record is None:
            raise HTTPException(404, f"no user with id {id!r}")
        return user_out(record)

    @router.put("/users/{id}", tags=["users"], responses=NOT_FOUND)
    async def update_user(id: str, body: UserUpdate) -> UserOut:
        """Grant tools (replacing the grants; creates a user not seen yet) and/or disable or enable the user.

        Disabling takes effect at once: their open MCP sessions are ended and their next request refused.
        """
        record: UserRecord | None = None
        if body.mcp_configs is not None:
            record = await store().set_user_mcp_configs(id, body.mcp_configs)
        if body.active is not None:
            record = await store().set_user_active(id, body.active)
        if record is None:
            raise HTTPException(404, f"no user with id {id!r}")
        await gateway.sync()
        return user_out(record)
