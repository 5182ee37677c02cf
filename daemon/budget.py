"""Budgets: per video and per channel per day. An item's estimated cost is reserved in the ledger
when it is claimed; an item whose reservation would cross a limit is not started, and its task
waits (state "budget") with the numbers, until the budget is raised or the day rolls over.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from daemon.db.driver import driver_in
from daemon.db.models import Item, Ledger, Task
from daemon.queries import RESERVATION_CLOSED, SPENT
from services.pricing import to_cents
from services.states import ItemState, TaskState


@dataclass(frozen=True)
class Budget:
    per_video_micros: int
    per_day_micros: int


def day_of(timezone: str) -> Callable[[datetime], str]:
    """The budget day of a moment, in the configured time zone (UTC by default)."""
    zone = ZoneInfo(timezone)
    return lambda moment: moment.astimezone(zone).date().isoformat()


async def _sum(conn: AsyncConnection, *where: ColumnElement[bool]) -> int:
    total = await conn.scalar(select(func.sum(Ledger.amount_micros)).where(text(SPENT), *where))
    return int(total or 0)


def dollars(micros: int) -> Decimal:
    """What people read (the page's Cost, the progress line, budget messages): whole cents, half up."""
    return to_cents(Decimal(micros) / 1_000_000)


def usd(micros: int) -> str:
    return f"${dollars(micros):,.2f}"


async def refusal(
    conn: AsyncConnection, task_id: int, channel: str, day: str, estimate: int, key: str, budget: Budget
) -> str | None:
    """Why reserving `estimate` more would cross a limit, in the operator's words; None when it fits."""
    task_spent = await _sum(conn, Ledger.task_id == task_id)
    day_spent = await _sum(conn, Ledger.channel_id == channel, Ledger.day == day)
    return refusal_text(task_spent, day_spent, channel, day, estimate, key, budget)


def refusal_text(
    task_spent: int, day_spent: int, channel: str, day: str, estimate: int, key: str, budget: Budget
) -> str | None:
    """Why `estimate` more on top of what the video and the channel's day have spent or reserved
    would cross a limit, in the operator's words; None when it fits."""
    if task_spent + estimate > budget.per_video_micros:
        return (
            f"Budget reached: this video has spent or reserved {usd(task_spent)} of its "
            f"{usd(budget.per_video_micros)} budget, and the next step ({key}, about {usd(estimate)}) "
            f"would go over. Raise budgets.per_video_usd in config/channels/{channel}.yaml; the daemon "
            "reads the file again within seconds and the video goes on by itself."
        )
    if day_spent + estimate > budget.per_day_micros:
        return (
            f"Daily budget reached: channel {channel} has spent or reserved {usd(day_spent)} of its "
            f"{usd(budget.per_day_micros)} for {day}, and the next step ({key}, about {usd(estimate)}) "
            f"would go over. It goes on by itself when the day rolls over, or raise budgets.per_day_usd "
            f"in config/channels/{channel}.yaml (read again within seconds, no restart)."
        )
    return None


async def close_reservation(conn: AsyncConnection, item_id: int, attempt_no: int) -> None:
    """The money of an attempt that ended without a cost is no longer held. Only that attempt's:
    the caller has just ended it under its fence, and a newer attempt's reservation is not its own
    (queries.RESERVATION_CLOSED, as the completion closes it)."""
    await (await driver_in(conn)).rows(RESERVATION_CLOSED, item=item_id, attempt=attempt_no)


async def wait_for_budget(engine: AsyncEngine, task_id: int, message: str, now: datetime) -> bool:
    """Puts an active task in the "budget" state with the message; False when it was not active."""
    async with engine.begin() as conn:
        await conn.execute(select(Task.id).where(Task.id == task_id).with_for_update())
        done = await conn.execute(
            update(Task)
            .where(Task.id == task_id, Task.state == TaskState.ACTIVE)
            .values(state=TaskState.BUDGET, error=message, updated_at=now)
        )
        return bool(done.rowcount)


async def resume_fitting(engine: AsyncEngine, budgets: Mapping[str, Budget], day: str, now: datetime) -> int:
    """Tasks waiting for budget go on once their cheapest ready step fits (raised limit, new day)."""
    resumed = 0
    async with engine.begin() as conn:
        waiting = (
            await conn.execute(select(Task.id, Task.channel_id).where(Task.state == TaskState.BUDGET))
        ).all()
        for task_id, channel in waiting:
            budget = budgets.get(channel)
            cheapest = await conn.scalar(
                select(func.min(Item.estimate_micros)).where(
                    Item.task_id == task_id, Item.state == ItemState.READY
                )
            )
            if (
                budget is None
                or await refusal(conn, task_id, channel, day, int(cheapest or 0), "", budget) is None
            ):
                await conn.execute(
                    update(Task)
                    .where(Task.id == task_id, Task.state == TaskState.BUDGET)
                    .values(state=TaskState.ACTIVE, error=None, updated_at=now)
                )
                resumed += 1
    return resumed


@dataclass(frozen=True)
class Spend:
    """What a task has cost: `paid` is every booked actual, of every pass, including work cancelled
    or replaced since; `submitted` is the price of provider jobs bought and not collected yet (Kling
    bills a job when it is created; a job cancelled mid-render is collected by the next pass, not
    bought again, and is booked as spent if its input changed and it never will be)."""

    paid_micros: int = 0
    submitted_micros: int = 0

    @property
    def total_micros(self) -> int:
        return self.paid_micros + self.submitted_micros


async def task_spend(conn: AsyncConnection, task_ids: list[int]) -> dict[int, Spend]:
    """Each task's Spend (tasks with none are absent): the page's Cost, and the status command's."""
    if not task_ids:
        return {}
    paid = dict(
        (
            await conn.execute(
                select(Ledger.task_id, func.sum(Ledger.amount_micros))
                .where(Ledger.task_id.in_(task_ids), Ledger.entry == "actual")
                .group_by(Ledger.task_id)
            )
        ).all()
    )
    submitted = dict(
        (
            await conn.execute(
                select(Item.task_id, func.sum(Item.estimate_micros))
                .where(
                    Item.task_id.in_(task_ids),
                    Item.state.not_in(("succeeded", "failed")),
                    Item.provider_job_id.is_not(None),
                )
                .group_by(Item.task_id)
            )
        ).all()
    )
    return {
        task: Spend(int(paid.get(task) or 0), int(submitted.get(task) or 0))
        for task in set(paid) | set(submitted)
    }
