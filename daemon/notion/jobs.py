"""The Notion singleton jobs under the leader lease, driven by APScheduler: intake on the poll
interval, the outbox (sync + flush) every few seconds. Only the leader runs them. A Notion webhook
event wakes an intake of its data source at once (`wake`), between the polls."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import leader
from daemon.clock import Clock
from daemon.logs import get_logger
from daemon.notion.intake import Intake, Source
from daemon.notion.outbox import OutboxWriter
from daemon.notion.sync import sync_tasks
from daemon.notion.webhooks import WebhookEvent, event_sources

LEASE = "notion"
FULL_SYNC_S = 30.0
# At stop, running jobs (a poll, a flush, a woken intake) get this long to finish, beside the
# worker's own drain; what still runs after it is cancelled.
DRAIN_S = 10.0


class NotionJobs:
    def __init__(
        self,
        engine: AsyncEngine,
        intake: Intake,
        writer: OutboxWriter,
        workspace: Path,
        clock: Clock,
        owner: str,
        *,
        poll_s: float,
        idle_poll_s: float | None = None,
        outbox_s: float = 2.0,
        lease_ttl_s: float = 30.0,
    ) -> None:
        self.engine = engine
        self.intake = intake
        self.writer = writer
        self.workspace = workspace
        self.clock = clock
        self.owner = owner
        self.poll_s = poll_s
        self.idle_poll_s = idle_poll_s or poll_s
        self.last_poll: datetime | None = None
        self.outbox_s = outbox_s
        self.lease_ttl_s = lease_ttl_s
        self.token: str | None = None
        self.valid_until: datetime | None = None  # when the lease runs out unless renewed
        self.watched: set[int] = set()  # tasks at work at the last sync: synced until they settle
        self.last_full: datetime | None = None  # every FULL_SYNC_S, every task with a page is synced
        self.scheduler: AsyncIOScheduler | None = None
        # The outbox runs as its own job and after each poll that acted; two runs at once would both
        # read the same unsent rows and write them twice (a Status written again after the operator
        # changed it, a comment posted twice).
        # Intake takes it too, to tell a Status set by hand from a write of ours in flight.
        self.outbox_lock = asyncio.Lock()
        intake.write_lock = self.outbox_lock
        self.intake_acted = False
        self.active = 0  # jobs running now; shutdown waits for them instead of cancelling them
        # One intake at a time, polled or woken by a webhook: two would act on the same page twice.
        self.intake_lock = asyncio.Lock()
        self.woken: list[WebhookEvent] = []  # webhook events not looked at yet
        self.wake_task: asyncio.Task[None] | None = None
        self.outbox_task: asyncio.Task[None] | None = None  # the outbox run a poll started
        self.stopping = False
        self.log = get_logger(daemon=owner, job="notion")

    async def run(self, stop: asyncio.Event) -> None:
        """Runs until `stop`; the leader's lease is handed back on the way out."""
        # A long flush or poll stops at the next page once the lease is no longer ours.
        self.writer.leading = self.intake.leading = self.leading
        self.scheduler = scheduler = AsyncIOScheduler()
        common = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        scheduler.add_job(
            self._guard(self.lead),
            "interval",
            seconds=self.lease_ttl_s / 3,
            id="lead",
            next_run_time=self.clock.now(),
            **common,
        )
        scheduler.add_job(self._guard(self.poll), "interval", seconds=self.poll_s, id="intake", **common)
        scheduler.add_job(self._guard(self.outbox), "interval", seconds=self.outbox_s, id="outbox", **common)
        scheduler.start()
        try:
            await stop.wait()
        finally:
            self.stopping = True  # no webhook wakes an intake from now on
            # APScheduler cancels running jobs at shutdown: let the running one finish first.
            scheduler.pause()
            waited = 0.0
            while self.active and waited < DRAIN_S:
                await asyncio.sleep(0.05)
                waited += 0.05
            scheduler.shutdown(wait=False)
            # A woken intake (or a poll's outbox run) still running after that is stopped here, not
            # left to act beside the next leader or after the engine is disposed.
            await self._stop_wakes()
            if self.token:
                try:
                    await leader.release(self.engine, LEASE, self.token)
                    self.log.info("leadership_released")
                except Exception as exc:  # the database is away: the lease runs out by itself
                    self.log.warning("leadership_release_failed", error=str(exc)[:300])
            # Handed back (or given up): leading() is false from now on, whatever valid_until said.
            self.token = self.valid_until = None

    async def _stop_wakes(self) -> None:
        for task in (self.wake_task, self.outbox_task):
            if task is None or task.done():
                continue
            task.cancel()
            await asyncio.wait({task}, timeout=DRAIN_S)  # its own cancellation is not ours to raise

    def _guard(self, job: Callable[[], Awaitable[None]]) -> Callable[[], Coroutine[Any, Any, None]]:
        async def guarded() -> None:
            self.active += 1
            try:
                await job()
            except Exception as exc:  # Notion or the DB is down: the next run tries again
                self.log.warning("notion_job_failed", job=job.__name__, error=str(exc))
            finally:
                self.active -= 1

        guarded.__name__ = job.__name__
        return guarded

    def leading(self) -> bool:
        """Whether this daemon may act as the leader now: it holds the lease and the lease has not
        run out since it was last renewed (a failed or late renewal ends it on time)."""
        return self.token is not None and self.valid_until is not None and self.clock.now() < self.valid_until

    async def lead(self) -> None:
        was = self.token
        asked = self.clock.now()
        try:
            self.token = await leader.acquire(self.engine, LEASE, self.owner, asked, self.lease_ttl_s)
        except Exception:
            # Not renewed: the lease runs out at valid_until as it would for a dead daemon, and
            # leading() says so then; the token is kept for a renewal that may still succeed.
            if not self.leading():
                self._lost(was)
            raise
        self.valid_until = asked + timedelta(seconds=self.lease_ttl_s) if self.token else None
        if self.token and not was:
            self.log.info("leadership_taken")
            self.last_full = None
            # The first poll runs as the intake job, now: run here, it would hold this job (one
            # instance at a time) past the lease's renewals, and a long first poll lost the lease.
            if self.scheduler:
                self.scheduler.modify_job("intake", next_run_time=datetime.now(UTC))
        elif was and not self.token:
            self._lost(was)

    def _lost(self, was: str | None) -> None:
        if was:
            self.log.warning("leadership_lost")
        self.token = None
        self.valid_until = None

    async def poll(self) -> None:
        """The intake job runs every poll_s; with nothing at work it polls every idle_poll_s only."""
        if not self.leading():
            return
        now = self.clock.now()
        idle = not self.watched and not self.intake_acted
        # Half a job interval of slack: the jobs fire every poll_s, give or take the scheduler's jitter.
        since = None if self.last_poll is None else (now - self.last_poll).total_seconds()
        if idle and since is not None and since < self.idle_poll_s - self.poll_s / 2:
            return
        self.last_poll = now
        async with self.intake_lock:
            if not self.leading():
                return
            if await self.intake.poll(now):
                self.intake_acted = True
        # Not behind a running flush: a slow Notion (3 s per write) held every poll for the whole
        # flush, and an operator's Cancelled set meanwhile was overwritten by our write in flight
        # before any poll saw it. The running flush's job picks intake_acted up at its next run.
        # In a task of its own, not in this job: the outbox sends the boards' files first (images,
        # frames, clips: seconds each), and this job waited for them, so the next poll did too (a
        # Cancelled set while a video's frames were being sent was seen 5 s and more later).
        if not self.outbox_lock.locked() and (self.outbox_task is None or self.outbox_task.done()):
            self.outbox_task = asyncio.get_running_loop().create_task(
                self._guard(self.outbox)(), name="notion-outbox-after-poll"
            )

    async def outbox(self) -> None:
        """Sync and flush while tasks are at work; when idle, once per FULL_SYNC_S (cheap on the DB)
        and when a write or comment left waiting falls due."""
        if not self.leading() or not self._outbox_work(self.clock.now()):
            return  # idle: not even a look for board files to send (it was most of an idle daemon's SQL)
        await self.writer.send_board_files(self.clock.now())
        async with self.outbox_lock:
            if not self.leading():
                return
            now = self.clock.now()
            if not self._outbox_work(now):
                return
            full = self._full_sync_due(now)
            self.intake_acted = False  # cleared before the sync: a poll acting during it asks again
            self.watched = await sync_tasks(self.engine, self.workspace, now, None if full else self.watched)
            if full:
                self.last_full = now
            await self.writer.flush(now)

    def _outbox_work(self, now: datetime) -> bool:
        """Whether the outbox has anything to do: tasks at work, a poll that acted, a write or
        comment left waiting that falls due, or the full sync's time."""
        due = self.writer.next_due is not None and self.writer.next_due <= now
        return bool(self.watched or self._full_sync_due(now) or self.intake_acted or due)

    def _full_sync_due(self, now: datetime) -> bool:
        return self.last_full is None or (now - self.last_full).total_seconds() >= FULL_SYNC_S

    # Webhooks ---------------------------------------------------------------------------------------
    def wake(self, event: WebhookEvent) -> bool:
        """Takes a Notion webhook event: an intake of its page's data source runs now, in a task of
        its own (the webhook's answer does not wait for it). Events arriving meanwhile are looked at
        together at its next round; an intake already running (a poll) is waited for, then the woken
        one runs, since that poll may have read the data source before the edit. False when this
        daemon does not lead: the leader's next poll sees the change."""
        if self.stopping or not self.leading():
            return False
        self.woken.append(event)
        if self.wake_task is None or self.wake_task.done():
            self.wake_task = asyncio.get_running_loop().create_task(
                self._run_wakes(), name="notion-webhook-intake"
            )
        return True

    async def _run_wakes(self) -> None:
        self.active += 1
        try:
            while self.woken and not self.stopping:
                events, self.woken = self.woken, []
                try:
                    await self._intake_for(events)
                except Exception as exc:  # Notion or the DB is down: the next poll tries again
                    self.log.warning("notion_job_failed", job="webhook_intake", error=str(exc))
        finally:
            self.active -= 1

    async def _intake_for(self, events: list[WebhookEvent]) -> None:
        """One intake of each data source these events name, leaving out events that only our own
        writes made (the outbox's Status and board writes are events too)."""
        sources: dict[str, Source] = {}
        for event in events:
            # Asked only for an event that bots alone made: a person's edit never waits for users/me.
            bots_only = bool(event.authors) and all(a.type == "bot" for a in event.authors)
            if bots_only and event.only_by(await self.bot_id() or ""):
                continue
            for source in event_sources(event, self.intake.sources):
                sources[source.info.data_source_id] = source
        if not sources:
            return
        async with self.intake_lock:
            if not self.leading() or self.stopping:
                return
            now = self.clock.now()
            self.log.info(
                "notion_webhook_intake",
                data_sources=sorted(sources),
                events=len(events),
                pages=len({e.entity_id for e in events}),
            )
            for source in sources.values():
                if await self.intake.poll_source(source, now):
                    self.intake_acted = True
        if not self.outbox_lock.locked():
            await self.outbox()

    async def bot_id(self) -> str | None:
        """The integration's own user (users/me, asked once and kept; the outbox knows it too), or
        None while Notion cannot say: the event is then taken as someone else's."""
        if self.writer.bot_id is None:
            try:
                self.writer.bot_id = str((await self.intake.notion.call("GET", "users/me"))["id"])
            except Exception as exc:
                self.log.warning("notion_bot_unknown", error=str(exc)[:300])
                return None
        return self.writer.bot_id
