"""the first release's per-attempt idempotency keys stay findable: an unfinished item whose last
attempt may have submitted under one resumes it instead of paying again

The first release keyed provider jobs per attempt (`<slug>-<key>-a<n>-<digest>`) and resumed the
last unsettled attempt's job or key; from 0004 the key is per generation (`-g<n>-`) and only a job
id recorded on the item is resumed. A clip whose submit landed before its job id was recorded (the
daemon killed in between, the answer lost) was therefore submitted and paid again after an upgrade.
This revision records that earlier key as the item's job to resume: the clip script looks it up (by
task id, then by external id) before it submits under the new key.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 14:55:00.000000
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# The first release's attempt outcomes after which a submit may have landed unrecorded.
UNSETTLED = ("running", "lost", "released", "timeout")
FIRST_RELEASE_KEY = re.compile(r"-a\d+-[0-9a-f]{12}$")


def upgrade() -> None:
    conn = op.get_bind()
    item = sa.table(
        "item",
        sa.column("id", sa.Integer),
        sa.column("kind", sa.String),
        sa.column("state", sa.String),
        sa.column("provider_job_id", sa.String),
    )
    attempt = sa.table(
        "attempt",
        sa.column("item_id", sa.Integer),
        sa.column("number", sa.Integer),
        sa.column("outcome", sa.String),
        sa.column("idempotency_key", sa.String),
        sa.column("provider_job_id", sa.String),
    )
    last = (
        sa.select(attempt.c.item_id, sa.func.max(attempt.c.number).label("number"))
        .group_by(attempt.c.item_id)
        .subquery()
    )
    rows = conn.execute(
        sa.select(item.c.id, attempt.c.outcome, attempt.c.idempotency_key, attempt.c.provider_job_id)
        .join(last, last.c.item_id == item.c.id)
        .join(attempt, sa.and_(attempt.c.item_id == item.c.id, attempt.c.number == last.c.number))
        .where(item.c.kind == "clip", item.c.state != "succeeded", item.c.provider_job_id.is_(None))
    ).all()
    for row in rows:
        if row.outcome not in UNSETTLED:
            continue
        target = row.provider_job_id or (
            row.idempotency_key if FIRST_RELEASE_KEY.search(row.idempotency_key or "") else None
        )
        if target:
            conn.execute(sa.update(item).where(item.c.id == row.id).values(provider_job_id=target))


def downgrade() -> None:
    """Nothing to undo: a job recorded on an item is what 0004 onwards resumes anyway."""
