"""Initial schema: upstreams, users, virtual keys and their tool grants, audit events, store revision.

Revision ID: 0001
Revises:
Create Date: 2026-11-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "upstream",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("allow_on_all_virtual_keys", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_upstream_name", "upstream", ["name"], unique=True)

    op.create_table(
        "user",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("email", sa.String(), nullable=True),
        sa.Column("display_name", sa.String(), nullable=True),
        sa.Column("mcp_configs", sa.JSON(), nullable=False),
        _timestamp("created_at"),
        _timestamp("last_seen_at", nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )

    op.create_table(
        "virtual_key",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("description", sa.String(), nullable=True),
        sa.Column("key_hash", sa.String(), nullable=False),
        sa.Column("key_prefix", sa.String(), nullable=False),
        sa.Column("user_id", sa.String(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        _timestamp("last_used_at", nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["user.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_virtual_key_key_hash", "virtual_key", ["key_hash"], unique=True)
    op.create_index("ix_virtual_key_user_id", "virtual_key", ["user_id"], unique=False)

    op.create_table(
        "vk_tool_grant",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("virtual_key_id", sa.String(), nullable=False),
        sa.Column("upstream", sa.String(), nullable=False),
        sa.Column("tools", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["virtual_key_id"], ["virtual_key.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("virtual_key_id", "upstream", name="uq_vk_tool_grant_virtual_key_id_upstream"),
    )
    op.create_index("ix_vk_tool_grant_virtual_key_id", "vk_tool_grant", ["virtual_key_id"], unique=False)

    op.create_table(
        "audit_event",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        _timestamp("ts"),
        sa.Column("identity_mode", sa.String(), nullable=False),
        sa.Column("subject", sa.String(), nullable=True),
        sa.Column("virtual_key_id", sa.String(), nullable=True),
        sa.Column("upstream", sa.String(), nullable=True),
        sa.Column("tool", sa.String(), nullable=True),
        sa.Column("method", sa.String(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_event_ts", "audit_event", ["ts"], unique=False)
    op.create_index("ix_audit_event_virtual_key_id", "audit_event", ["virtual_key_id"], unique=False)

    store_revision = op.create_table(
        "store_revision",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(store_revision, [{"id": 1, "revision": 0}])


def downgrade() -> None:
    op.drop_table("store_revision")
    op.drop_index("ix_audit_event_virtual_key_id", table_name="audit_event")
    op.drop_index("ix_audit_event_ts", table_name="audit_event")
    op.drop_table("audit_event")
    op.drop_index("ix_vk_tool_grant_virtual_key_id", table_name="vk_tool_grant")
    op.drop_table("vk_tool_grant")
    op.drop_index("ix_virtual_key_user_id", table_name="virtual_key")
    op.drop_index("ix_virtual_key_key_hash", table_name="virtual_key")
    op.drop_table("virtual_key")
    op.drop_table("user")
    op.drop_index("ix_upstream_name", table_name="upstream")
    op.drop_table("upstream")
