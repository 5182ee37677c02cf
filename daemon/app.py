"""The composition root: builds the engine, config, runner and workers from settings, and runs them."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.channels import Channel, load_channels, load_provider_limits
from daemon.claim import ensure_slots
from daemon.clock import SystemClock
from daemon.costs import PricedCosts, load_pricing_file
from daemon.db.engine import make_engine
from daemon.db.models import Attempt
from daemon.logs import get_logger
from daemon.migrate import check_schema
from daemon.pipeline import Pipeline
from daemon.runner import SubprocessRunner, reap_orphans
from daemon.settings import Settings
from daemon.worker import Worker

STALE_TEMP_S = 3600


@dataclass
class App:
    settings: Settings
    engine: AsyncEngine
    channels: dict[str, Channel]
    limits: dict[str, int]
    pipeline: Pipeline
    costs: PricedCosts

    @classmethod
    async def build(cls, settings: Settings, *, check: bool = True) -> App:
        """Reads and validates every configuration file; refuses an unmigrated schema."""
        channels = load_channels(settings.channels_dir)
        limits = load_provider_limits(settings.providers_file).as_dict()
        costs = PricedCosts(load_pricing_file(settings.pricing_file))
        engine = make_engine(settings.sqlalchemy_url, pool_size=4)
        if check:
            try:
                await check_schema(engine)
            except BaseException:
                await engine.dispose()
                raise
        pipeline = Pipeline(engine, channels, settings.workspace_dir, auto_approve=settings.demo_auto_approve)
        return cls(settings, engine, channels, limits, pipeline, costs)

    @property
    def pid_dir(self) -> Path:
        return self.settings.workspace_dir / "run"

    def worker(self) -> Worker:
        return Worker(
            self.engine,
            self.settings,
            self.limits,
            SubprocessRunner(self.pid_dir),
            SystemClock(),
            self.costs,
            on_storyboard=self.pipeline.on_storyboard,
        )

    async def run(self, stop: asyncio.Event) -> None:
        log = get_logger(daemon=self.settings.daemon_id)
        for orphan in reap_orphans(self.pid_dir):
            log.warning("orphan_script_reaped", script=orphan.get("script"), item=orphan.get("label"))
        swept = await sweep_temp_files(self.engine, self.settings.workspace_dir)
        if swept:
            log.info("temp_files_swept", files=swept)
        await ensure_slots(self.engine, self.limits)
        log.info("daemon_started", channels=sorted(self.channels), limits=self.limits)
        await self.worker().run(stop)
        log.info("daemon_stopped")

    async def close(self) -> None:
        await self.engine.dispose()


async def sweep_temp_files(engine: AsyncEngine, workspace: Path) -> int:
    """Removes attempt outputs no running attempt owns, and stale temp files of killed writers."""
    async with engine.connect() as conn:
        live = {
            r[0] for r in await conn.execute(select(Attempt.output_path).where(Attempt.outcome == "running"))
        }
    removed = 0
    root = workspace / "channels"
    if not root.is_dir():
        return 0
    now = time.time()
    for path in root.glob("*/projects/*/attempts/*"):
        if path.is_file() and str(path.relative_to(workspace)) not in live and not _is_partial(path):
            path.unlink(missing_ok=True)
            removed += 1
    for path in root.rglob("*.tmp"):
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime > STALE_TEMP_S:
                path.unlink()
                removed += 1
    return removed


def _is_partial(path: Path) -> bool:
    return path.name.endswith(".tmp")


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
