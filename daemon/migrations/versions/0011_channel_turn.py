"""channel_share.pass_value -> turn: the stride scheduler's value gets its own word ("pass" is a
task's new run)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 20:55:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("channel_share") as batch:
        batch.alter_column("pass_value", new_column_name="turn")


def downgrade() -> None:
    with op.batch_alter_table("channel_share") as batch:
        batch.alter_column("turn", new_column_name="pass_value")
