"""Completion: fenced by the lease token, idempotent, and the only place outputs become final.

A retried commit (the first one's answer was lost) finds the item succeeded under the same token
and counts as done, once. A daemon whose lease was taken over finds another token and is refused.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
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
from daemon.db.models import Attempt, Item, ItemEdge, Ledger, Task
from daemon.lease import finish_attempt, free_slot

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
) -> Outcome:
    async with engine.begin() as conn:
        await lock_task(conn, c.task_id)
        done = await conn.execute(
            update(Item)
            .where(Item.id == c.item_id, Item.lease_token == c.lease_token, Item.state == "running")
            .values(
                state="succeeded",
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
        # Under the fence (the row is ours until commit), the attempt's output becomes the item's.
        if result.output != final_path:
            target = workspace / final_path
            target.parent.mkdir(parents=True, exist_ok=True)
            source = workspace / result.output
            # A retry of a completion whose commit was lost finds the file moved already.
            if source.exists() or not target.exists():
                os.replace(source, target)
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
        await _record_cost(conn, c, result.cost_micros, now)
        await free_slot(conn, c.lease_token)
        if c.kind == "storyboard" and on_storyboard is not None:
            await on_storyboard(conn, c.task_id, workspace / final_path)
        if c.kind == "assembly":
            await conn.execute(update(Task).where(Task.id == c.task_id).values(final_video_path=final_path))
        await refresh_ready(conn, c.task_id, now, auto_approve=auto_approve)
    return "done"


async def _already_or_fenced(conn: AsyncConnection, c: Claimed) -> Outcome:
    row = (await conn.execute(select(Item.state, Item.lease_token).where(Item.id == c.item_id))).first()
    if row is not None and row.state == "succeeded" and row.lease_token == c.lease_token:
        return "already"
    return "fenced"


async def _record_cost(conn: AsyncConnection, c: Claimed, micros: int, now: datetime) -> None:
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
                    day=now.date().isoformat(),
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
            .where(Item.id == c.item_id, Item.lease_token == c.lease_token, Item.state == "running")
            .values(state="failed", error=message, lease_expires_at=None, finished_at=now, updated_at=now)
        )
        await close_reservation(conn, c.item_id)
        await free_slot(conn, c.lease_token)
        await finish_attempt(
            conn, c.item_id, c.lease_token, now, outcome=outcome, message=message, exit_code=exit_code
        )
        if done.rowcount != 1:
            return False
        await conn.execute(
            update(Task)
            .where(Task.id == c.task_id, Task.state == "active")
            .values(state="error", error=f"{c.key}: {message}", updated_at=now)
        )
        return True


async def count_failures(engine: AsyncEngine, item_id: int) -> int:
    """Attempts that ended in a transient failure or a timeout (crashes and hand-backs do not count)."""
    async with engine.connect() as conn:
        return int(
            await conn.scalar(
                select(func.count())
                .select_from(Attempt)
                .where(Attempt.item_id == item_id, Attempt.outcome.in_(("transient", "timeout")))
            )
            or 0
        )


async def refresh_ready(
    conn: AsyncConnection, task_id: int, now: datetime, *, auto_approve: bool = False
) -> None:
    """Blocked items whose dependencies all succeeded become ready; gates that are off pass at once."""
    dep = aliased(Item)
    unfinished = exists().where(
        ItemEdge.item_id == Item.id, dep.id == ItemEdge.depends_on, dep.state != "succeeded"
    )
    while True:
        await conn.execute(
            update(Item)
            .where(Item.task_id == task_id, Item.state == "blocked", not_(unfinished))
            .values(state="ready", next_attempt_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        gates = (
            await conn.execute(
                select(Item.id, Item.input).where(
                    Item.task_id == task_id, Item.state == "ready", Item.provider == "operator"
                )
            )
        ).all()
        passing = [g.id for g in gates if auto_approve or not g.input.get("on", True)]
        if not passing:
            break
        await conn.execute(
            update(Item)
            .where(Item.id.in_(passing))
            .values(state="succeeded", finished_at=now, updated_at=now)
        )
    await _finish_task_if_done(conn, task_id, now)


async def _finish_task_if_done(conn: AsyncConnection, task_id: int, now: datetime) -> None:
    pending = await conn.scalar(
        select(func.count()).select_from(Item).where(Item.task_id == task_id, Item.state != "succeeded")
    )
    if pending == 0:
        await conn.execute(
            update(Task)
            .where(Task.id == task_id, Task.state == "active")
            .values(state="done", updated_at=now)
        )


async def approve_gate(engine: AsyncEngine, task_id: int, gate_kind: str, now: datetime) -> bool:
    """The operator approved a gate; returns False when that gate is not waiting."""
    async with engine.begin() as conn:
        await lock_task(conn, task_id)
        done = await conn.execute(
            update(Item)
            .where(and_(Item.task_id == task_id, Item.kind == gate_kind, Item.state == "ready"))
            .values(state="succeeded", finished_at=now, updated_at=now)
        )
        if done.rowcount == 0:
            return False
        await refresh_ready(conn, task_id, now)
        return True
