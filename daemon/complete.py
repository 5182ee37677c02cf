"""Completion: fenced by the lease token, idempotent, and the only place outputs become final.

A retried commit (the first one's answer was lost) finds the item succeeded under the same token
and counts as done, once. A daemon whose lease was taken over finds another token and is refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import and_, exists, func, insert, not_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import aliased

from daemon.budget import close_reservation
from daemon.claim import Claimed
from daemon.db.engine import PgDriver, pg_driver, sqlite_driver, sqlite_time
from daemon.db.models import Attempt, Item, ItemEdge, Ledger, Task
from daemon.lease import finish_attempt, free_slot
from services.states import AttemptOutcome, ItemState, TaskState

Outcome = Literal["done", "already", "fenced"]
# Expands the plan once a storyboard item is done: (conn, task id, storyboard file) -> None.
StoryboardHook = Callable[[AsyncConnection, int, Path], Awaitable[None]]


@dataclass(frozen=True)
class Success:
    output: str  # the attempt's output, relative to the workspace
    cost_micros: int
    usage: dict[str, Any]


async def lock_task(conn: AsyncConnection, task_id: int) -> None:
    """Serialises the transactions that change a task's items (completions, cancels, approvals).

    Under READ COMMITTED two clips finishing at once would each see the other still running and
    leave the assembly blocked for ever; taking the task row first makes the second wait, and its
    next statement sees the first one's commit. Every such transaction locks the task before items.
    On SQLite, BEGIN IMMEDIATE already serialises writers.
    """
    await conn.execute(select(Task.id).where(Task.id == task_id).with_for_update())


async def complete(
    engine: AsyncEngine,
    c: Claimed,
    result: Success,
    *,
    workspace: Path,
    now: datetime,
    final_path: str,
    on_storyboard: StoryboardHook | None = None,
    auto_approve: bool = False,
    budget_day: str | None = None,
) -> Outcome:
    """`budget_day`: the day the actual cost counts against (the daemon's BUDGET_TIMEZONE, as the
    reservations); the UTC date when not given."""
    day = budget_day or now.date().isoformat()
    if not (c.kind == "storyboard" and on_storyboard is not None):
        fast = _complete_pg if engine.dialect.name == "postgresql" else _complete_sqlite
        return await fast(
            engine,
            c,
            result,
            workspace=workspace,
            now=now,
            final_path=final_path,
            auto_approve=auto_approve,
            day=day,
        )
    # A storyboard expands the task's plan (the hook) before the refresh: SQLAlchemy statements.
    # (Only a storyboard with a hook comes here.)
    async with engine.begin() as conn:
        await lock_task(conn, c.task_id)
        done = await conn.execute(
            update(Item)
            .where(Item.id == c.item_id, Item.lease_token == c.lease_token, Item.state == ItemState.RUNNING)
            .values(
                state=ItemState.SUCCEEDED,
                output_path=final_path,
                cost_micros=Item.cost_micros + result.cost_micros,
                lease_expires_at=None,
                finished_at=now,
                updated_at=now,
                error=None,
            )
        )
        if done.rowcount != 1:
            return await _already_or_fenced(conn, c)
        _move_output(workspace, result.output, final_path)
        await conn.execute(
            update(Attempt)
            .where(Attempt.item_id == c.item_id, Attempt.lease_token == c.lease_token)
            .values(
                outcome="succeeded",
                exit_code=0,
                usage=result.usage,
                cost_micros=result.cost_micros,
                finished_at=now,
            )
        )
        await _record_cost(conn, c, result.cost_micros, now, day)
        await free_slot(conn, c.lease_token)
        await on_storyboard(conn, c.task_id, workspace / final_path)
        await refresh_ready(conn, c.task_id, now, auto_approve=auto_approve)
    return "done"


def _move_output(workspace: Path, output: str, final_path: str) -> None:
    """Under the fence (the item row is ours until commit), the attempt's output becomes the item's.
    A retry of a completion whose commit was lost finds the file moved already."""
    if output == final_path:
        return
    source, target = workspace / output, workspace / final_path
    try:
        os.replace(source, target)
    except FileNotFoundError:
        if not source.exists() and target.exists():
            return  # moved by the attempt whose commit was lost
        if target.parent.is_dir():
            raise  # the attempt's output itself is missing
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)


async def _already_or_fenced(conn: AsyncConnection, c: Claimed) -> Outcome:
    row = (await conn.execute(select(Item.state, Item.lease_token).where(Item.id == c.item_id))).first()
    if row is not None and row.state == ItemState.SUCCEEDED and row.lease_token == c.lease_token:
        return "already"
    return "fenced"


async def _record_cost(conn: AsyncConnection, c: Claimed, micros: int, now: datetime, day: str) -> None:
    await conn.execute(
        update(Ledger)
        .where(Ledger.item_id == c.item_id, Ledger.attempt_no == c.attempt_no, Ledger.entry == "reservation")
        .values(open=False)
    )
    try:
        async with conn.begin_nested():
            await conn.execute(
                insert(Ledger).values(
                    task_id=c.task_id,
                    item_id=c.item_id,
                    attempt_no=c.attempt_no,
                    channel_id=c.channel_id,
                    entry="actual",
                    amount_micros=micros,
                    day=day,
                    open=False,
                    created_at=now,
                )
            )
    except IntegrityError:
        pass  # this attempt's cost is already booked: a retried commit is counted once


async def fail(
    engine: AsyncEngine,
    c: Claimed,
    message: str,
    now: datetime,
    *,
    exit_code: int | None,
    outcome: str = "permanent",
) -> bool:
    """The item failed for good: the task stops with the reason; running siblings finish."""
    async with engine.begin() as conn:
        await lock_task(conn, c.task_id)
        done = await conn.execute(
            update(Item)
            .where(Item.id == c.item_id, Item.lease_token == c.lease_token, Item.state == ItemState.RUNNING)
            .values(
                state=ItemState.FAILED, error=message, lease_expires_at=None, finished_at=now, updated_at=now
            )
        )
        await free_slot(conn, c.lease_token)
        await finish_attempt(
            conn, c.item_id, c.lease_token, now, outcome=outcome, message=message, exit_code=exit_code
        )
        if done.rowcount != 1:
            return False  # fenced: the attempt that holds the item now keeps its reservation
        await close_reservation(conn, c.item_id, c.attempt_no)
        await conn.execute(
            update(Task)
            .where(Task.id == c.task_id, Task.state == TaskState.ACTIVE)
            .values(state=TaskState.ERROR, error=f"{c.key}: {message}", updated_at=now)
        )
        return True


async def count_failures(engine: AsyncEngine, item_id: int) -> int:
    """Attempts that ended in a transient failure or a timeout (crashes and hand-backs do not count)."""
    async with engine.connect() as conn:
        return int(
            await conn.scalar(
                select(func.count())
                .select_from(Attempt)
                .where(
                    Attempt.item_id == item_id,
                    Attempt.outcome.in_((AttemptOutcome.TRANSIENT, AttemptOutcome.TIMEOUT)),
                )
            )
            or 0
        )


async def refresh_ready(
    conn: AsyncConnection, task_id: int, now: datetime, *, auto_approve: bool = False
) -> None:
    """Blocked items whose dependencies all succeeded become ready; gates that are off pass at once."""
    dep = aliased(Item)
    unfinished = exists().where(
        ItemEdge.item_id == Item.id, dep.id == ItemEdge.depends_on, dep.state != ItemState.SUCCEEDED
    )
    while True:
        await conn.execute(
            update(Item)
            .where(Item.task_id == task_id, Item.state == ItemState.BLOCKED, not_(unfinished))
            .values(state=ItemState.READY, next_attempt_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        gates = (
            await conn.execute(
                select(Item.id, Item.input).where(
                    Item.task_id == task_id, Item.state == ItemState.READY, Item.provider == "operator"
                )
            )
        ).all()
        passing = [g.id for g in gates if auto_approve or not g.input.get("on", True)]
        if not passing:
            break
        await conn.execute(
            update(Item)
            .where(Item.id.in_(passing))
            .values(state=ItemState.SUCCEEDED, finished_at=now, updated_at=now)
        )
    await _finish_task_if_done(conn, task_id, now)


async def _finish_task_if_done(conn: AsyncConnection, task_id: int, now: datetime) -> None:
    pending = await conn.scalar(
        select(func.count())
        .select_from(Item)
        .where(Item.task_id == task_id, Item.state != ItemState.SUCCEEDED)
    )
    if pending == 0:
        await conn.execute(
            update(Task)
            .where(Task.id == task_id, Task.state == TaskState.ACTIVE)
            .values(state=TaskState.DONE, updated_at=now)
        )


async def approve_gate(engine: AsyncEngine, task_id: int, gate_kind: str, now: datetime) -> bool:
    """The operator approved a gate; returns False when that gate is not waiting."""
    async with engine.begin() as conn:
        await lock_task(conn, task_id)
        done = await conn.execute(
            update(Item)
            .where(and_(Item.task_id == task_id, Item.kind == gate_kind, Item.state == ItemState.READY))
            .values(state=ItemState.SUCCEEDED, finished_at=now, updated_at=now)
        )
        if done.rowcount == 0:
            return False
        await refresh_ready(conn, task_id, now)
        return True


# PostgreSQL: the completion in three round trips ---------------------------------------------------
# 1. BEGIN and the task row's lock, in one message: the lock order every transaction on a task's
#    items keeps (completions, cancels, approvals, failures), and what makes the next statement's
#    snapshot see the commit of a completion that held the task before us.
# 2. One statement: the fenced update of the item and, only if it matched, the attempt's outcome,
#    the reservation closed and the actual cost booked once (the ledger's unique key), the slot
#    freed, dependants whose other dependencies all succeeded made ready, the assembly's path, the
#    task done when every other item succeeded; it returns the item's state (for 'already' or
#    'fenced') and the gates now ready, to pass the ones that are off.
# 3. COMMIT, after the output has moved while the item row is still locked.
#
# The statement's parts share one snapshot, in which this item is still running: the dependency and
# done checks count it as succeeded explicitly. Items it makes ready are still blocked in that
# snapshot, so they are not succeeded (the done check stays right) and not listed twice as gates.
_COMPLETE_PG = """
WITH done AS (
    UPDATE item SET state = 'succeeded', output_path = $4, cost_micros = item.cost_micros + $5,
                    lease_expires_at = NULL, finished_at = $6, updated_at = $6, error = NULL
    WHERE item.id = $2 AND item.lease_token = $3 AND item.state = 'running'
    RETURNING item.id
),
att AS (
    UPDATE attempt SET outcome = 'succeeded', exit_code = 0, usage = $8::jsonb, cost_micros = $5,
                       finished_at = $6
    WHERE item_id = $2 AND lease_token = $3 AND EXISTS (SELECT FROM done)
    RETURNING 1
),
reservation AS (
    UPDATE ledger SET open = false
    WHERE item_id = $2 AND attempt_no = $7 AND entry = 'reservation' AND EXISTS (SELECT FROM done)
    RETURNING 1
),
booked AS (
    INSERT INTO ledger (task_id, item_id, attempt_no, channel_id, entry, amount_micros, day, open,
                        created_at)
    SELECT $1, $2, $7, $9, 'actual', $5, $10, false, $6 FROM done
    ON CONFLICT (item_id, attempt_no, entry) DO NOTHING
    RETURNING 1
),
freed AS (
    UPDATE provider_slot SET item_id = NULL, lease_token = NULL, expires_at = NULL
    WHERE lease_token = $3 AND EXISTS (SELECT FROM done)
    RETURNING 1
),
unblocked AS (
    UPDATE item SET state = 'ready', next_attempt_at = $6, updated_at = $6
    WHERE item.task_id = $1 AND item.state = 'blocked' AND EXISTS (SELECT FROM done)
      AND NOT EXISTS (
        SELECT FROM item_edge e JOIN item d ON d.id = e.depends_on
        WHERE e.item_id = item.id AND d.state <> 'succeeded' AND d.id <> $2)
    RETURNING item.id, item.provider, item.input
),
pending AS (
    SELECT EXISTS (SELECT FROM item WHERE task_id = $1 AND state <> 'succeeded' AND id <> $2) AS left_over
),
finished AS (
    UPDATE task SET
        final_video_path = coalesce($11::text, task.final_video_path),
        state = CASE WHEN task.state = 'active' AND NOT (SELECT left_over FROM pending)
                     THEN 'done' ELSE task.state END,
        updated_at = CASE WHEN task.state = 'active' AND NOT (SELECT left_over FROM pending)
                          THEN $6 ELSE task.updated_at END
    WHERE task.id = $1 AND EXISTS (SELECT FROM done)
      AND ($11::text IS NOT NULL OR (task.state = 'active' AND NOT (SELECT left_over FROM pending)))
    RETURNING task.id
)
SELECT EXISTS (SELECT FROM done) AS done, i.state, i.lease_token,
       (SELECT coalesce(jsonb_agg(jsonb_build_object('id', g.id, 'input', g.input)), '[]'::jsonb)
        FROM (SELECT id, input FROM unblocked WHERE provider = 'operator'
              UNION ALL
              SELECT id, input FROM item
              WHERE task_id = $1 AND state = 'ready' AND provider = 'operator') g) AS gates
