"""The provider slot rows, and which providers have work to claim."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.db.models import Item, ProviderSlot, Task
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
