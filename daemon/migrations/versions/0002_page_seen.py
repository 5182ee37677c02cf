"""page_seen: what intake last knew of each page; poll_cursor keeps only its window

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 03:52:04.115035
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from daemon.db.types import JSONType, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "page_seen",
        sa.Column("page_id", sa.String(length=64), nullable=False),
        sa.Column("data_source_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=64), nullable=True),
        sa.Column("props_hash", sa.String(length=64), nullable=False),
        sa.Column("seen_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("page_id", name=op.f("pk_page_seen")),
    )
    with op.batch_alter_table("poll_cursor", schema=None) as batch_op:
        batch_op.drop_column("seen")


def downgrade() -> None:

    with op.batch_alter_table("poll_cursor", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seen", JSONType, nullable=True))

    op.drop_table("page_seen")
