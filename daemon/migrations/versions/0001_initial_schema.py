"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27 03:29:39.524228
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from daemon.db.types import JSONType, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "comment",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("page_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comment")),
        sa.UniqueConstraint("key", name=op.f("uq_comment_key")),
    )
    op.create_table(
        "leader",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=True),
        sa.Column("token", sa.String(length=64), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leader")),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("page_id", sa.String(length=64), nullable=False),
        sa.Column("property", sa.String(length=64), nullable=False),
        sa.Column("value", JSONType, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sent_version", sa.Integer(), nullable=False),
        sa.Column("sent_value", JSONType, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("page_id", "property", name=op.f("uq_outbox_page_id")),
    )
    op.create_table(
        "poll_cursor",
        sa.Column("data_source_id", sa.String(length=64), nullable=False),
        sa.Column("last_poll_started_at", UTCDateTime(), nullable=True),
        sa.Column("seen", JSONType, nullable=False),
        sa.PrimaryKeyConstraint("data_source_id", name=op.f("pk_poll_cursor")),
    )
    op.create_table(
        "provider_slot",
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("slot_no", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=True),
        sa.Column("lease_token", sa.String(length=64), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("provider", "slot_no", name=op.f("pk_provider_slot")),
    )
    with op.batch_alter_table("provider_slot", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_provider_slot_lease_token"), ["lease_token"], unique=False)

    op.create_table(
        "task",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        sa.Column("project_slug", sa.String(length=64), nullable=False),
        sa.Column("notion_page_id", sa.String(length=64), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("pass_no", sa.Integer(), nullable=False),
        sa.Column("storyboard", JSONType, nullable=True),
        sa.Column("request", JSONType, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("final_video_path", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task")),
        sa.UniqueConstraint("channel_id", "project_slug", name=op.f("uq_task_channel_id")),
    )
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_task_notion_page_id"), ["notion_page_id"], unique=False)

    op.create_table(
        "item",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=96), nullable=False),
        sa.Column("input", JSONType, nullable=False),
        sa.Column("input_hash", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("lease_owner", sa.String(length=128), nullable=True),
        sa.Column("lease_token", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("provider_job_id", sa.String(length=128), nullable=True),
        sa.Column("output_path", sa.Text(), nullable=True),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["task_id"], ["task.id"], name=op.f("fk_item_task_id_task"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_item")),
        sa.UniqueConstraint("task_id", "key", name=op.f("uq_item_task_id")),
    )
    with op.batch_alter_table("item", schema=None) as batch_op:
        batch_op.create_index("ix_item_claim", ["provider", "state", "next_attempt_at"], unique=False)
        batch_op.create_index("ix_item_lease", ["lease_owner", "lease_token"], unique=False)
        batch_op.create_index(
            "ix_item_ready",
            ["provider", "next_attempt_at"],
            unique=False,
            postgresql_where=sa.text("state = 'ready'"),
            sqlite_where=sa.text("state = 'ready'"),
        )
        batch_op.create_index(batch_op.f("ix_item_task_id"), ["task_id"], unique=False)

    op.create_table(
        "ledger",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("attempt_no", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        sa.Column("entry", sa.String(length=16), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("open", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"], ["task.id"], name=op.f("fk_ledger_task_id_task"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger")),
        sa.UniqueConstraint("item_id", "attempt_no", "entry", name=op.f("uq_ledger_item_id")),
    )
    with op.batch_alter_table("ledger", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ledger_day"), ["day"], unique=False)
        batch_op.create_index(batch_op.f("ix_ledger_task_id"), ["task_id"], unique=False)

    op.create_table(
        "attempt",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("output_path", sa.Text(), nullable=False),
        sa.Column("lease_token", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=128), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("provider_job_id", sa.String(length=128), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("usage", JSONType, nullable=True),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["item_id"], ["item.id"], name=op.f("fk_attempt_item_id_item"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attempt")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_attempt_idempotency_key")),
        sa.UniqueConstraint("item_id", "number", name=op.f("uq_attempt_item_id")),
    )
    with op.batch_alter_table("attempt", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_attempt_item_id"), ["item_id"], unique=False)

    op.create_table(
        "item_edge",
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("depends_on", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["depends_on"], ["item.id"], name=op.f("fk_item_edge_depends_on_item"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["item_id"], ["item.id"], name=op.f("fk_item_edge_item_id_item"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("item_id", "depends_on", name=op.f("pk_item_edge")),
    )
    with op.batch_alter_table("item_edge", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_item_edge_depends_on"), ["depends_on"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("item_edge", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_item_edge_depends_on"))

    op.drop_table("item_edge")
    with op.batch_alter_table("attempt", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_attempt_item_id"))

    op.drop_table("attempt")
    with op.batch_alter_table("ledger", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_task_id"))
        batch_op.drop_index(batch_op.f("ix_ledger_day"))

    op.drop_table("ledger")
    with op.batch_alter_table("item", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_item_task_id"))
        batch_op.drop_index(
            "ix_item_ready",
            postgresql_where=sa.text("state = 'ready'"),
            sqlite_where=sa.text("state = 'ready'"),
        )
        batch_op.drop_index("ix_item_lease")
        batch_op.drop_index("ix_item_claim")

    op.drop_table("item")
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_task_notion_page_id"))

    op.drop_table("task")
    with op.batch_alter_table("provider_slot", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_provider_slot_lease_token"))

    op.drop_table("provider_slot")
    op.drop_table("poll_cursor")
    op.drop_table("outbox")
    op.drop_table("leader")
    op.drop_table("comment")
