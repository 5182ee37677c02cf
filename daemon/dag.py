"""The DAG step: blocked items whose dependencies all succeeded become ready, review gates that are
off pass, and a task whose items all succeeded is done. One definition, run on the hot path's
driver by the completion, and inside SQLAlchemy transactions (a new plan, an approval) through
`driver_in`. Statements: daemon/queries.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from daemon.db.driver import Driver, driver_in
from daemon.queries import APPROVE, FINISH_TASK, LOCK_TASK, PASS_GATES, READY_GATES, UNBLOCK, gate_passes


async def lock_task(conn: AsyncConnection, task_id: int) -> Driver:
    """Takes the task row (see queries.LOCK_TASK) in a SQLAlchemy transaction, and returns the
    driver under it for the DAG step."""
    db = await driver_in(conn)
    await db.rows(LOCK_TASK, task=task_id)
    return db


async def step(db: Driver, task_id: int, now: datetime, *, auto_approve: bool = False) -> None:
    """The whole step, for a task whose items just changed."""
    await db.rows(UNBLOCK, task=task_id, now=now)
    await pass_gates(db, task_id, now, await db.rows(READY_GATES, task=task_id), auto_approve=auto_approve)
    await db.rows(FINISH_TASK, task=task_id, now=now)


async def pass_gates(
    db: Driver, task_id: int, now: datetime, gates: Sequence[Sequence[Any]], *, auto_approve: bool
) -> bool:
    """Passes the ready gates (id, input) that are off, and those the next ones unblock; True if
    any passed (the caller then checks whether the task is done)."""
    passed = False
    while passing := [gate for gate, data in gates if gate_passes(_object(data), auto_approve)]:
        await db.rows(PASS_GATES, ids=passing, now=now)
        await db.rows(UNBLOCK, task=task_id, now=now)
        gates = await db.rows(READY_GATES, task=task_id)
        passed = True
    return passed


async def refresh(conn: AsyncConnection, task_id: int, now: datetime, *, auto_approve: bool = False) -> None:
    """The step inside a SQLAlchemy transaction that holds the task (a new or changed plan)."""
    await step(await driver_in(conn), task_id, now, auto_approve=auto_approve)


async def approve_gate(engine: AsyncEngine, task_id: int, gate_kind: str, now: datetime) -> bool:
    """The operator approved a gate; returns False when that gate is not waiting."""
    async with engine.begin() as conn:
        db = await lock_task(conn, task_id)
        if not await db.rows(APPROVE, task=task_id, gate=gate_kind, now=now):
            return False
        await step(db, task_id, now)
        return True


def _object(data: Any) -> dict[str, Any]:
    """An item's input as the driver returns it: decoded by asyncpg's codec, JSON text on SQLite."""
    return data if isinstance(data, dict) else json.loads(data)
