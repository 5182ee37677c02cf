"""out_value: the value of a write of ours that is out and not answered, so that, once it can no
longer land, the outbox can tell the operator's Status set after it from the one it replaced;
comment.notion_id: the comment Notion made, so a retry tells its own earlier try from another
comment of the same text

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 17:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from daemon.db.types import JSONType

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("out_value", JSONType, nullable=True))
    op.add_column("comment", sa.Column("notion_id", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("comment") as batch:
        batch.drop_column("notion_id")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("out_value")
