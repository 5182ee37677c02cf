"""The daemon's own retention run: at start-up, then every RETENTION_INTERVAL_S, in one daemon at a
time (the `retention` lease row, held for one and a half intervals: the daemon that ran it last
runs it again, another takes over when that one is gone)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import leader
from daemon.clock import Clock
from daemon.logs import get_logger
from daemon.retention import Policy, Removed, apply, scan

LEASE = "retention"


class RetentionJob:
    def __init__(
        self,
        engine: AsyncEngine,
        workspace: Path,
        policy: Policy,
        owner: str,
        clock: Clock,
        *,
        interval_s: float = 3600.0,
    ) -> None:
        self.engine = engine
        self.workspace = workspace
        self.policy = policy
        self.owner = owner
        self.clock = clock
        self.interval_s = interval_s
        self.log = get_logger(daemon=owner, job="retention")

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop`. A database or disk failure is logged and tried again at the next interval;
        anything else ends the daemon (a watched task)."""
        while not stop.is_set():
            try:
                await self.once(stop)
            except (SQLAlchemyError, OSError) as exc:
                self.log.warning("retention_failed", error=str(exc)[:300], next_try_s=self.interval_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)

    async def once(self, stop: asyncio.Event | None = None) -> list[Removed] | None:
        """One run, if this daemon holds the lease (None when another daemon does)."""
        now = self.clock.now()
        if await leader.acquire(self.engine, LEASE, self.owner, now, 1.5 * self.interval_s) is None:
            return None
        removals = await scan(self.engine, self.workspace, self.policy, now)
        results = await apply(self.engine, self.workspace, removals, now, stop)
        for result in results:
            removal = result.removal
            if result.skipped:
                self.log.info("retention_skipped", task=removal.task_id, reason=result.skipped)
                continue
            self.log.info(
                "retention_removed",
                task=removal.task_id,
                channel=removal.channel,
                project=removal.slug,
                files=result.files,
                bytes=result.size,
                groups={group: n for group, (n, _) in removal.groups().items()},
                items_marked=len(result.marked),
                finished=removal.finished_at.isoformat(timespec="seconds"),
            )
        freed = sum(r.size for r in results)
        (self.log.info if freed else self.log.debug)(
            "retention_done",
            videos=sum(1 for r in results if r.files),
            files=sum(r.files for r in results),
            bytes=freed,
            freed_mb=round(freed / 1_000_000, 1),
        )
        return results
