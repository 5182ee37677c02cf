"""recheck_at: a write Notion did not answer may land late; the page is written again, a comment
looked for before it is posted again

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 13:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from daemon.db.types import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("recheck_at", UTCDateTime(), nullable=True))
    op.add_column("comment", sa.Column("recheck_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    for table in ("comment", "outbox"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("recheck_at")
