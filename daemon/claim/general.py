"""The claim as a transaction of single SQLAlchemy statements: the definition the fast paths follow.

Only PostgreSQL still runs it, when its fast path hands a claim over in one of two rare cases: a
channel whose first ready items are all ineligible, and a budgeted item taken by another daemon
between two statements. SQLite always claims through daemon/claim/sqlite.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from daemon.budget import lock_channel_day, refusal, reserve
from daemon.claim.common import BUDGET_TRIES, Claimed, ClaimPolicy, attempt_output, idempotency_key
from daemon.db.models import Attempt, ChannelShare, Item, ItemEdge, ProviderSlot, Task
from daemon.fairness import advance, effective_pass, floor_pass
from daemon.lease import grace
from services.states import ItemState, TaskState


async def ensure_slots(engine: AsyncEngine, limits: dict[str, int]) -> None:
    """Makes the slot rows match the configured limits (extra free rows removed)."""
    async with engine.begin() as conn:
        for provider, limit in limits.items():
            rows = await conn.execute(select(ProviderSlot.slot_no).where(ProviderSlot.provider == provider))
            have = {r[0] for r in rows}
            missing = [n for n in range(limit) if n not in have]
            if missing:
                await conn.execute(
                    insert(ProviderSlot), [{"provider": provider, "slot_no": n} for n in missing]
                )
            await conn.execute(
                delete(ProviderSlot).where(
                    ProviderSlot.provider == provider,
                    ProviderSlot.slot_no >= limit,
                    ProviderSlot.item_id.is_(None),
                )
            )


async def claim_general(
    engine: AsyncEngine,
    provider: str,
    owner: str,
    now: datetime,
    ttl: float,
    extension_for: Mapping[str, str],
    policy: ClaimPolicy,
) -> Claimed | None:
    """See the module's docstring."""
    async with engine.begin() as conn:
        slot = await _free_slot(conn, provider, now)
        if slot is None:
            return None
        floor = await floor_pass(conn, provider, now)
        row, day = await _affordable_item(conn, provider, now, floor, policy)
        if row is None:
            return None
        token = uuid.uuid4().hex
        expires = now + timedelta(seconds=ttl)
        await conn.execute(
            update(ProviderSlot)
            .where(ProviderSlot.provider == provider, ProviderSlot.slot_no == slot)
            .values(item_id=row.id, lease_token=token, expires_at=expires + grace(ttl))
        )
        number = row.attempts + 1
        await conn.execute(
            update(Item)
            .where(Item.id == row.id)
            .values(
                state=ItemState.RUNNING,
                lease_owner=owner,
                lease_token=token,
                lease_expires_at=expires,
                attempts=number,
                updated_at=now,
            )
        )
        if day is not None:
            await reserve(conn, row.task_id, row.id, number, row.channel_id, day, row.estimate_micros, now)
        await advance(conn, provider, row.channel_id, floor, policy.weights)
        slug = await conn.scalar(select(Task.project_slug).where(Task.id == row.task_id))
        assert slug is not None
        key = idempotency_key(row.channel_id, slug, row.key, row.input_hash, row.generation)
        out = attempt_output(row.channel_id, slug, row.key, number, extension_for.get(row.kind, ""))
        await conn.execute(
            insert(Attempt).values(
                item_id=row.id,
                number=number,
                idempotency_key=key,
                output_path=out,
                lease_token=token,
                owner=owner,
                outcome="running",
                started_at=now,
                cost_micros=0,
            )
        )
        deps = await dependency_outputs(conn, row.id)
        return Claimed(
            item_id=row.id,
            task_id=row.task_id,
            channel_id=row.channel_id,
            project_slug=slug,
            kind=row.kind,
            key=row.key,
            provider=provider,
            input=dict(row.input),
            input_hash=row.input_hash,
            attempt_no=number,
            lease_token=token,
            idempotency_key=key,
            attempt_output=out,
            resume=row.provider_job_id,
            deps=deps,
        )


async def _affordable_item(
    conn: AsyncConnection, provider: str, now: datetime, floor: float, policy: ClaimPolicy
) -> tuple[Any, str | None]:
    """The fairest ready item whose estimated cost fits its budgets, and the budget day it is
    reserved on (None when its channel has no budget)."""
    skipped: list[int] = []
    for _ in range(BUDGET_TRIES):
        row = await _ready_item(conn, provider, now, floor, skipped)
        if row is None:
            return None, None
        budget = policy.budgets.get(row.channel_id)
        if budget is None:
            return row, None
        day = policy.day_of(now)
        await lock_channel_day(conn, row.channel_id, day)
        why = await refusal(conn, row.task_id, row.channel_id, day, row.estimate_micros, row.key, budget)
        if why is None:
            return row, day
        policy.over_budget.append((row.task_id, why))
        skipped.append(row.task_id)
    return None, None


async def ready_providers(engine: AsyncEngine, providers: list[str], now: datetime) -> list[str]:
    """Which of these providers have a ready item due now in an active task (one indexed query)."""
    if not providers:
        return []
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(Item.provider)
            .join(Task, and_(Task.id == Item.task_id, Task.state == TaskState.ACTIVE))
            .where(Item.provider.in_(providers), Item.state == ItemState.READY, Item.next_attempt_at <= now)
            .group_by(Item.provider)
        )
        found = {r[0] for r in rows}
    return [p for p in providers if p in found]


async def _free_slot(conn: AsyncConnection, provider: str, now: datetime) -> int | None:
    query = (
        select(ProviderSlot.slot_no)
        .where(
            ProviderSlot.provider == provider,
            or_(ProviderSlot.item_id.is_(None), ProviderSlot.expires_at < now),
        )
        .order_by(ProviderSlot.slot_no)
        .limit(1)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return await conn.scalar(query)


async def _ready_item(
    conn: AsyncConnection, provider: str, now: datetime, floor: float, skipped: list[int]
) -> Any:
    """The next item in fair order: the channel furthest behind its share, then High before
    Normal before Low, then the oldest task."""
    query = (
        select(
            Item.id,
            Item.task_id,
            Item.channel_id,
            Item.kind,
            Item.key,
            Item.input,
            Item.input_hash,
            Item.attempts,
            Item.provider_job_id,
            Item.estimate_micros,
            Item.generation,
        )
        .join(Task, and_(Task.id == Item.task_id, Task.state == TaskState.ACTIVE))
        .outerjoin(
            ChannelShare, and_(ChannelShare.provider == provider, ChannelShare.channel_id == Item.channel_id)
        )
        .where(Item.provider == provider, Item.state == ItemState.READY, Item.next_attempt_at <= now)
        .order_by(effective_pass(conn, floor), Item.priority, Item.task_id, Item.id)
        .limit(1)
    )
    if skipped:
        query = query.where(Item.task_id.not_in(skipped))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(of=Item, skip_locked=True)
    return (await conn.execute(query)).first()


async def dependency_outputs(conn: AsyncConnection, item_id: int) -> dict[str, str]:
    rows = await conn.execute(
        select(Item.key, Item.output_path)
        .join(ItemEdge, ItemEdge.depends_on == Item.id)
        .where(ItemEdge.item_id == item_id)
    )
    return {r.key: r.output_path for r in rows if r.output_path}
