"""page_unread: pages intake could not read, read again until they are

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 11:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from daemon.db.types import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "page_unread",
        sa.Column("page_id", sa.String(length=64), nullable=False),
        sa.Column("data_source_id", sa.String(length=64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("first_failed_at", UTCDateTime(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("page_id", name=op.f("pk_page_unread")),
    )


def downgrade() -> None:
    op.drop_table("page_unread")
