"""notion_upload: files sent to Notion, once per content (the scene board's images and videos)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 22:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from daemon.db.types import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notion_upload",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("filename", sa.String(200), nullable=False),
        sa.Column("content_type", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("upload_id", sa.String(64), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notion_upload")),
        sa.UniqueConstraint("sha256", name=op.f("uq_notion_upload_sha256")),
        sa.CheckConstraint(
            "state IN ('creating', 'created', 'uploaded', 'attached')", name=op.f("ck_notion_upload_state")
        ),
    )


def downgrade() -> None:
    op.drop_table("notion_upload")
