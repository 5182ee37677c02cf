"""The composition root: builds the engine, config, runner and workers from settings, and runs them."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.budget import day_of
from daemon.channel_watch import ChannelWatch, Signature, files_signature, with_channels
from daemon.channels import Channel, load_channels, load_provider_limits, load_youtube_quotas
from daemon.claim import ClaimPolicy, ensure_slots
from daemon.clock import SystemClock
from daemon.costs import PricedCosts, load_pricing_file
from daemon.db.engine import make_engine
from daemon.db.reach import check_reachable
from daemon.errors import ConfigError
from daemon.lease import release_owned
from daemon.logs import get_logger
from daemon.migrate import check_schema
from daemon.notion.gateway import NotionApi
from daemon.notion.intake import Intake, Source
from daemon.notion.jobs import NotionJobs
from daemon.notion.outbox import OutboxWriter
from daemon.notion.schema import check_data_source
from daemon.notion.uploads import Uploads
from daemon.runner import SubprocessRunner, reap_orphans
from daemon.settings import Settings
from daemon.tasks import Pipeline, pause_for_gone_page
from daemon.worker import Worker
from daemon.workspace import prepare_workspace, sweep_temp_files
from daemon.youtube.gate import UploadGate


@dataclass
class App:
    settings: Settings
    engine: AsyncEngine
    channels: dict[str, Channel]
    limits: dict[str, int]
    pipeline: Pipeline
    costs: PricedCosts
    notion: NotionApi | None = None
    sources: list[Source] = field(default_factory=list)
    channel_files: Signature = ()  # the channel files as they were when read

    @classmethod
    async def build(cls, settings: Settings, *, check: bool = True) -> App:
        """Reads and validates every configuration file; refuses an unmigrated schema."""
        prepare_workspace(settings.workspace_dir)
        channel_files = files_signature(settings.channels_dir)
        channels = load_channels(settings.channels_dir)
        for channel in channels.values():
            if channel.sfx_level_db is not None:
                get_logger(daemon=settings.daemon_id).warning(
                    "channel_setting_unused",
                    channel=channel.id,
                    setting="sfx_level_db",
                    fix="beds are measured and normalised now: set levels.ambience_lu (LU under the voice, "
                    "default -13) and remove sfx_level_db",
                )
        limits = load_provider_limits(settings.providers_file).as_dict()
        pricing = load_pricing_file(settings.pricing_file)
        costs = PricedCosts(pricing)
        engine = make_engine(settings.sqlalchemy_url, pool_size=4)
        if check:
            try:
                await check_reachable(engine)
                await check_schema(engine)
            except BaseException:
                await engine.dispose()
                raise
        pipeline = Pipeline(
            engine, channels, settings.workspace_dir, auto_approve=settings.demo_auto_approve, pricing=pricing
        )
        app = cls(settings, engine, channels, limits, pipeline, costs, channel_files=channel_files)
        if check:
            try:
                await app.connect_notion()
            except BaseException:
                await app.close()
                raise
        return app

    async def connect_notion(self) -> None:
        """Checks every configured data source; a mismatch stops start-up naming property and fix."""
        bound = [c for c in self.channels.values() if c.notion is not None]
        if not bound:
            return
        token = self.settings.notion_token
        if token is None or not token.get_secret_value():
            names = ", ".join(c.id for c in bound)
            raise ConfigError(
                f"channels {names} name a Notion data source but NOTION_TOKEN is not set; set it "
                "to the integration's secret (Notion: Settings, Connections, Develop integrations)"
            )
        self.notion = NotionApi(
            token.get_secret_value(),
            self.settings.notion_base_url,
            rate=self.settings.notion_rate,
            burst=self.settings.notion_burst,
            timeout_s=self.settings.notion_timeout_s,
        )
        by_source: dict[str, list[Channel]] = {}
        for channel in bound:
            assert channel.notion is not None
            by_source.setdefault(channel.notion.data_source_id, []).append(channel)
        for source_id, channels in by_source.items():
            info = await check_data_source(self.notion, source_id, channels)
            for note in info.notes:
                get_logger(daemon=self.settings.daemon_id).warning(
                    "notion_property_missing", data_source=source_id, note=note
                )
            self.sources.append(Source(info, tuple(channels)))

    @property
    def pid_dir(self) -> Path:
        return self.settings.workspace_dir / "run"

    def policy(self) -> ClaimPolicy:
        """Channel weights and budgets for the claim, from the channel files."""
        return with_channels(ClaimPolicy(day_of=day_of(self.settings.budget_timezone)), self.channels)

    def worker(self) -> Worker:
        return Worker(
            self.engine,
            self.settings,
            self.limits,
            SubprocessRunner(self.pid_dir),
            SystemClock(),
            self.costs,
            on_storyboard=self.pipeline.on_storyboard,
            policy=self.policy(),
            uploads=UploadGate(
                self.engine, self.settings, self.channels, load_youtube_quotas(self.settings.providers_file)
            ),
        )

    async def run(self, stop: asyncio.Event) -> None:
        log = get_logger(daemon=self.settings.daemon_id)
        for orphan in reap_orphans(self.pid_dir):
            log.warning("orphan_script_reaped", script=orphan.get("script"), item=orphan.get("label"))
        mine = await release_owned(self.engine, self.settings.daemon_id, SystemClock().now())
        if mine:
            log.warning("own_leases_released_after_restart", items=mine)
        swept = await sweep_temp_files(self.engine, self.settings.workspace_dir)
        if swept:
            log.info("temp_files_swept", files=swept)
        await ensure_slots(self.engine, self.limits)
        if not self.channels:
            log.warning(
                "no_channel_configured",
                channels_dir=str(self.settings.channels_dir),
                action="add a <channel>.yaml there (see Configuration in the README), then restart",
            )
        log.info(
            "daemon_started",
            channels=sorted(self.channels),
            limits=self.limits,
            notion_sources=[s.info.data_source_id for s in self.sources],
        )
        worker = self.worker()
        self.pipeline.on_change = worker.nudge
        watch = ChannelWatch(
            self.settings.channels_dir, self.channels, worker.policy, log, self.channel_files
        )
        async with asyncio.TaskGroup() as group:
            group.create_task(worker.run(stop), name="worker")
            group.create_task(watch.run(stop, worker.budgets_changed), name="channel-files")
            jobs = self.notion_jobs()
            if jobs is not None:
                group.create_task(jobs.run(stop), name="notion")
        log.info("daemon_stopped")

    def notion_jobs(self) -> NotionJobs | None:
        if self.notion is None or not self.sources:
            return None
        clock = SystemClock()
        writer = OutboxWriter(
            self.engine,
            self.notion,
            on_page_gone=self.page_gone,
            late_s=self.settings.notion_late_write_s,
            uploads=Uploads(self.engine, self.notion, self.settings.workspace_dir),
        )
        intake = Intake(self.engine, self.notion, self.pipeline, self.sources)
        return NotionJobs(
            self.engine,
            intake,
            writer,
            self.settings.workspace_dir,
            clock,
            self.settings.daemon_id,
            poll_s=self.settings.notion_poll_s,
            idle_poll_s=self.settings.idle_poll_s,
            lease_ttl_s=self.settings.lease_ttl_s,
        )

    async def page_gone(self, page_id: str) -> None:
        """A page trashed or unshared (404) pauses its task; the log says so, and a comment waits
        for the page to come back (intake sends it as soon as it sees the page again)."""
        if await pause_for_gone_page(self.engine, page_id, SystemClock().now()):
            get_logger(daemon=self.settings.daemon_id).warning("task_paused_page_gone", page=page_id)

    async def close(self) -> None:
        if self.notion is not None:
            await self.notion.close()
        await self.engine.dispose()


def install_signal_handlers(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT stop the daemon cleanly; the log says which one came."""
    loop = asyncio.get_running_loop()
    log = get_logger()

    def stopping(sig: signal.Signals) -> None:
        log.info("stop_signal_received", signal=sig.name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping, sig)
