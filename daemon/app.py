"""The composition root: builds the engine, config, runner and workers from settings, and runs them."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.budget import day_of
from daemon.channel_watch import ChannelWatch, Signature, files_signature, with_channels
from daemon.channels import Channel, load_channels, load_provider_limits, load_youtube_quotas
from daemon.claim import ClaimPolicy, ensure_slots
from daemon.clock import SystemClock
from daemon.costs import PricedCosts, load_pricing_file
from daemon.db.engine import make_engine
from daemon.db.reach import check_exists, check_reachable
from daemon.errors import ConfigError
from daemon.lease import release_owned
from daemon.logs import get_logger
from daemon.migrate import check_schema
from daemon.monitor.endpoints import Monitoring
from daemon.monitor.figures import DatabaseFigures, Today
from daemon.monitor.health import Health
from daemon.monitor.listener import Listener
from daemon.monitor.metrics import Metrics, NotionRequests
from daemon.monitor.systemd import Notifier
from daemon.notion.gateway import NotionApi
from daemon.notion.intake import Intake, Source
from daemon.notion.jobs import NotionJobs
from daemon.notion.outbox import OutboxWriter
from daemon.notion.schema import check_data_source
from daemon.notion.uploads import Uploads
from daemon.notion.webhooks import WEBHOOK_PATH, WebhookReceiver
from daemon.retention import Policy
from daemon.retention_job import RetentionJob
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
    # This App's Prometheus registry and instruments (never the global registry: several Apps in
    # one process count apart), and the database's figures read at scrape time.
    metrics: Metrics = field(default_factory=Metrics)
    figures: DatabaseFigures = field(init=False)

    def __post_init__(self) -> None:
        self.metrics.set_limits(self.limits)
        today = Today(
            day_of(self.settings.budget_timezone),
            quota_offset=timedelta(seconds=self.settings.youtube_clock_offset_s),
        )
        self.figures = DatabaseFigures(self.engine, today, SystemClock().now)
        self.metrics.register(self.figures)

    @classmethod
    async def build(cls, settings: Settings, *, check: bool = True) -> App:
        """Reads and validates every configuration file; refuses a SQLite file that does not exist
        and an unmigrated schema."""
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
        check_exists(settings)  # only `migrate` makes the SQLite file; opened, it would be made empty
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
        self.metrics.register(NotionRequests(self.notion.traffic))
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
            SubprocessRunner(self.pid_dir, fork_server=self.settings.script_fork_server),
            SystemClock(),
            self.costs,
            on_storyboard=self.pipeline.on_storyboard,
            policy=self.policy(),
            uploads=UploadGate(
                self.engine, self.settings, self.channels, load_youtube_quotas(self.settings.providers_file)
            ),
            metrics=self.metrics,
        )

    async def run(self, stop: asyncio.Event) -> None:
        log = get_logger(daemon=self.settings.daemon_id)
        worker = self.worker()
        jobs = self.notion_jobs()
        health = self.health(worker, stop)
        # First of all: a port in use stops start-up here (PortInUse, naming HTTP_PORT), before
        # anything is reaped, released or claimed.
        listener = await self.listen(health, jobs)
        try:
            await self._serve(stop, log, worker, jobs, health, listener)
        finally:
            if listener is not None:
                await listener.stop()

    async def listen(self, health: Health, jobs: NotionJobs | None) -> Listener | None:
        """The HTTP listener with /healthz, /readyz, /metrics and the mounted routes, listening; None
        with HTTP_PORT=0."""
        where = self.settings.http_listen()
        if where is None:
            if self.settings.webhooks_on():
                get_logger(daemon=self.settings.daemon_id).warning(
                    "notion_webhooks_off_without_listener",
                    reason="NOTION_WEBHOOKS or NOTION_WEBHOOK_SECRET is set, but HTTP_PORT=0 turns the "
                    "HTTP listener off, so no webhook can arrive; Notion is polled as usual",
                    action="set HTTP_PORT to a port Notion can reach, or unset NOTION_WEBHOOKS and "
                    "NOTION_WEBHOOK_SECRET",
                )
            return None
        host, port, setting = where
        listener = Listener(host, port, setting=setting)
        token = self.settings.metrics_token
        Monitoring(
            health, self.metrics, self.figures, token=token.get_secret_value() if token else None
        ).mount(listener)
        self.mount_routes(listener, jobs)
        await listener.start()
        return listener

    def health(self, worker: Worker, stop: asyncio.Event) -> Health:
        """The checks of /healthz and /readyz (and systemd's watchdog), on this worker's heartbeat."""
        self.metrics.watch_heartbeat(lambda: worker.heartbeat_age() or 0.0)
        self.figures.today.budgets = lambda: dict(worker.policy.budgets)
        return Health(
            self.engine,
            worker.heartbeat_age,
            self.settings.worker_stall_s,
            lambda: self.notion.traffic if self.notion is not None and self.sources else None,
            stopping=stop.is_set,
        )

    async def _serve(
        self,
        stop: asyncio.Event,
        log: Any,
        worker: Worker,
        jobs: NotionJobs | None,
        health: Health,
        listener: Listener | None,
    ) -> None:
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
            http=listener.url if listener is not None else None,
        )
        self.pipeline.on_change = worker.nudge
        watch = ChannelWatch(
            self.settings.channels_dir, self.channels, worker.policy, log, self.channel_files
        )
        notifier = Notifier.from_environment()
        async with asyncio.TaskGroup() as group:
            working = group.create_task(worker.run(stop), name="worker")
            group.create_task(watch.run(stop, worker.budgets_changed), name="channel-files")
            if jobs is not None:
                group.create_task(jobs.run(stop), name="notion")
            retention = self.retention_job()
            if retention is not None:
                group.create_task(retention.run(stop), name="retention")
            group.create_task(
                notifier.run(stop, health.alive, health.started, lambda: status_line(worker), working),
                name="systemd",
            )
        log.info("daemon_stopped")

    def retention_job(self) -> RetentionJob | None:
        """Retention's hourly run, when RETENTION_DAYS or a channel's retention_days asks for one."""
        policy = Policy(self.settings.retention_days, self.channels)
        if not policy.configured:
            return None
        return RetentionJob(
            self.engine,
            self.settings.workspace_dir,
            policy,
            self.settings.daemon_id,
            SystemClock(),
            interval_s=self.settings.retention_interval_s,
        )

    def mount_routes(self, listener: Listener, jobs: NotionJobs | None) -> None:
        """Routes beside the monitoring ones, on the same listener (daemon/monitor/listener.py says
        how); called before the listener starts, and only when there is one (HTTP_PORT is not 0)."""
        # Notion webhooks: only when turned on (NOTION_WEBHOOKS or NOTION_WEBHOOK_SECRET; anyone who
        # reaches the listener can post to the route) and with a data source to wake intake for.
        if jobs is not None and self.settings.webhooks_on():
            secret = self.settings.notion_webhook_secret
            receiver = WebhookReceiver(
                self.settings.workspace_dir, secret.get_secret_value() if secret else None, jobs.wake
            )
            listener.add_post(WEBHOOK_PATH, receiver.handle)

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


def status_line(worker: Worker) -> str:
    """systemd's STATUS=: what `systemctl status` shows under the unit."""
    line = f"{len(worker.running)} of {worker.capacity} scripts running"
    if worker.db_failures:
        line += "; database unreachable, claims wait"
    if worker.disk_full:
        line += "; workspace disk full, nothing new starts"
    return line


def install_signal_handlers(stop: asyncio.Event) -> None:
    """SIGTERM and SIGINT stop the daemon cleanly; the log says which one came."""
    loop = asyncio.get_running_loop()
    log = get_logger()

    def stopping(sig: signal.Signals) -> None:
        log.info("stop_signal_received", signal=sig.name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping, sig)
