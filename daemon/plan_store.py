"""Writing a plan into the DB: one transaction, reusing every item whose input hash is unchanged."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from daemon.db.engine import returned_id
from daemon.db.models import Attempt, Item, ItemEdge, Ledger, Task
from daemon.rebuy import paid_part, revived
from services.plan import PlannedItem
from services.states import ItemState

PRIORITY = {"High": 0, "Normal": 1, "Low": 2}


def item_priority(task_priority: int, kind: str) -> int:
    """The claim's order within a channel: the task's priority first (High, Normal, Low), then, at
    one priority, a video's final cut after every other step: on the local slots composites (each
    unblocks a clip, minutes of Kling time) go before assemblies, which unblock nothing. The
    makespan benchmark's timeline showed a composite waiting behind two assemblies."""
    return task_priority * 2 + (1 if kind == "assembly" else 0)


async def apply_plan(
    conn: AsyncConnection,
    task_id: int,
    planned: Sequence[PlannedItem],
    now: datetime,
    workspace: Path,
    estimate: Callable[[PlannedItem], int] = lambda _item: 0,
    *,
    rebuy_micros: int | None = None,
) -> dict[str, int]:
    """Upserts the task's items and edges; returns item ids by key.

    Kept as they are: items with an unchanged hash (running ones go on; succeeded ones are never
    regenerated while their output is on disk). An item whose file retention removed is kept too
    while nothing that consumes it runs again; otherwise it is made again, and when that would buy
    something the pass is refused (rebuy.MediaRemoved, nothing written) unless the operator
    confirmed up to `rebuy_micros`. Reset: items whose hash changed, and failed or
    cancelled ones (a new pass gives them fresh attempts). A cancelled item whose hash is unchanged
    keeps its generation and its provider job: its next attempt collects what was already paid for
    (the same idempotency key, the job resumed), where a failed one starts a new generation.
    Removed: items no longer in the plan. Last, items made ready earlier that now wait for an
    unfinished dependency (a gate that waits again) go back to blocked.
    """
    task = (await conn.execute(select(Task.channel_id, Task.priority).where(Task.id == task_id))).one()
    existing = {
        r.key: r
        for r in await conn.execute(
            select(
                Item.id,
                Item.key,
                Item.input_hash,
                Item.state,
                Item.output_path,
                Item.provider_job_id,
                Item.estimate_micros,
                Item.removed_at,
            ).where(Item.task_id == task_id)
        )
    }
    kept = _kept(existing, planned, workspace, estimate, rebuy_micros)
    wanted = {p.key for p in planned}
    stale = [r.id for k, r in existing.items() if k not in wanted and r.state != ItemState.RUNNING]
    hashes = {p.key: p.input_hash for p in planned}
    abandoned = [
        r
        for k, r in existing.items()
        if r.state == ItemState.CANCELLED and r.provider_job_id and hashes.get(k) != r.input_hash
    ]
    await _book_abandoned(conn, task_id, task.channel_id, abandoned, now)
    if stale:
        await conn.execute(delete(Item).where(Item.id.in_(stale)))
    ids: dict[str, int] = {}
    for p in planned:
        row = existing.get(p.key)
        if row is None:
            ids[p.key] = returned_id(
                await conn.scalar(
                    insert(Item)
                    .values(
                        task_id=task_id,
                        channel_id=task.channel_id,
                        kind=p.kind,
                        key=p.key,
                        input=p.input,
                        input_hash=p.input_hash,
                        state=ItemState.BLOCKED,
                        provider=p.provider,
                        priority=item_priority(task.priority, p.kind),
                        attempts=0,
                        next_attempt_at=now,
                        cost_micros=0,
                        estimate_micros=estimate(p),
                        created_at=now,
                        updated_at=now,
                    )
                    .returning(Item.id)
                )
            )
            continue
        ids[p.key] = row.id
        if kept[p.key]:
            continue
        same_work = row.state == ItemState.CANCELLED and row.input_hash == p.input_hash
        await conn.execute(
            update(Item)
            .where(Item.id == row.id)
            .values(
                input=p.input,
                input_hash=p.input_hash,
                state=ItemState.BLOCKED,
                next_attempt_at=now,
                provider_job_id=Item.provider_job_id if same_work else None,
                generation=Item.generation if same_work else Item.generation + 1,
                output_path=None,
                removed_at=None,
                error=None,
                lease_owner=None,
                lease_token=None,
                lease_expires_at=None,
                finished_at=None,
                updated_at=now,
                priority=item_priority(task.priority, p.kind),
                estimate_micros=estimate(p),
            )
        )
    item_ids = list(ids.values())
    await conn.execute(delete(ItemEdge).where(ItemEdge.item_id.in_(item_ids)))
    edges = [{"item_id": ids[p.key], "depends_on": ids[d]} for p in planned for d in p.deps]
    if edges:
        await conn.execute(insert(ItemEdge), edges)
    dep = aliased(Item)
    unfinished = exists().where(
        ItemEdge.item_id == Item.id, dep.id == ItemEdge.depends_on, dep.state != ItemState.SUCCEEDED
    )
    await conn.execute(
        update(Item)
        .where(Item.task_id == task_id, Item.state == ItemState.READY, unfinished)
        .values(state=ItemState.BLOCKED, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return ids


async def _book_abandoned(
    conn: AsyncConnection, task_id: int, channel: str, rows: list[Any], now: datetime
) -> None:
    """A provider job submitted before a cancel was paid for when it was created. Its item is
    collected on the next pass if its input is unchanged; when the input changed (or the item left
    the plan) the job is never collected, so its estimate is booked as spent: the page's Cost and
    the budgets count every job bought."""
    for row in rows:
        attempt_no = await conn.scalar(select(func.max(Attempt.number)).where(Attempt.item_id == row.id))
        try:
            async with conn.begin_nested():
                await conn.execute(
                    insert(Ledger).values(
                        task_id=task_id,
                        item_id=row.id,
                        attempt_no=int(attempt_no or 0),
                        channel_id=channel,
                        entry="actual",
                        amount_micros=int(row.estimate_micros or 0),
                        day=now.date().isoformat(),
                        open=False,
                        created_at=now,
                    )
                )
        except IntegrityError:
            pass  # booked already (the attempt's own cost, or an earlier plan)


def _kept(
    existing: Mapping[str, Any],
    planned: Sequence[PlannedItem],
    workspace: Path,
    estimate: Callable[[PlannedItem], int],
    rebuy_micros: int | None,
) -> dict[str, bool]:
    """Whether each planned item's row is kept as it is; raises MediaRemoved (before anything is
    written) when files retention removed would be bought again without the operator's say."""
    kept: dict[str, bool] = {}
    removed: set[str] = set()
    for p in planned:
        row = existing.get(p.key)
        if row is not None and _removed(row, p):
            removed.add(p.key)
            kept[p.key] = True
        else:
            kept[p.key] = row is not None and _keep(row, p, workspace)
    runs = [k for k, keep in kept.items() if not keep or existing[k].state != ItemState.SUCCEEDED]
    again = revived(planned, runs, removed)
    for key in again:
        kept[key] = False
    by_key = {p.key: p for p in planned}
    paid_part((by_key[k], existing[k].removed_at, estimate(by_key[k])) for k in sorted(again)).check(
        rebuy_micros
    )
    return kept


def _removed(row: Any, planned: PlannedItem) -> bool:
    """Succeeded with this same input, its file taken by retention (gone, or about to go)."""
    return (
        row.removed_at is not None
        and row.state == ItemState.SUCCEEDED
        and row.input_hash == planned.input_hash
        and not planned.is_gate
    )


def _keep(row: Any, planned: PlannedItem, workspace: Path) -> bool:
    if row.input_hash != planned.input_hash:
        return False
    if row.state in (ItemState.RUNNING, ItemState.READY, ItemState.BLOCKED):
        return True
    if row.state != ItemState.SUCCEEDED:
        return False  # failed / cancelled: a fresh pass retries them
    # An item whose recorded output is on disk is never regenerated; gates have no output.
    return planned.is_gate or (row.output_path is not None and (workspace / row.output_path).exists())
