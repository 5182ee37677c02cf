"""A Hypothesis state machine over the real claim, lease and completion functions, with a clock the
test moves: three daemons claim, heartbeat, complete (with current and stale tokens), retry, fail,
hand back, crash, restart and sweep while leases expire. After every step: at most one valid lease
per item, a valid lease always holds its provider slot (so limits hold), every running item has
its attempt written, attempts are counted and bounded, and a stale completion never replaces the
valid owner's output.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import lease
from daemon.budget import Budget
from daemon.claim import Claimed, ClaimPolicy, claim, ensure_slots
from daemon.commands import EXTENSIONS, final_path
from daemon.complete import Success, complete, count_failures, fail
from daemon.db.models import Attempt, Item, Ledger, ProviderSlot, Task
from tests.support.engine_kit import Kit, storyboard
from tests.support.profiles import examples

pytestmark = pytest.mark.slow  # hundreds of claim, crash and completion steps on each database

T = TypeVar("T")
TTL = 30.0
MAX_ATTEMPTS = 2  # the worker's max_attempts (transient failures before an item fails), kept low
OWNERS = ("d1", "d2", "d3")
# Small limits, so that slots run out and expired ones are taken over.
LIMITS = {"gemini": 1, "kling": 1, "elevenlabs": 2, "local": 1}
# Runs of up to 50 steps. Fewer on PostgreSQL, whose round trips are slower: what differs there is
# row locking, which this single-process machine does not race (concurrent claims are tested apart).
EXAMPLES = {
    "sqlite": examples(ci=15, deep=40),
    # 12: with each bed behind its narration fewer items are ready at once, and 10 runs no longer
    # reached an item's last transient failure (retry_gave_up).
    "postgresql": examples(ci=12, deep=25),
}
# A budget no step reaches: every claim reserves its estimate, so the ledger can be checked.
BUDGETED = ClaimPolicy(budgets={"nature": Budget(per_video_micros=10**12, per_day_micros=10**12)})
STEPS = st.sampled_from([1.0, 5.0, TTL / 3, TTL - 1, TTL + 1, 3 * TTL])


@dataclass
class Held:
    """What one daemon believes it holds; a crash forgets it, the DB does not."""

    owner: str
    claimed: Claimed


@dataclass
class World:
    """Shared by every run of the machine: one DB, one event loop, one clock that only moves on."""

    runner: asyncio.Runner
    engine: AsyncEngine
    workspace: Path
    clock: datetime = field(default_factory=lambda: datetime(2031, 1, 1, tzinfo=UTC))
    runs: int = 0
    steps: dict[str, int] = field(default_factory=dict)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)


def machine(world: World) -> type[RuleBasedStateMachine]:  # noqa: C901 - one rule per method
    class Leases(RuleBasedStateMachine):
        claims = Bundle("claims")

        @initialize()
        def submit(self) -> None:
            world.runs += 1
            world.clock += timedelta(days=1)
            self.kit = Kit(world.engine, world.workspace, world.workspace / "no-scripts", limits=dict(LIMITS))
            self.task_id = world.run(self.kit.submit(storyboard(2), slug=f"run{world.runs}"))
            # The plan is made at the wall clock's time, which is before the test's clock: all due.
            self.held: dict[str, Held] = {}  # token -> holder, for daemons that remember
            self.winner: dict[int, str] = {}  # item id -> the token whose completion was accepted
            self.not_before: dict[int, datetime] = {}  # item id -> its retry time
            self.requeues = 0
            self.zombies: list[Claimed] = []  # claims of daemons taken for dead
            self.stopped = False  # the task is in error: the operator may set Queued again

        @property
        def now(self) -> datetime:
            return world.clock

        def count(self, step: str) -> None:
            world.steps[step] = world.steps.get(step, 0) + 1

        # Rules ----------------------------------------------------------------------------------
        # One claim rule per provider, as each daemon runs a claim loop per provider (and so that
        # claims are drawn about as often as everything else together).
        @rule(target=claims, owner=st.sampled_from(OWNERS))
        def take_gemini(self, owner: str) -> Any:
            return self.take(owner, "gemini")

        @rule(target=claims, owner=st.sampled_from(OWNERS))
        def take_kling(self, owner: str) -> Any:
            return self.take(owner, "kling")

        @rule(target=claims, owner=st.sampled_from(OWNERS))
        def take_elevenlabs(self, owner: str) -> Any:
            return self.take(owner, "elevenlabs")

        @rule(target=claims, owner=st.sampled_from(OWNERS))
        def take_local(self, owner: str) -> Any:
            return self.take(owner, "local")

        def take(self, owner: str, provider: str) -> Any:
            c = world.run(claim(world.engine, provider, owner, self.now, TTL, EXTENSIONS, BUDGETED)).claimed
            if c is None:
                return multiple()  # no slot or no ready item: nothing joins the bundle
            self.count("claim")
            assert self.now >= self.not_before.get(c.item_id, self.now), "claimed before its retry time"
            attempt = world.run(_attempt(world.engine, c.item_id, c.lease_token))
            # The attempt (with its idempotency key) is in the DB when claim returns: before any
            # script could start, so before any paid call.
            assert attempt is not None and attempt.outcome == "running"
            assert attempt.number == c.attempt_no and attempt.idempotency_key == c.idempotency_key
            self.held[c.lease_token] = Held(owner, c)
            return c

        @precondition(lambda self: bool(self.held))
        @rule(data=st.data())
        def heartbeat(self, data: st.DataObject) -> None:
            owner = data.draw(st.sampled_from(sorted({h.owner for h in self.held.values()})))
            tokens = [t for t, h in self.held.items() if h.owner == owner]
            items = world.run(_items(world.engine, self.task_id))
            _, slots, _, _ = world.run(_snapshot(world.engine, self.task_id))
            # Still ours: the item holds the token and so does its slot. One that ran out is renewed
            # if nobody swept it or took its slot (the grace keeps both away for a while).
            ours = {
                i.lease_token
                for i in items.values()
                if i.state == "running" and any(s.lease_token == i.lease_token for s in slots)
            }
            lost = world.run(lease.heartbeat(world.engine, tokens, self.now, TTL))
            self.count("heartbeat")
            assert lost == {t for t in tokens if t not in ours}, "a heartbeat kept a lease it had lost"
            if any(i.lease_token in ours and i.lease_expires_at <= self.now for i in items.values()):
                self.count("renewed_after_expiry")
            for token in lost:  # the worker kills the script and records how its attempt ended
                held = self.held.pop(token)
                world.run(lease.close_attempt(world.engine, held.claimed.item_id, token, self.now, "lost"))

        @precondition(lambda self: bool(self.held))
        @rule(data=st.data())
        def late_heartbeat(self, data: st.DataObject) -> None:
            """A beat after the leases ran out but within their grace (a stalled loop, a short
            outage): each one nobody swept or took is renewed."""
            world.clock += timedelta(seconds=TTL + 1)
            self.heartbeat(data)

        @rule(seconds=STEPS, sweep=st.booleans())
        def time_passes(self, seconds: float, sweep: bool) -> None:
            """The clock moves on; a daemon's periodic sweep may hand expired leases back."""
            world.clock += timedelta(seconds=seconds)
            if sweep:
                world.run(lease.sweep_expired(world.engine, self.now, TTL))
                self.count("sweep")

        @precondition(lambda self: bool(self.held))
        @rule(data=st.data(), comes_back=st.booleans())
        def crash(self, data: st.DataObject, comes_back: bool) -> None:
            """A daemon holding leases dies and forgets them: they run out in the DB, or, when it
            comes back with the same DAEMON_ID, go back at once."""
            owner = data.draw(st.sampled_from(sorted({h.owner for h in self.held.values()})))
            self.zombies += [h.claimed for h in self.held.values() if h.owner == owner]
            self.held = {t: h for t, h in self.held.items() if h.owner != owner}
            if comes_back:
                world.run(lease.release_owned(world.engine, owner, self.now))
            self.count("restart" if comes_back else "crash")

        @rule(c=consumes(claims), answer_lost=st.booleans())
        def finish(self, c: Claimed, answer_lost: bool) -> None:
            """The script succeeded; its daemon completes, with a token that may be current, expired,
            swept or taken over. When the commit's answer is lost, the worker commits again."""
            self.held.pop(c.lease_token, None)
            if self.complete(c) == "done" and answer_lost:
                assert self.complete(c) == "already"  # a retried commit counts once

        @precondition(lambda self: bool(self.zombies))
        @rule(data=st.data())
        def zombie_finishes(self, data: st.DataObject) -> None:
            """A daemon taken for dead (crashed or frozen past its lease) completes after all."""
            self.complete(self.zombies.pop(data.draw(st.integers(0, len(self.zombies) - 1))))

        def complete(self, c: Claimed) -> str:
            before = world.run(_items(world.engine, self.task_id))[c.key]
            current = before.lease_token == c.lease_token
            produced = world.workspace / c.attempt_output
            if not (current and before.state == "succeeded"):
                produced.parent.mkdir(parents=True, exist_ok=True)
                produced.write_text(c.lease_token)
            target = final_path(c.kind, c.key, c.channel_id, c.project_slug)
            done = complete(
                world.engine,
                c,
                Success(c.attempt_output, 1, {}),
                workspace=world.workspace,
                now=self.now,
                final_path=target,
            )
            outcome = world.run(done)
            if current and before.state == "running":
                assert outcome == "done"
                self.winner[c.item_id] = c.lease_token
            elif current and before.state == "succeeded":
                assert outcome == "already"
            else:
                assert outcome == "fenced", (before.state, outcome)
                produced.unlink(missing_ok=True)  # the worker discards a fenced output
            self.count(f"complete_{outcome}")
            return str(outcome)

        @rule(c=consumes(claims), wait=st.one_of(st.just(0.0), STEPS))
        def exit_75(self, c: Claimed, wait: float) -> None:
            """A transient failure, by the worker's policy (with a current or a stale token): the
            item is released until its failures reach the limit, then it fails. (A retry due at
            once is often the next claim's item, so that the limit is reached.)"""
            mine = self.holds_lease(c)
            failures = world.run(count_failures(world.engine, c.item_id)) + 1
            if failures >= MAX_ATTEMPTS:
                failed = world.run(fail(world.engine, c, "busy", self.now, exit_code=75, outcome="transient"))
                assert failed == mine  # fenced when stale: the valid owner's item is untouched
                self.stopped = self.stopped or failed
                self.count("retry_gave_up" if failed else "fail_fenced")
                return
            due = self.now + timedelta(seconds=wait)
            back = lease.release(
                world.engine, c.item_id, c.lease_token, self.now, outcome="transient", next_attempt_at=due
            )
            assert world.run(back) == mine
            if mine:
                self.not_before[c.item_id] = due
                self.count("retry")

        @rule(c=consumes(claims), end=st.sampled_from(["SIGTERM", "exit 1"]))
        def script_stops(self, c: Claimed, end: str) -> None:
            """Exit 1 fails the item and stops its task; SIGTERM hands the lease back at once."""
            mine = self.holds_lease(c)
            if end == "SIGTERM":
                back = lease.release(
                    world.engine,
                    c.item_id,
                    c.lease_token,
                    self.now,
                    outcome="released",
                    next_attempt_at=self.now,
                )
                assert world.run(back) == mine
                return
            failed = world.run(fail(world.engine, c, "content blocked", self.now, exit_code=1))
            assert failed == mine
            self.stopped = self.stopped or failed
            self.count("failed" if failed else "fail_fenced")

        def holds_lease(self, c: Claimed) -> bool:
            """Whether `c` is still its item's lease (the daemon is done with it either way)."""
            self.held.pop(c.lease_token, None)
            item = world.run(_items(world.engine, self.task_id))[c.key]
            return bool(item.state == "running" and item.lease_token == c.lease_token)

        @precondition(lambda self: self.stopped)
        @rule()
        def requeue(self) -> None:
            """The operator sets Queued again: a new pass retries failed items with fresh attempts."""
            world.run(self.kit.submit(storyboard(2), slug=f"run{world.runs}"))
            self.requeues += 1
            self.stopped = False
            self.count("requeue")

        # Invariants (one snapshot of the DB after every step) -------------------------------------
        @invariant()
        def consistent(self) -> None:
            items, slots, attempts, ledger = world.run(_snapshot(world.engine, self.task_id))
            valid = [i for i in items if i.state == "running" and i.lease_expires_at > self.now]
            self.one_valid_lease_per_item_holding_its_slot(items, valid, slots)
            self.attempts_written_counted_and_bounded(items, attempts)
            self.money_held_only_for_the_running_attempt(items, attempts, ledger)
            for item in items:  # a stale completion never replaced the accepted owner's output
                if item.id in self.winner and item.state == "succeeded":
                    assert item.lease_token == self.winner[item.id]
                    assert (world.workspace / item.output_path).read_text() == self.winner[item.id]

        def one_valid_lease_per_item_holding_its_slot(
            self, items: list[Any], valid: list[Any], slots: list[Any]
        ) -> None:
            tokens = {i.lease_token for i in valid}
            believers = [h.claimed.item_id for t, h in self.held.items() if t in tokens]
            assert len(believers) == len(set(believers)), "two daemons hold a valid lease on one item"
            by_id = {i.id: i for i in items}
            for slot in slots:
                if slot.item_id is None or slot.expires_at <= self.now or slot.item_id not in by_id:
                    continue  # free, expired (free to take), or an item of an earlier run
                holder = by_id[slot.item_id]
                assert holder.state == "running" and holder.lease_token == slot.lease_token, (slot, holder)
            for item in valid:
                mine = [s for s in slots if s.lease_token == item.lease_token]
                assert len(mine) == 1 and mine[0].provider == item.provider, (item.key, mine)
                # Held a grace longer than the lease: no claim takes it from a daemon about to renew.
                assert mine[0].expires_at == item.lease_expires_at + lease.grace(TTL)
            for provider, limit in LIMITS.items():
                assert sum(1 for i in valid if i.provider == provider) <= limit

        def attempts_written_counted_and_bounded(self, items: list[Any], attempts: list[Any]) -> None:
            for item in items:
                mine = sorted((a for a in attempts if a.item_id == item.id), key=lambda a: a.number)
                assert [a.number for a in mine] == list(range(1, item.attempts + 1)), item.key
                assert all(a.idempotency_key for a in mine), item.key
                running = [a.lease_token for a in mine if a.outcome == "running"]
                if item.state != "running":
                    assert running == [], (item.key, item.state)
                elif item.lease_expires_at > self.now:
                    # Its attempt was written before anything could run, under its own token.
                    assert running == [item.lease_token], item.key
                else:
                    # Expired, not yet swept: a heartbeat may have closed its attempt as lost.
                    assert running in ([], [item.lease_token]), item.key
                failures = sum(1 for a in mine if a.outcome in ("transient", "timeout"))
                assert failures <= MAX_ATTEMPTS + self.requeues, item.key

        def money_held_only_for_the_running_attempt(
            self, items: list[Any], attempts: list[Any], ledger: list[Any]
        ) -> None:
            """A running item holds one open reservation, its current attempt's; nothing else holds
            money (a stale daemon's release or failure never closes the new holder's)."""
            for item in items:
                held = sorted(r.attempt_no for r in ledger if r.item_id == item.id and r.open)
                if item.state == "running":
                    current = [a.number for a in attempts if a.lease_token == item.lease_token]
                    assert held == current, (item.key, held, current)
                else:
                    assert held == [], (item.key, item.state, held)

        def teardown(self) -> None:
            # Stop this run's task and free its slots, so the next run starts with every slot free.
            world.run(_stop(world.engine, self.task_id, self.now))

    return Leases


