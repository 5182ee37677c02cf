"""channel_share for weighted fairness, budget_lock and item estimates for budgets

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 04:29:10.652189
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "budget_lock",
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.PrimaryKeyConstraint("channel_id", "day", name=op.f("pk_budget_lock")),
    )
    op.create_table(
        "channel_share",
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        sa.Column("pass_value", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("provider", "channel_id", name=op.f("pk_channel_share")),
    )
    with op.batch_alter_table("item", schema=None) as batch_op:
        batch_op.add_column(sa.Column("estimate_micros", sa.BigInteger(), server_default="0", nullable=False))


def downgrade() -> None:

    with op.batch_alter_table("item", schema=None) as batch_op:
        batch_op.drop_column("estimate_micros")

    op.drop_table("channel_share")
    op.drop_table("budget_lock")
