"""Wires the real engine (DB, pipeline, worker, subprocess runner) for tests, with chosen scripts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.channels import Channel, Gates, Voice
from daemon.claim import ensure_slots
from daemon.clock import SystemClock
from daemon.costs import ReportedCosts
from daemon.db.models import Item, Task
from daemon.runner import SubprocessRunner
from daemon.settings import Settings
from daemon.tasks import Pipeline
from daemon.worker import Worker
from services.storyboard import Storyboard, parse_storyboard

LIMITS = {"gemini": 4, "kling": 5, "elevenlabs": 5, "local": 2}


def storyboard(
    scenes: int = 2, *, narration: str = "At first light the delta belongs to the patient."
) -> Storyboard:
    return parse_storyboard(
        {
            "title": "The Heron's Patience",
            "atmosphere": "Misty river delta at dawn, photoreal nature documentary",
            "assets": [
                {"key": "heron", "kind": "character", "prompt": "Grey heron wading, neck coiled"},
                {
                    "key": "shallows",
                    "kind": "environment",
                    "prompt": "Reed-lined shallows, still water, mist",
                },
            ],
            "scenes": [
                {
                    "key": f"s{i:02d}",
                    "frame": {"environment": "shallows", "character": "heron" if i % 2 else None},
                    "motion": f"Slow push in, moment {i}",
                    "narration": f"{narration} Scene {i}.",
                    "sfx": "Dawn river ambience, gentle water",
                }
                for i in range(1, scenes + 1)
            ],
        }
    )


def channel(gates: Gates | None = None, channel_id: str = "nature") -> Channel:
    return Channel(
        id=channel_id,
        name=channel_id.title(),
        voice=Voice(voice_id="JBFqnCBsd6RMkjVDRZzb"),
        gates=gates or Gates(storyboard=False, assets=False, final=False),
    )


@dataclass
class Kit:
    engine: AsyncEngine
    workspace: Path
    scripts: Path
    channels: dict[str, Channel] = field(default_factory=lambda: {"nature": channel()})
    limits: dict[str, int] = field(default_factory=lambda: dict(LIMITS))
    overrides: dict[str, Any] = field(default_factory=dict)

    def settings(self, daemon_id: str = "test-daemon", **extra: Any) -> Settings:
        values: dict[str, Any] = {
            "workspace_dir": self.workspace,
            "scripts_dir": self.scripts,
            "daemon_id": daemon_id,
            "lease_ttl_s": 3.0,
            "claim_poll_s": 0.1,
            "retry_base_s": 0.05,
            "retry_cap_s": 0.2,
            "sigterm_grace_s": 1.0,
            **self.overrides,
            **extra,
        }
        return Settings(**values)

    @property
    def pipeline(self) -> Pipeline:
        return Pipeline(self.engine, self.channels, self.workspace)

    async def prepare(self) -> None:
        await ensure_slots(self.engine, self.limits)

    def worker(self, daemon_id: str = "test-daemon", **extra: Any) -> Worker:
        settings = self.settings(daemon_id, **extra)
        runner = SubprocessRunner(self.workspace / "run" / daemon_id)
        return Worker(
            self.engine,
            settings,
            self.limits,
            runner,
            SystemClock(),
            ReportedCosts(),
            on_storyboard=self.pipeline.on_storyboard,
        )

    async def submit(self, sb: Storyboard | None = None, slug: str = "p1", **request: Any) -> int:
        req = {"title": "The Heron's Patience", "topic": "herons", "direction": "calm", **request}
        return await self.pipeline.submit("nature", slug, req, now(), storyboard=sb)

    async def items(self, task_id: int) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(Item).where(Item.task_id == task_id))
            return {r.key: r for r in rows}

    async def task(self, task_id: int) -> Any:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(Task).where(Task.id == task_id))).one()


def now() -> datetime:
    return datetime.now(UTC)


async def run_workers(
    workers: list[Worker], until: Callable[[], Awaitable[bool]], timeout: float = 60.0
) -> None:
    """Runs the workers until `until()` holds, then stops them (a clean drain)."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    try:
        async with asyncio.timeout(timeout):
            while not await until():
                for t in tasks:
                    if t.done():
                        t.result()
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
