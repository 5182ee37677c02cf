"""Weighted fair sharing of a provider's slots across channels (stride scheduling in the claim).

Each (provider, channel) has a pass value. The claim takes the ready item of the channel with the
lowest pass, then advances that channel's pass by 1/weight: over many claims, channels get slots in
proportion to their weights. A channel that was idle (or is new) is lifted to the lowest pass among
channels with ready work, so it neither starves nor bursts ahead on credit from its idle time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, exists, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from daemon.db.models import ChannelShare, Item, Task
from services.states import ItemState, TaskState


def _ready(provider: str, now: datetime) -> Any:
    return and_(Item.provider == provider, Item.state == ItemState.READY, Item.next_attempt_at <= now)


async def floor_pass(conn: AsyncConnection, provider: str, now: datetime) -> float:
    """The lowest pass among channels that have ready work for this provider (0 when none)."""
    has_work = exists().where(
        _ready(provider, now),
        Item.channel_id == ChannelShare.channel_id,
        Task.id == Item.task_id,
        Task.state == TaskState.ACTIVE,
    )
    value = await conn.scalar(
        select(func.min(ChannelShare.pass_value)).where(ChannelShare.provider == provider, has_work)
    )
    return float(value or 0.0)


def effective_pass(conn: AsyncConnection, floor: float) -> Any:
    """ORDER BY expression: a channel's pass lifted to the floor; a channel never served yet goes
    just before the floor, so a newcomer starts at once instead of queueing behind a backlog."""
    lifted = func.greatest if conn.dialect.name == "postgresql" else func.max  # SQLite max(a, b) is scalar
    # An explicit CASE: PostgreSQL's greatest() skips NULLs where SQLite's max() returns NULL.
    return case(
        (ChannelShare.pass_value.is_(None), literal(floor - 0.5)),
        else_=lifted(ChannelShare.pass_value, literal(floor)),
    )


def stride(weights: Mapping[str, int], channel: str) -> float:
    """How far a channel's pass moves per claim: 1/weight (weight 1 when unset)."""
    return 1.0 / max(1, weights.get(channel, 1))


async def advance(
    conn: AsyncConnection, provider: str, channel: str, floor: float, weights: Mapping[str, int]
) -> None:
    step = stride(weights, channel)
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    await conn.execute(
        insert(ChannelShare)
        .values(provider=provider, channel_id=channel, pass_value=floor)
        .on_conflict_do_nothing()
    )
    lifted = func.greatest if conn.dialect.name == "postgresql" else func.max
    await conn.execute(
        update(ChannelShare)
        .where(
            ChannelShare.provider == provider,
            ChannelShare.channel_id == channel,
        )
        .values(pass_value=lifted(ChannelShare.pass_value, literal(floor)) + step)
    )
