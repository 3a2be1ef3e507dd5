"""Virtual keys get an LLM policy (allowed models, budgets): `virtual_key.llm` (null: no limits).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("virtual_key", sa.Column("llm", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("virtual_key") as batch:
        batch.drop_column("llm")
