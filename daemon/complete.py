"""Completion: fenced by the lease token, idempotent, and the only place outputs become final.

A retried commit (the first one's answer was lost) finds the item succeeded under the same token
and counts as done, once. A daemon whose lease was taken over finds another token and is refused.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from daemon.budget import close_reservation
from daemon.claim import Claimed, ClaimRequest, ClaimResult, claim
from daemon.claim.postgres import claim_within_pg
from daemon.dag import lock_task, pass_gates, step
from daemon.db.driver import Driver, pg_driver, sqlite_driver
from daemon.db.models import Attempt, Item, Task
from daemon.lease import finish_attempt, free_slot
from daemon.queries import (
    ATTEMPT_SUCCEEDED,
    COMPLETE_PG,
    COST_BOOKED,
    FINISH_TASK,
    ITEM_LEASE,
    RESERVATION_CLOSED,
    SLOT_FREED,
    SUCCEED,
    VIDEO_PATH,
    lock_completions_pg,
)
from services.states import AttemptOutcome, ItemState, TaskState

Outcome = Literal["done", "already", "fenced"]
# Expands the plan once a storyboard item is done: (conn, task id, storyboard file) -> None.
StoryboardHook = Callable[[AsyncConnection, int, Path], Awaitable[None]]


@dataclass(frozen=True)
class Success:
    output: str  # the attempt's output, relative to the workspace
    cost_micros: int
    usage: dict[str, Any]


@dataclass(frozen=True)
class Completion:
    """One item's success, as its script reported it: what `complete_many` commits."""

    claimed: Claimed
    result: Success
    final_path: str  # where the output goes (commands.final_path)
    now: datetime
    budget_day: str | None = None  # the day its cost counts against; the UTC date when None


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
    """One item's success. `budget_day`: the day the actual cost counts against (the daemon's
    BUDGET_TIMEZONE, as the reservations); the UTC date when not given."""
    done = Completion(c, result, final_path, now, budget_day)
    if on_storyboard is not None and expands_plan(c, on_storyboard):
        # The plan's expansion is written with SQLAlchemy: the same writes join its transaction,
        # and the DAG step follows the expansion.
        hook = on_storyboard
        async with engine.begin() as conn:
            db = await lock_task(conn, c.task_id)

            async def expand() -> None:
                _move_output(workspace, result.output, final_path)
                await hook(conn, c.task_id, workspace / final_path)

            return await _succeed(db, _values(done), auto_approve, before_step=expand)
    return (await complete_many(engine, [done], workspace=workspace, auto_approve=auto_approve))[0]


async def complete_many(
    engine: AsyncEngine, completions: Sequence[Completion], *, workspace: Path, auto_approve: bool = False
) -> list[Outcome]:
    """Several items' successes in one transaction, each as `complete` commits it alone, in the
    order of their item ids; their outcomes in the order given. Scripts that end together (the
    slots of a provider that answers at once) are committed with one BEGIN and one COMMIT.

    The transaction holds every task concerned, then every item, in id order (the heartbeat takes
    its items in that order too): two of these, or one and a heartbeat, cannot wait on each other.
    A storyboard's completion that expands the plan (`on_storyboard`) goes through `complete`."""
    outcomes, _ = await complete_and_claim(engine, completions, None, workspace=workspace,
                                           auto_approve=auto_approve)  # fmt: skip
    return outcomes


async def complete_and_claim(
    engine: AsyncEngine,
    completions: Sequence[Completion],
    then: ClaimRequest | None,
    *,
    workspace: Path,
    auto_approve: bool = False,
) -> tuple[list[Outcome], ClaimResult | None]:
    """`complete_many`, then the claim `then` asks for (the places the batch frees, taken again):
    the same rows as the two one after the other. On PostgreSQL the claim is one more statement of
    the completions' transaction when it can be (no round trip, no commit of its own), else it
    follows the commit; on SQLite it follows the commit. The claim's answer is None without `then`.

    The claim's statement waits on no task and no item (it skips those locked, and locks only
    slots and the channels' turns), so holding the completions' locks while it runs adds no wait
    that could close a circle."""
    order = sorted(range(len(completions)), key=lambda n: completions[n].claimed.item_id)
    outcomes: dict[int, Outcome] = {}
    taken: ClaimResult | None = None

    def moved(n: int, outcome: Outcome) -> Outcome:
        """Under the fence (the rows are ours until COMMIT), a done item's output moves into place."""
        if outcome == "done":
            _move_output(workspace, completions[n].result.output, completions[n].final_path)
        return outcome

    if engine.dialect.name == "postgresql":
        lock = lock_completions_pg(
            [(completions[n].claimed.task_id, completions[n].claimed.item_id) for n in order]
        )
        async with pg_driver(engine) as pg, pg.transaction(first=lock):
            # All in one round trip, in item order: each run is its own statement, which sees the
            # writes of the runs before it. The gates each found ready pass after them all: what
            # the earlier ones open, the later ones list again, and a gate passes once (PASS_GATES).
            values = [_values(completions[n]) for n in order]
            rows = await pg.rows_many(COMPLETE_PG, values)
            for n, one, row in zip(order, values, rows, strict=True):
                outcomes[n] = moved(n, await _completed_pg(pg, one, row, auto_approve))
            if then is not None:
                taken = await claim_within_pg(pg, then)
    else:
        async with sqlite_driver(engine) as lite, lite.transaction():
            for n in order:
                outcomes[n] = moved(n, await _succeed(lite, _values(completions[n]), auto_approve))
    if then is not None and taken is None:
        taken = await claim(
            engine, then.provider, then.owner, then.now, then.ttl, then.extension_for, then.policy,
            limit=then.limit,
        )  # fmt: skip
    return [outcomes[n] for n in range(len(completions))], taken