FROM item i WHERE i.id = $2
"""

# After gates passed (a statement of their own, so this one sees them succeeded): dependants made
# ready, the task done if nothing is left, and the gates ready now. $1 task, $2 now.
_REFRESH_PG = """
WITH unblocked AS (
    UPDATE item SET state = 'ready', next_attempt_at = $2, updated_at = $2
    WHERE item.task_id = $1 AND item.state = 'blocked' AND NOT EXISTS (
        SELECT FROM item_edge e JOIN item d ON d.id = e.depends_on
        WHERE e.item_id = item.id AND d.state <> 'succeeded')
    RETURNING item.id, item.provider, item.input
),
finished AS (
    UPDATE task SET state = 'done', updated_at = $2
    WHERE task.id = $1 AND task.state = 'active'
      AND NOT EXISTS (SELECT FROM item WHERE task_id = $1 AND state <> 'succeeded')
    RETURNING task.id
)
SELECT id, input FROM unblocked WHERE provider = 'operator'
UNION ALL
SELECT id, input FROM item WHERE task_id = $1 AND state = 'ready' AND provider = 'operator'
"""
_PASS_PG = "UPDATE item SET state = 'succeeded', finished_at = $2, updated_at = $2 WHERE id = ANY ($1::int[])"


async def _complete_pg(
    engine: AsyncEngine,
    c: Claimed,
    result: Success,
    *,
    workspace: Path,
    now: datetime,
    final_path: str,
    auto_approve: bool,
    day: str,
) -> Outcome:
    lock = f"SELECT id FROM task WHERE id = {int(c.task_id)} FOR UPDATE"
    async with pg_driver(engine) as db, db.transaction(first=lock):
        row = await db.fetchrow(
            _COMPLETE_PG,
            c.task_id,
            c.item_id,
            c.lease_token,
            final_path,
            result.cost_micros,
            now,
            c.attempt_no,
            json.dumps(result.usage),
            c.channel_id,
            day,
            final_path if c.kind == "assembly" else None,
        )
        if row is None or not row["done"]:
            if row is not None and row["state"] == "succeeded" and row["lease_token"] == c.lease_token:
                return "already"
            return "fenced"
        _move_output(workspace, result.output, final_path)
        await _pass_gates_pg(db, c.task_id, now, row["gates"], auto_approve)
    return "done"


async def _pass_gates_pg(
    db: PgDriver, task_id: int, now: datetime, gates: Sequence[Any], auto_approve: bool
) -> None:
    """Gates that are off (or every gate, in the demo) pass at once, which may unblock more."""
    while passing := [g["id"] for g in gates if auto_approve or not g["input"].get("on", True)]:
        await db.fetch(_PASS_PG, passing, now)
        gates = await db.fetch(_REFRESH_PG, task_id, now)


# SQLite: the same transaction, one statement at a time --------------------------------------------
# BEGIN IMMEDIATE serialises writers (the task lock's job on PostgreSQL), and each statement sees
# the ones before it.
_UNBLOCK_SQLITE = """
UPDATE item SET state = 'ready', next_attempt_at = ?, updated_at = ?
WHERE task_id = ? AND state = 'blocked' AND NOT EXISTS (
    SELECT 1 FROM item_edge e JOIN item d ON d.id = e.depends_on
    WHERE e.item_id = item.id AND d.state <> 'succeeded')