async def _items(engine: AsyncEngine, task_id: int) -> dict[str, Any]:
    async with engine.connect() as conn:
        return {r.key: r for r in await conn.execute(select(Item).where(Item.task_id == task_id))}


async def _snapshot(engine: AsyncEngine, task_id: int) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    async with engine.connect() as conn:
        ledger = list((await conn.execute(select(Ledger).where(Ledger.task_id == task_id))).all())
        items = list((await conn.execute(select(Item).where(Item.task_id == task_id))).all())
        slots = list((await conn.execute(select(ProviderSlot))).all())
        attempts = list(
            (
                await conn.execute(
                    select(Attempt).join(Item, Item.id == Attempt.item_id).where(Item.task_id == task_id)
                )
            ).all()
        )
    return items, slots, attempts, ledger


async def _attempt(engine: AsyncEngine, item_id: int, token: str) -> Any:
    async with engine.connect() as conn:
        return (
            await conn.execute(
                select(Attempt).where(Attempt.item_id == item_id, Attempt.lease_token == token)
            )
        ).first()


async def _stop(engine: AsyncEngine, task_id: int, now: datetime) -> None:
    async with engine.begin() as conn:
        await conn.execute(update(Task).where(Task.id == task_id).values(state="cancelled", updated_at=now))
    await lease.sweep_expired(engine, now + timedelta(days=1), TTL)


def test_leases_hold_under_claims_crashes_expiry_retries_and_stale_completions(
    db_url: str, tmp_path: Path
) -> None:
    from daemon.db.engine import make_engine

    with asyncio.Runner() as runner:
        engine = make_engine(db_url)
        try:
            runner.run(ensure_slots(engine, LIMITS))
            world = World(runner, engine, tmp_path / "ws")
            run_state_machine_as_test(
                machine(world),
                settings=settings(
                    max_examples=EXAMPLES[db_url.split(":")[0].split("+")[0]],
                    stateful_step_count=50,
                    derandomize=True,
                    database=None,
                    deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
                ),
            )
        finally:
            runner.run(engine.dispose())
    # The runs did reach the interesting places.
    steps = (
        "claim",
        "complete_done",
        "complete_fenced",
        "complete_already",
        "retry",
        "retry_gave_up",
        "requeue",
    )
    for step in steps:
        assert world.steps.get(step, 0) > 0, (step, world.steps)
    for step in ("heartbeat", "renewed_after_expiry", "crash", "restart", "sweep"):
        assert world.steps.get(step, 0) > 0, (step, world.steps)
