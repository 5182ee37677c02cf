"""ix_item_fair: the claim reads each channel's ready items in fair order from one index

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 05:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:

    with op.batch_alter_table("item", schema=None) as batch_op:
        batch_op.create_index(
            "ix_item_fair",
            ["provider", "channel_id", "priority", "task_id", "id"],
            unique=False,
            postgresql_where=sa.text("state = 'ready'"),
            sqlite_where=sa.text("state = 'ready'"),
        )


def downgrade() -> None:

    with op.batch_alter_table("item", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_item_fair",
            postgresql_where=sa.text("state = 'ready'"),
            sqlite_where=sa.text("state = 'ready'"),
        )