def expands_plan(c: Claimed, on_storyboard: StoryboardHook | None) -> bool:
    """A storyboard whose completion expands the plan (with SQLAlchemy, in `complete` alone)."""
    return c.kind == "storyboard" and on_storyboard is not None


def _values(done: Completion) -> dict[str, Any]:
    c, now = done.claimed, done.now
    return {
        "task": c.task_id,
        "item": c.item_id,
        "token": c.lease_token,
        "final": done.final_path,
        "cost": done.result.cost_micros,
        "now": now,
        "attempt": c.attempt_no,
        "usage": done.result.usage,
        "channel": c.channel_id,
        "day": done.budget_day or now.date().isoformat(),
        "video": done.final_path if c.kind == "assembly" else None,
    }


async def _succeed(
    db: Driver,
    values: dict[str, Any],
    auto_approve: bool,
    before_step: Callable[[], Awaitable[None]] | None = None,
) -> Outcome:
    """The item's success and the DAG step, in the caller's transaction (which holds the task)."""
    if db.dialect == "postgresql" and before_step is None:
        return await _completed_pg(db, values, (await db.rows(COMPLETE_PG, **values))[0], auto_approve)
    if not await db.rows(SUCCEED, **values):
        state, token = (await db.rows(ITEM_LEASE, item=values["item"]))[0]
        return _already_or_fenced(state, token, values["token"])
    for statement in (ATTEMPT_SUCCEEDED, RESERVATION_CLOSED, COST_BOOKED, SLOT_FREED):
        await db.rows(statement, **values)
    if values["video"] is not None:
        await db.rows(VIDEO_PATH, **values)
    if before_step is not None:
        await before_step()
    await step(db, values["task"], values["now"], auto_approve=auto_approve)
    return "done"


async def _completed_pg(db: Driver, values: dict[str, Any], row: Any, auto_approve: bool) -> Outcome:
    """After PostgreSQL's one statement (the writes and the step, see queries.COMPLETE_PG): the gates
    it found ready that are off pass."""
    done, state, token, gates = row
    if not done:
        return _already_or_fenced(state, token, values["token"])
    if await pass_gates(db, values["task"], values["now"], gates, auto_approve=auto_approve):
        await db.rows(FINISH_TASK, task=values["task"], now=values["now"])
    return "done"


def _already_or_fenced(state: str, token: str | None, ours: str) -> Outcome:
    """A completion whose fenced update matched nothing: done already under our token (a retried
    commit whose first answer was lost), or the item is someone else's now."""
    return "already" if (state, token) == (ItemState.SUCCEEDED, ours) else "fenced"


def _move_output(workspace: Path, output: str, final_path: str) -> None:
    """Under the fence (the item row is ours until commit), the attempt's output becomes the item's,
    with its sidecars (files a script wrote beside it as `<output>.<suffix>`: a narration's words,
    the final cut's captions), which move first: an output in place means its sidecars are too. A
    retry of a completion whose commit was lost finds the files moved already."""
    if output == final_path:
        return
    source, target = workspace / output, workspace / final_path
    try:
        names = os.listdir(source.parent)
    except FileNotFoundError:
        names = []
    prefix = source.name + "."
    for name in names:
        if name.startswith(prefix):
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source.parent / name, target.with_name(target.name + name[len(source.name) :]))
    try:
        os.replace(source, target)
    except FileNotFoundError:
        if not source.exists() and target.exists():
            return  # moved by the attempt whose commit was lost
        if target.parent.is_dir():
            raise  # the attempt's output itself is missing
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)


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
