"""The gateway's own OAuth server for /mcp: grants (refresh-token families), codes, refresh tokens.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "oauth_grant",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("client_id", sa.String(), nullable=False),
        sa.Column("client_name", sa.String(), nullable=True),
        sa.Column("redirect_host", sa.String(), nullable=True),
        sa.Column("subject_kind", sa.String(), nullable=False),
        sa.Column("virtual_key_id", sa.String(), nullable=True),
        sa.Column("user_id", sa.String(), nullable=True),
        sa.Column("session_id", sa.String(), nullable=True),
        sa.Column("resource", sa.String(), nullable=True),
        sa.Column("scope", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_oauth_grant_virtual_key_id", "oauth_grant", ["virtual_key_id"])
    op.create_index("ix_oauth_grant_user_id", "oauth_grant", ["user_id"])
    op.create_index("ix_oauth_grant_revoked_at", "oauth_grant", ["revoked_at"])
    op.create_table(
        "oauth_code",
        sa.Column("code_hash", sa.String(), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("grant_id", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("code_hash"),
    )
    op.create_index("ix_oauth_code_expires_at", "oauth_code", ["expires_at"])
    op.create_table(
        "oauth_refresh_token",
        sa.Column("token_hash", sa.String(), nullable=False),
        sa.Column("grant_id", sa.String(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_oauth_refresh_token_grant_id", "oauth_refresh_token", ["grant_id"])
    op.create_index("ix_oauth_refresh_token_expires_at", "oauth_refresh_token", ["expires_at"])


def downgrade() -> None:
    op.drop_table("oauth_refresh_token")
    op.drop_table("oauth_code")
    op.drop_table("oauth_grant")