"""
_GATES_SQLITE = "SELECT id, input FROM item WHERE task_id = ? AND state = 'ready' AND provider = 'operator'"
_DONE_SQLITE = """
UPDATE task SET state = 'done', updated_at = ?
WHERE id = ? AND state = 'active'
  AND NOT EXISTS (SELECT 1 FROM item WHERE task_id = ? AND state <> 'succeeded')
"""


async def _complete_sqlite(
    engine: AsyncEngine,
    c: Claimed,
    result: Success,
    *,
    workspace: Path,
    now: datetime,
    final_path: str,
    auto_approve: bool,
    day: str,
) -> Outcome:
    at = sqlite_time(now)
    async with sqlite_driver(engine) as db, db.transaction():
        mine = await db.fetchrow(
            "UPDATE item SET state = 'succeeded', output_path = ?, cost_micros = cost_micros + ?, "
            "lease_expires_at = NULL, finished_at = ?, updated_at = ?, error = NULL "
            "WHERE id = ? AND lease_token = ? AND state = 'running' RETURNING id",
            (final_path, result.cost_micros, at, at, c.item_id, c.lease_token),
        )
        if mine is None:
            row = await db.fetchrow("SELECT state, lease_token FROM item WHERE id = ?", (c.item_id,))
            return "already" if row == ("succeeded", c.lease_token) else "fenced"
        _move_output(workspace, result.output, final_path)
        await db.fetch(
            "UPDATE attempt SET outcome = 'succeeded', exit_code = 0, usage = ?, cost_micros = ?, "
            "finished_at = ? WHERE item_id = ? AND lease_token = ?",
            (json.dumps(result.usage), result.cost_micros, at, c.item_id, c.lease_token),
        )
        await db.fetch(
            "UPDATE ledger SET open = 0 WHERE item_id = ? AND attempt_no = ? AND entry = 'reservation'",
            (c.item_id, c.attempt_no),
        )
        await db.fetch(
            "INSERT INTO ledger (task_id, item_id, attempt_no, channel_id, entry, amount_micros, day, open, "
            "created_at) VALUES (?, ?, ?, ?, 'actual', ?, ?, 0, ?) "
            "ON CONFLICT (item_id, attempt_no, entry) DO NOTHING",
            (
                c.task_id,
                c.item_id,
                c.attempt_no,
                c.channel_id,
                result.cost_micros,
                day,
                at,
            ),
        )
        await db.fetch(
            "UPDATE provider_slot SET item_id = NULL, lease_token = NULL, expires_at = NULL "
            "WHERE lease_token = ?",
            (c.lease_token,),
        )
        if c.kind == "assembly":
            await db.fetch("UPDATE task SET final_video_path = ? WHERE id = ?", (final_path, c.task_id))
        while True:
            await db.fetch(_UNBLOCK_SQLITE, (at, at, c.task_id))
            gates = await db.fetch(_GATES_SQLITE, (c.task_id,))
            passing = [g for g, data in gates if auto_approve or not json.loads(data).get("on", True)]
            if not passing:
                break
            await db.fetch(
                f"UPDATE item SET state = 'succeeded', finished_at = ?, updated_at = ? "
                f"WHERE id IN ({', '.join('?' * len(passing))})",
                (at, at, *passing),
            )
        await db.fetch(_DONE_SQLITE, (at, c.task_id, c.task_id))
    return "done"
