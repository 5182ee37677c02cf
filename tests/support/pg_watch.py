"""Samples pg_stat_activity while the engine runs: how long did any of its transactions stay open?"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import asyncpg

from tests.support.db import PG_ADMIN_URL


@dataclass
class TransactionWatch:
    database: str
    longest_s: float = 0.0
    samples: int = 0
    worst: list[str] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> TransactionWatch:
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _sample(self) -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            while True:
                rows = await conn.fetch(
                    "SELECT extract(epoch FROM now() - xact_start) AS age, state, left(query, 120) AS query "
                    "FROM pg_stat_activity WHERE datname = $1 AND xact_start IS NOT NULL "
                    "AND pid <> pg_backend_pid()",
                    self.database,
                )
                self.samples += 1
                for row in rows:
                    age = float(row["age"])
                    if age > self.longest_s:
                        self.longest_s = age
                        self.worst = [f"{age:.3f}s {row['state']}: {row['query']}"]
                await asyncio.sleep(0.02)
        finally:
            await conn.close()
