"""The worker pool: claims ready items within provider limits, runs their scripts, completes them.

A worker is an asyncio task waiting on a subprocess, so the pool is sized from the providers'
limits (their sum). The loop waits on `stop`, `wake` (an item finished here) and a poll timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import budget, lease
from daemon.claim import Claimed, ClaimPolicy, ClaimRequest, ClaimResult, claim, ready_providers
from daemon.clock import Clock
from daemon.commands import EXTENSIONS, build_command, final_path
from daemon.complete import Completion, StoryboardHook, Success, count_failures, fail
from daemon.completions import CompletionQueue
from daemon.crashpoints import crash_point
from daemon.logs import Redactor, get_logger
from daemon.monitor import metrics as m
from daemon.paths import FFMPEG_ENV, ffmpeg_executable
from daemon.queries import CLAIM_LIMIT
from daemon.retry import backoff_seconds, db_retry, is_transient_db_error
from daemon.runner import EXIT_OK, EXIT_PERMANENT, EXIT_TRANSIENT, EXIT_USAGE, ScriptOutcome, ScriptRunner
from daemon.settings import Settings
from daemon.youtube.gate import RECHECK, WAITS, UploadGate, Wait
from services.states import AttemptOutcome


class CostModel(Protocol):
    def actual_micros(self, kind: str, usage: dict[str, Any], reported_usd: float | None) -> int: ...


HEARTBEAT_MAX_S = 2.0
PROGRESS_EVERY_S = 2.0
# An upload whose lease has gone unrenewed this share of its TTL is stopped: another daemon may
# take the lease over at 1.5 TTL (lease.grace).
UPLOAD_STOP_AFTER = 0.8
# On SIGTERM, after SIGTERM_GRACE_S (SIGTERM_PAID_GRACE_S for a paid call in flight) the steps
# still running are stopped and given this long to record how they ended: a stop takes the longer
# grace + this at worst (systemd's TimeoutStopSec, Railway's drainingSeconds and Docker's stop
# timeout are set above it; tests/integration/test_deploy_files.py checks them).
SETTLE_AFTER_STOP_S = 30.0


@dataclass
class Running:
    claimed: Claimed
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str | None = None  # why it was stopped on purpose: lost | shutdown
    # The script has exited: nothing is left to kill, and its completion is fenced by the token.
    exited: bool = False
    # The script has started a paid call it cannot collect later (its "paying" event): stopped
    # mid-call, the next run would pay for it again.
    paying: bool = False
    task: asyncio.Task[None] | None = None


class Worker:
    def __init__(
        self,
        engine: AsyncEngine,
        settings: Settings,
        limits: dict[str, int],
        runner: ScriptRunner,
        clock: Clock,
        costs: CostModel,
        on_storyboard: StoryboardHook | None = None,
        policy: ClaimPolicy | None = None,
        uploads: UploadGate | None = None,
        metrics: m.Metrics | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.limits = limits
        self.runner = runner
        self.clock = clock
        self.costs = costs
        self.on_storyboard = on_storyboard
        self.policy = policy or ClaimPolicy()
        self.uploads = uploads  # YouTube: the sign-in and the quota around each upload
        self.disk_full = False
        # Built once: the daemon's environment and settings do not change while it runs.
        self.base_env = {**script_base_env(), **settings.script_env()}
        # What scripts say goes into the DB and onto Notion pages: never with a key in it.
        self.redact = Redactor(settings.secret_values()).scrub
        self.workspace = settings.workspace_dir
        # Completions that arrive together are committed together (daemon/completions.py).
        # The places a batch frees are claimed again in its transaction (see _claim_after).
        self.completions = CompletionQueue(
            engine,
            self.workspace,
            on_storyboard=on_storyboard,
            auto_approve=settings.demo_auto_approve,
            claim_after=self._claim_after,
            on_claimed=self._claimed_after,
        )
        # Places promised to a claim that runs after a batch of completions: not offered twice.
        self.promised: Counter[str] = Counter()
        self.stop: asyncio.Event | None = None  # run's: set, nothing more is claimed
        self.running: dict[str, Running] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.wake = asyncio.Event()
        self.beat_now = asyncio.Event()
        # Cleared while the database is away: claims wait for a beat to renew the running scripts'
        # leases first, so that no claim takes a slot of a lease that ran out during the outage.
        self.renewed = asyncio.Event()
        self.renewed.set()
        self.db_failures = 0
        self.last_renewed = time.monotonic()
        self.rounds = 0
        # Providers whose last claim took items: they have a backlog, and the next round claims
        # there without asking READY_PROVIDERS first (a claim that comes back empty ends that).
        self.backlogged: set[str] = set()
        self.log = get_logger(daemon=settings.daemon_id)
        self.metrics = metrics or m.Metrics()
        # The claim loop's heartbeat: time.monotonic() of its last turn (None before the first).
        # /healthz, /readyz and systemd's watchdog read it: a loop that stops turning is stuck.
        self.turned_at: float | None = None

    def heartbeat_age(self) -> float | None:
        """Seconds since the claim loop last turned; None before its first turn."""
        return None if self.turned_at is None else time.monotonic() - self.turned_at

    @property
    def capacity(self) -> int:
        """How many scripts this daemon runs at once: MAX_RUNNING, else the sum of the provider limits."""
        return self.settings.max_running or sum(self.limits.values())

    # Loops -----------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Claims until `stop`, then gives running items a grace period and hands back the rest."""
        beats = asyncio.create_task(self._heartbeat_loop(stop), name="heartbeat")
        self.stop = stop
        idle_rounds = 0
        try:
            while not stop.is_set():
                self.turned_at = time.monotonic()
                try:
                    claimed = await self._claim_round()
                except Exception as exc:
                    if not is_transient_db_error(exc):
                        raise
                    await self._database_away(stop, exc)
                    continue
                # Back only once a beat renewed the leases (or a round claimed with nothing to
                # renew): a round skipped while waiting for that beat proves nothing.
                if self.db_failures and self.renewed.is_set():
                    self.log.warning("database_back", failed_rounds=self.db_failures)
                    self.db_failures = 0
                idle_rounds = 0 if claimed else idle_rounds + 1
                if not claimed:
                    # Idle: poll less and less often (up to idle_poll_max_s); a local completion
                    # (which may unblock work) wakes the loop at once.
                    delay = min(
                        self.settings.claim_poll_s * 2 ** min(idle_rounds - 1, 6),
                        max(self.settings.claim_poll_s, self.settings.idle_poll_max_s),
                    )
                    await _wait_any(stop, self.wake, delay)
                    if self.wake.is_set():
                        idle_rounds = 0
                    self.wake.clear()
            await self._drain()
        finally:
            beats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beats
            await self.runner.close()

    async def _database_away(self, stop: asyncio.Event, exc: BaseException) -> None:
        """The database cannot be reached: running scripts go on (their results wait for it), no
        new work is claimed until a beat has renewed their leases, however long it takes."""
        self.db_failures += 1
        if self.db_failures == 1 or self.db_failures % 30 == 0:
            self.log.warning(
                "database_unreachable_claims_wait",
                running=len(self.running),
                failed_rounds=self.db_failures,
                error=str(exc)[:300],
            )
        self.renewed.clear()
        self.beat_now.set()
        delay = backoff_seconds(self.db_failures, self.settings.claim_poll_s, 5.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)

    def _disk_ok(self) -> bool:
        """Work pauses while the workspace's disk is nearly full, and goes on when space returns."""
        try:
            free_mb = shutil.disk_usage(self.workspace).free / 1_000_000
        except OSError:
            return True  # the workspace does not exist yet; the first item creates it
        full = free_mb < self.settings.min_free_mb
        if full != self.disk_full:
            self.disk_full = full
            if full:
                self.log.error(
                    "workspace_disk_full_paused",
                    free_mb=round(free_mb),
                    needed_mb=self.settings.min_free_mb,
                    workspace=str(self.workspace),
                    action="free space on this disk (or raise it); work goes on by itself",
                )
            else:
                self.log.warning("workspace_disk_space_back_resumed", free_mb=round(free_mb))
        return not full

    async def _claim_round(self) -> int:
        claimed = 0
        if not self._disk_ok():
            return 0
        if len(self.running) >= self.capacity or not self.renewed.is_set():
            return 0
        free = [p for p, limit in self.limits.items() if self._local_count(p) < limit]
        # Each round starts at the next provider, so that under MAX_RUNNING the first provider with
        # a backlog cannot take every free place round after round.
        self.rounds += 1
        turn = self.rounds % len(free) if free else 0
        free = free[turn:] + free[:turn]
        # One cheap query says which of the other providers have work due; claims only where there
        # is some, or was at the last claim.
        unknown = [p for p in free if p not in self.backlogged]
        ready = set(await ready_providers(self.engine, unknown, self.clock.now())) | self.backlogged
        for provider in (p for p in free if p in ready):
            # One claim takes an item for each free place (slots that freed while the last claim
            # ran come back together): one round trip for several items.
            while (places := self._places(provider)) > 0:
                policy = self.policy
                result = await claim(
                    self.engine,
                    provider,
                    self.settings.daemon_id,
                    self.clock.now(),
                    self.settings.lease_ttl_s,
                    EXTENSIONS,
                    policy,
                    limit=places,
                )
                await self._budget_waits(result.over_budget, policy)
                if not result.items:
                    self.backlogged.discard(provider)
                    break
                self._start_claimed(provider, result.items)
                claimed += len(result.items)
        return claimed

    async def _budget_waits(self, over_budget: Sequence[tuple[int, str]], judged_by: ClaimPolicy) -> None:
        """Tasks the claim found over budget wait, with the numbers, until the budget allows. If
        the channel files changed the budgets since the claim judged them, they are judged again."""
        waited = False
        for task_id, message in over_budget:
            if await db_retry(budget.wait_for_budget)(self.engine, task_id, message, self.clock.now()):
                self.log.warning("task_waits_for_budget", task=task_id, reason=message)
                self.metrics.budget_waits.inc()
                waited = True
        if waited and self.policy.budgets is not judged_by.budgets:
            await self.budgets_changed()  # raised while we paused them: they go on at once

    async def _hand_back(self, c: Claimed, now: datetime) -> None:
        """The lease given back as the daemon stops: the item is ready for the next daemon at once,
        its attempt closed as released."""
        await db_retry(lease.release)(
            self.engine,
            c.item_id,
            c.lease_token,
            now,
            outcome=AttemptOutcome.RELEASED,
            next_attempt_at=now,
            message=None,
        )

    async def _hand_back_unstarted(self, items: Sequence[Claimed]) -> None:
        """Items a batch's claim took as the daemon began to stop: handed back at once, as a
        running one is at shutdown, never started (the drain no longer waits for new work)."""
        now = self.clock.now()
        for c in items:
            try:
                await self._hand_back(c, now)
            except Exception as exc:  # its lease runs out, and a sweep hands it back
                self.log.warning("hand_back_failed", item=c.key, error=str(exc)[:300])
            else:
                self.log.info("lease_handed_back", item=c.key, reason="shutdown")

    def _start_claimed(self, provider: str, items: Sequence[Claimed]) -> None:
        """Claimed items start; their provider has a backlog, so the next round claims there
        without asking READY_PROVIDERS first."""
        self.backlogged.add(provider)
        for c in items:
            crash_point("after_claim")
            self._start(c)

    def _places(self, provider: str) -> int:
        """How many more items of `provider` this daemon may run now."""
        return min(
            self.limits[provider] - self._local_count(provider) - self.promised[provider],
            self.capacity - len(self.running) - self.promised.total(),
        )

    def _claim_after(self, batch: Sequence[Completion]) -> ClaimRequest | None:
        """What to claim once this batch of completions commits: the places its items leave, of
        the provider most of them ran on (the places of the others, the loop claims). Not while
        stopping, the disk is full or the leases wait for renewal; nor when MAX_RUNNING binds:
        the loop's rounds then share the places among the providers in turn."""
        if self.stop is None or self.stop.is_set() or self.disk_full or not self.renewed.is_set():
            return None
        if self.capacity < sum(self.limits.values()):
            return None
        leaving = Counter(d.claimed.provider for d in batch if d.claimed.lease_token in self.running)
        if not leaving:
            return None
        provider, count = leaving.most_common(1)[0]
        places = min(self._places(provider) + count, CLAIM_LIMIT)
        if places <= 0:
            return None
        self.promised[provider] += places
        return ClaimRequest(
            provider,
            self.settings.daemon_id,
            self.clock.now(),
            self.settings.lease_ttl_s,
            EXTENSIONS,
            self.policy,
            limit=places,
        )

    async def _claimed_after(self, asked: ClaimRequest, taken: ClaimResult | None) -> None:
        """The items a batch's claim took start now (before the batch's own items leave the
        running set); its promised places are the loop's again."""
        self.promised[asked.provider] -= asked.limit
        if taken is None:
            return
        if self.stop is not None and self.stop.is_set():
            await self._hand_back_unstarted(taken.items)
            return
        if taken.items:
            self._start_claimed(asked.provider, taken.items)
        if taken.over_budget:
            try:
                await self._budget_waits(taken.over_budget, asked.policy)
            except Exception as exc:  # the next claim finds them over budget again
                self.log.warning("budget_wait_failed", error=str(exc)[:300])

    def _local_count(self, provider: str) -> int:
        return sum(1 for r in self.running.values() if r.claimed.provider == provider)

    def _start(self, c: Claimed) -> None:
        running = Running(c)
        self.running[c.lease_token] = running
        task = asyncio.create_task(self._run_item(running), name=f"item-{c.item_id}-a{c.attempt_no}")
        running.task = task
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def nudge(self) -> None:
        """Something changed (an operator's action, new work): claim now, and beat now, so a script
        whose item was cancelled is killed at once rather than at the next heartbeat."""
        self.wake.set()
        self.beat_now.set()

    async def _heartbeat_loop(self, stop: asyncio.Event) -> None:
        # Often (a beat is one statement, and only while scripts run): a lease taken away by a
        # Cancelled on another daemon is noticed within HEARTBEAT_MAX_S.
        interval = min(self.settings.lease_ttl_s / 3, HEARTBEAT_MAX_S)
        sweep_every = max(1, int(self.settings.lease_ttl_s / interval))
        beat = 0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.beat_now.wait(), interval)
            self.beat_now.clear()
            beat += 1
            try:
                await self._beat()
                self.last_renewed = time.monotonic()
                self.renewed.set()
                if beat % sweep_every == 0 and not stop.is_set():
                    ttl = self.settings.lease_ttl_s
                    swept = await lease.sweep_expired(self.engine, self.clock.now(), ttl)
                    if swept:
                        self.log.warning("leases_expired_swept", items=swept)
                    await self._resume_budget_waits()
            except Exception as exc:  # a DB outage must not kill the loop: scripts go on meanwhile
                self.log.warning("heartbeat_failed", error=str(exc)[:300])
                self._stop_unrenewed_uploads()

    def _stop_unrenewed_uploads(self) -> None:
        """Other scripts go on through a database outage (their providers find a retry's job by its
        key). An upload does not: once its lease may have run out, another daemon may take it over
        and, not knowing this one's session, start another; so it is stopped before that (its
        session, if stored, is resumed by whoever runs it next)."""
        if time.monotonic() - self.last_renewed < UPLOAD_STOP_AFTER * self.settings.lease_ttl_s:
            return
        for running in self.running.values():
            if running.claimed.provider == "youtube" and running.reason is None:
                running.reason = "lost"
                running.cancel.set()
                self.metrics.leases_lost.labels(m.LEASE_UPLOAD_UNRENEWED).inc()
                self.log.warning("upload_stopped_lease_not_renewed", item=running.claimed.key)

    async def budgets_changed(self, policy: ClaimPolicy | None = None) -> None:
        """Budgets were raised (or weights changed) in the channel files (`policy`, the new ones):
        waiting videos that now fit go on at once, not at the next sweep."""
        if policy is not None:
            self.policy = policy
        try:
            await self._resume_budget_waits()
        except Exception as exc:  # the next sweep tries again
            self.log.warning("budget_resume_failed", error=str(exc))
            return
        self.wake.set()

    async def _resume_budget_waits(self) -> None:
        """Videos waiting for budget whose cheapest ready step now fits go on (a new day, a raise)."""
        now = self.clock.now()
        resumed = await budget.resume_fitting(self.engine, self.policy.budgets, self.policy.day_of(now), now)
        if resumed:
            self.log.info("budget_waits_resumed", tasks=resumed)

    async def _beat(self) -> None:
        tokens = list(self.running)
        lost = await lease.heartbeat(self.engine, tokens, self.clock.now(), self.settings.lease_ttl_s)
        for token in lost:
            running = self.running.get(token)
            # A script that has exited is being settled: a completion that committed while this
            # beat waited for the item's row shows as lost here, and is not (its settle pops it).
            if running is not None and running.reason is None and not running.exited:
                running.reason = "lost"
                running.cancel.set()
                self.metrics.leases_lost.labels(m.LEASE_TAKEN).inc()
                self.log.warning(
                    "lease_lost_killing_script", item=running.claimed.key, task=running.claimed.task_id
                )

    async def _drain(self) -> None:
        """At SIGTERM: running steps get SIGTERM_GRACE_S to finish; then those in the middle of a
        paid call they cannot collect later (a narration, a sound, the music, an image, a
        storyboard: the provider charges as it answers) get until SIGTERM_PAID_GRACE_S, since
        stopping them would pay that call again, and the others are stopped at once (a clip
        waiting on Kling is resumed, not paid again). Each stopped step then records how it ended."""
        if not self.tasks:
            return
        grace = self.settings.sigterm_grace_s
        _, pending = await asyncio.wait(set(self.tasks), timeout=grace)
        paying = {r.task for r in self.running.values() if r.paying and r.task in pending}
        self._stop_running(paid_too=False)
        if paying:
            self.log.info("shutdown_waits_for_paid_calls", steps=len(paying))
            more = max(0.0, self.settings.sigterm_paid_grace_s - grace)
            await asyncio.wait(paying, timeout=more)
        self._stop_running(paid_too=True)
        pending = {t for t in pending if not t.done()}
        if pending:
            await asyncio.wait(pending, timeout=SETTLE_AFTER_STOP_S)

    def _stop_running(self, *, paid_too: bool) -> None:
        for running in list(self.running.values()):
            if running.reason is None and (paid_too or not running.paying):
                running.reason = "shutdown"
                running.cancel.set()

    # One item --------------------------------------------------------------------------------------
    async def _run_item(self, running: Running) -> None:
        c = running.claimed
        log = self.log.bind(channel=c.channel_id, task=c.task_id, item=c.key, attempt=c.attempt_no)
        ran = False
        try:
            extra: dict[str, str] = {}
            if c.provider == "youtube":
                ready = await self._before_upload(c, log)
                if ready is None:
                    return
                extra = ready
            started = time.monotonic()
            outcome = await self._execute(c, running, log, extra)
            running.exited = ran = True
            self.metrics.script_done(
                c.kind, c.provider, self._outcome_class(c, running, outcome), time.monotonic() - started
            )
            if c.provider == "youtube" and await self._after_upload(c, running, outcome, log):
                return
            await self._settle(c, running, outcome, log)
        except Exception as exc:
            # The run itself failed (the script could not start, the workspace is unwritable...):
            # it counts as a failed attempt, so a cause that never goes away ends in Error, not a loop.
            log.exception("item_run_crashed", error=str(exc))
            if not ran:
                self.metrics.provider_errors.labels(c.provider, m.CRASH).inc()
            with contextlib.suppress(Exception):
                crashed = ScriptOutcome(exit_code=None, error={"message": f"the step could not run: {exc}"})
                await self._retry_or_fail(c, crashed, log)
        finally:
            self.running.pop(c.lease_token, None)
            self.wake.set()

    def _outcome_class(self, c: Claimed, running: Running, outcome: ScriptOutcome) -> str:
        """The attempt's outcome as a metric label (daemon/monitor/metrics.py names them)."""
        if running.reason == "lost":
            return m.LOST
        if running.reason == "shutdown" and not _finished(outcome):
            return m.RELEASED
        if outcome.timed_out:
            return m.TIMEOUT
        if outcome.exit_code == EXIT_OK:
            return m.SUCCEEDED if (self.workspace / c.attempt_output).exists() else m.CRASH
        if outcome.exit_code == EXIT_PERMANENT:
            return m.PERMANENT
        if outcome.exit_code == EXIT_USAGE:
            return m.USAGE
        if outcome.exit_code == EXIT_TRANSIENT:
            return m.RATE_LIMITED if (outcome.error or {}).get("retry_after_s") else m.TRANSIENT
        return m.CRASH

    async def _before_upload(self, c: Claimed, log: Any) -> dict[str, str] | None:
        """The upload's credentials with its quota reserved, or None: it waits (handed back with
        the reason, no attempt counted)."""
        now = self.clock.now()
        if self.uploads is None:
            answer: dict[str, str] | Wait = Wait(now + RECHECK, f"{WAITS}: this daemon runs no uploads.")
        else:
            answer = await db_retry(self.uploads.before)(c, now)
        if isinstance(answer, Wait):
            await self._wait(c, answer, log)
            return None
        return answer

    async def _after_upload(self, c: Claimed, running: Running, outcome: ScriptOutcome, log: Any) -> bool:
        """Books the quota the upload used; True when it must wait (a refused sign-in or quota)."""
        if self.uploads is None or running.reason is not None:
            if self.uploads is not None:
                await db_retry(self.uploads.after)(c, None, None, self.clock.now())
            return False
        wait = await db_retry(self.uploads.after)(c, outcome.result, outcome.error, self.clock.now())
        if wait is None:
            return False
        await self._wait(c, wait, log)
        return True

    async def _wait(self, c: Claimed, wait: Wait, log: Any) -> None:
        await db_retry(lease.release)(
            self.engine,
            c.item_id,
            c.lease_token,
            self.clock.now(),
            outcome=AttemptOutcome.RELEASED,
            next_attempt_at=wait.until,
            message=wait.reason,
        )
        self.metrics.upload_waits.labels(wait.cause).inc()
        log.warning("upload_waits", until=wait.until.isoformat(), reason=wait.reason)

    async def _execute(
        self, c: Claimed, running: Running, log: Any, extra_env: dict[str, str] | None = None
    ) -> ScriptOutcome:
        argv = build_command(
            c, self.settings.scripts_dir, self.workspace, kling_poll_s=self.settings.kling_poll_s
        )
        (self.workspace / c.attempt_output).parent.mkdir(parents=True, exist_ok=True)
        env = {
            **self.base_env,
            **(extra_env or {}),
            "PIPELINE_TRACE": f"{self.settings.daemon_id}/{c.channel_id}:{c.project_slug}:{c.key}",
        }

        noted = 0.0

        async def on_event(event: dict[str, Any]) -> None:
            nonlocal noted
            if event.get("event") == "submitted" and event.get("job_id"):
                await db_retry(lease.record_job_id)(
                    self.engine, c.item_id, c.lease_token, str(event["job_id"])
                )
                crash_point("after_job_id_stored")
                log.info("provider_job_submitted", job_id=event["job_id"])
            elif event.get("event") == "paying":
                running.paying = True
            elif event.get("event") == "progress" and time.monotonic() - noted >= PROGRESS_EVERY_S:
                # How far a long step is (an upload's bytes), for the page's progress line; a few
                # seconds apart at most: a write each, and the page is written no faster.
                noted = time.monotonic()
                done = {k: event[k] for k in ("uploaded", "total") if isinstance(event.get(k), int)}
                if done:
                    try:
                        await lease.record_progress(self.engine, c.item_id, c.lease_token, done)
                    except Exception as exc:  # only the page's progress line: the run goes on
                        log.warning("progress_not_recorded", error=str(exc)[:300])

        crash_point("after_attempt_written")
        log.info("script_started", kind=c.kind, resume=c.resume)
        return await self.runner.run(
            argv,
            env=env,
            timeout=self.settings.timeouts.get(c.kind, 600.0),
            on_event=on_event,
            cancel=running.cancel,
            label=c.key,
        )

    async def _settle(self, c: Claimed, running: Running, outcome: ScriptOutcome, log: Any) -> None:
        now = self.clock.now()
        if running.reason == "lost":
            log.warning("script_killed_lease_lost")
            await db_retry(lease.close_attempt)(
                self.engine, c.item_id, c.lease_token, now, AttemptOutcome.LOST
            )
            return
        if running.reason == "shutdown" and not _finished(outcome):
            await self._hand_back(c, now)
            log.info("lease_handed_back", reason="shutdown")
            return
        # A script that finished by itself as the stop came (its exit seen after its stop was
        # asked for) is settled as usual: a result it paid for is kept, not handed back.
        if outcome.exit_code == EXIT_OK:
            await self._succeed(c, outcome, log)
        elif outcome.exit_code in (EXIT_PERMANENT, EXIT_USAGE) and not outcome.timed_out:
            message = self.redact(outcome.message())
            await db_retry(fail)(self.engine, c, message, now, exit_code=outcome.exit_code)
            log.error("item_failed", exit_code=outcome.exit_code, reason=message)
        else:
            # 75, a timeout, or a crash (a signal, an exit code outside the contract): try again.
            await self._retry_or_fail(c, outcome, log)

    async def _succeed(self, c: Claimed, outcome: ScriptOutcome, log: Any) -> None:
        result = outcome.result or {}
        produced = self.workspace / c.attempt_output
        if not produced.exists():
            # A plain script that exits 0 without its output is a transient fault, not a success.
            outcome.error = {"message": "the script reported success but wrote no output"}
            await self._retry_or_fail(c, outcome, log)
            return
        usage = dict(result.get("meta") or {})
        reported = result.get("cost_usd")
        micros = self.costs.actual_micros(c.kind, usage, float(reported) if reported is not None else None)
        target = final_path(c.kind, c.key, c.channel_id, c.project_slug)
        crash_point("before_complete")
        now = self.clock.now()
        done = await self.completions.commit(
            Completion(c, Success(c.attempt_output, micros, usage), target, now, self.policy.day_of(now))
        )
        crash_point("after_complete")
        if done == "fenced":
            log.warning("completion_fenced_out")
            self.metrics.leases_lost.labels(m.LEASE_FENCED).inc()
            produced.unlink(missing_ok=True)
        else:
            self.metrics.cost.labels(c.channel_id, c.provider).inc(micros / 1_000_000)
            log.info("item_succeeded", cost_usd=str(Decimal(micros) / 1_000_000), output=target)

    async def _retry_or_fail(self, c: Claimed, outcome: ScriptOutcome, log: Any) -> None:
        now = self.clock.now()
        kind = AttemptOutcome.TIMEOUT if outcome.timed_out else AttemptOutcome.TRANSIENT
        failures = await db_retry(count_failures)(self.engine, c.item_id) + 1  # this attempt included
        if failures >= self.settings.max_attempts:
            message = f"gave up after {failures} attempts: {self.redact(outcome.message())}"
            await db_retry(fail)(self.engine, c, message, now, exit_code=outcome.exit_code, outcome=kind)
            log.error("item_failed", reason=message)
            return
        hint = (outcome.error or {}).get("retry_after_s")
        delay = backoff_seconds(
            failures, self.settings.retry_base_s, self.settings.retry_cap_s, float(hint) if hint else None
        )
        await db_retry(lease.release)(
            self.engine,
            c.item_id,
            c.lease_token,
            now,
            outcome=kind,
            next_attempt_at=now + timedelta(seconds=delay),
            message=self.redact(outcome.message()),
            exit_code=outcome.exit_code,
        )
        log.warning(
            "item_retry_scheduled",
            delay_s=round(delay, 1),
            failures=failures,
            reason=self.redact(outcome.message()),
        )


def _finished(outcome: ScriptOutcome) -> bool:
    """The script exited 0 by itself (not killed, not timed out)."""
    return outcome.exit_code == EXIT_OK and not outcome.timed_out


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event, timeout: float) -> None:
    waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())}
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


def script_base_env() -> dict[str, str]:
    """What a script needs from the daemon's environment: no secrets beyond its provider keys."""
    keep = (
        "PATH",
        "HOME",
        "LANG",
        "LC_ALL",
        "TMPDIR",
        "PYTHONPATH",
        "VIRTUAL_ENV",
        "SYSTEMROOT",
        "CRASH_AT",
        "CRASH_ONCE",
        "CRASH_KILLS_PARENT",
    )
    env = {k: v for k, v in os.environ.items() if k in keep}
    # Found once here rather than in every script's start-up (imageio-ffmpeg's import and check
    # cost a clip's run about 60 ms); when none is found, a script that needs one says so.
    with contextlib.suppress(RuntimeError, OSError):
        env[FFMPEG_ENV] = ffmpeg_executable()[0]
    return env
