"""CHECK constraints on the states of tasks, items, attempts and comments (services/states.py)

A state outside the list is refused by the database, whichever code path writes it. Rows holding a
state the list does not know stop the migration with their table, column and values; nothing is
changed then.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 14:50:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from daemon.migrate import MigrationError

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# As they are at this revision (a later change to services/states.py comes with its own revision).
CHECKS = {
    ("task", "state"): ("active", "paused", "budget", "done", "error", "cancelled"),
    ("item", "state"): ("blocked", "ready", "running", "succeeded", "failed", "cancelled"),
    ("attempt", "outcome"): ("running", "succeeded", "permanent", "transient", "timeout", "lost", "released"),
    ("comment", "state"): ("pending", "sent"),
}


def upgrade() -> None:
    conn = op.get_bind()
    for (table, column), allowed in CHECKS.items():
        found = {r[0] for r in conn.execute(sa.text(f"SELECT DISTINCT {column} FROM {table}"))}
        unknown = sorted(str(v) for v in found - set(allowed))
        if unknown:
            raise MigrationError(
                f"{table}.{column} holds {', '.join(unknown)}, which this version does not know "
                f"(known: {', '.join(allowed)}); nothing was changed. Report it, or correct those rows."
            )
        condition = f"{column} IN ({', '.join(repr(v) for v in allowed)})"
        with op.batch_alter_table(table) as batch:
            batch.create_check_constraint(column, condition)


def downgrade() -> None:
    for table, column in reversed(list(CHECKS)):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(op.f(f"ck_{table}_{column}"), type_="check")
