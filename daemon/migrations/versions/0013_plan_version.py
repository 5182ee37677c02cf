"""task.plan_version: the plan rules a task was created under (1 for every task before this)

A task keeps its version for good, so a release that changes how items are planned (here: clips that
wait for their narration) never changes the inputs of a task's paid items.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 06:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("task", sa.Column("plan_version", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("task") as batch:
        batch.drop_column("plan_version")
