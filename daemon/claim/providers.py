"""The provider slot rows, and which providers have work to claim."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.db.driver import pg_driver, sqlite_driver
from daemon.db.models import ProviderSlot
from daemon.queries import READY_PROVIDERS


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
    """Which of these providers have a ready item due now in an active task (see READY_PROVIDERS)."""
    if not providers:
        return []
    if engine.dialect.name == "postgresql":
        async with pg_driver(engine) as pg:
            rows = await pg.rows(READY_PROVIDERS, providers=providers, now=now)
    else:
        async with sqlite_driver(engine) as lite:
            rows = await lite.rows(READY_PROVIDERS, providers=providers, now=now)
    found = {row[0] for row in rows}
    return [p for p in providers if p in found]
