"""Join the audit trail and LLM usage by request: `audit_event.llm_request_id`, `llm_usage.request_id`.

A tool the gateway runs for a model request (agent mode, `/v1/mcp/tool/execute`) is audited with
that request's id; every model round of the request records the same id in `llm_usage`.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_event") as batch:
        batch.add_column(sa.Column("llm_request_id", sa.String(), nullable=True))
        batch.create_index("ix_audit_event_llm_request_id", ["llm_request_id"])
    with op.batch_alter_table("llm_usage") as batch:
        batch.add_column(sa.Column("request_id", sa.String(), nullable=True))
        batch.create_index("ix_llm_usage_request_id", ["request_id"])


def downgrade() -> None:
    with op.batch_alter_table("llm_usage") as batch:
        batch.drop_index("ix_llm_usage_request_id")
        batch.drop_column("request_id")
    with op.batch_alter_table("audit_event") as batch:
        batch.drop_index("ix_audit_event_llm_request_id")
        batch.drop_column("llm_request_id")
