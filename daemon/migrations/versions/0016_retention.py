"""Retention: item.removed_at, when retention removed the item's output file; task.rebuy_offer,
what a refused new pass would have bought again (so a second Queued confirms exactly that).

An item whose file retention removed stays succeeded: a new pass leaves it so while nothing that
consumes it runs again, and asks before buying it again (daemon/rebuy.py).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-08 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from daemon.db.types import JSONType, UTCDateTime

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("item", sa.Column("removed_at", UTCDateTime(), nullable=True))
    op.add_column("task", sa.Column("rebuy_offer", JSONType, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("item") as batch:
        batch.drop_column("removed_at")
    with op.batch_alter_table("task") as batch:
        batch.drop_column("rebuy_offer")
