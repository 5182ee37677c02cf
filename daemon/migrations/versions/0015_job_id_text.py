"""provider_job_id as text: a YouTube upload session URL (its upload_id alone is over 100
characters) is longer than the 128 a Kling task id needed; on PostgreSQL it did not fit (SQLite
never enforced the length; its tables are rebuilt in a batch so its schema says the same).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("item", "attempt"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("provider_job_id", type_=sa.Text(), existing_type=sa.String(128))


def downgrade() -> None:
    for table in ("item", "attempt"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("provider_job_id", type_=sa.String(128), existing_type=sa.Text())
