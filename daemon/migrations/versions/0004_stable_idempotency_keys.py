"""Idempotency keys per item generation (shared by its attempts), so a retry finds an earlier submit

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 05:05:05.066050
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:

    with op.batch_alter_table("attempt", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_attempt_idempotency_key"), type_="unique")
        batch_op.create_index(batch_op.f("ix_attempt_idempotency_key"), ["idempotency_key"], unique=False)

    with op.batch_alter_table("item", schema=None) as batch_op:
        batch_op.add_column(sa.Column("generation", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:

    with op.batch_alter_table("item", schema=None) as batch_op:
        batch_op.drop_column("generation")

    with op.batch_alter_table("attempt", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_attempt_idempotency_key"))
        batch_op.create_unique_constraint(batch_op.f("uq_attempt_idempotency_key"), ["idempotency_key"])
