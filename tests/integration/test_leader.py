"""One leader at a time for the singleton jobs, taken over when the leader's lease runs out."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.clock import SystemClock
from daemon.leader import acquire, holder, release
from daemon.notion.jobs import NotionJobs
from tests.support.engine_kit import now


async def test_one_leader_renews_and_the_other_waits(engine: AsyncEngine) -> None:
    t0 = now()
    token = await acquire(engine, "singletons", "daemon-a", t0, 10)
    assert token is not None
    assert await acquire(engine, "singletons", "daemon-b", t0, 10) is None
    # A renewal keeps the token (work fenced by it stays valid).
    assert await acquire(engine, "singletons", "daemon-a", t0 + timedelta(seconds=5), 10) == token
    assert await acquire(engine, "singletons", "daemon-b", t0 + timedelta(seconds=12), 10) is None
    assert (await holder(engine, "singletons"))[0] == "daemon-a"


async def test_a_dead_leader_is_replaced_after_its_lease_with_a_new_token(engine: AsyncEngine) -> None:
    t0 = now()
    old = await acquire(engine, "singletons", "daemon-a", t0, 10)
    new = await acquire(engine, "singletons", "daemon-b", t0 + timedelta(seconds=11), 10)
    assert new is not None
    assert new != old
    assert (await holder(engine, "singletons"))[0] == "daemon-b"
    # The old leader, back from a freeze, cannot take it back while b renews.
    assert await acquire(engine, "singletons", "daemon-a", t0 + timedelta(seconds=12), 10) is None


async def test_a_leader_stopping_hands_over_at_once(engine: AsyncEngine) -> None:
    t0 = now()
    token = await acquire(engine, "singletons", "daemon-a", t0, 30)
    assert token is not None
    await release(engine, "singletons", token)
    assert await acquire(engine, "singletons", "daemon-b", t0 + timedelta(seconds=1), 30) is not None


async def test_the_leader_keeps_its_lease_while_its_first_poll_takes_longer_than_the_lease(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """Regression: the first poll ran inside the lease job, whose renewals waited for it; a poll
    longer than the TTL (three pages queued on a loaded machine) lost the lease to another daemon."""

    class SlowIntake:
        polls = 0

        async def poll(self, at: datetime) -> bool:
            self.polls += 1
            await asyncio.sleep(2.0)
            return False

    class NoWrites:
        next_due = None

        async def send_board_files(self, at: datetime) -> None:
            return None

        async def flush(self, at: datetime) -> bool:
            return False

    intake = SlowIntake()
    jobs = NotionJobs(
        engine,
        intake,
        NoWrites(),
        tmp_path,
        SystemClock(),
        "daemon-a",
        poll_s=60,
        lease_ttl_s=1.2,  # type: ignore[arg-type]
    )
    stop = asyncio.Event()
    running = asyncio.create_task(jobs.run(stop))
    try:
        deadline = time.monotonic() + 10
        while (await holder(engine, "notion"))[0] != "daemon-a":
            assert time.monotonic() < deadline, "daemon-a never took the lease"
            await asyncio.sleep(0.05)
        taken_by_b = []
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            taken_by_b.append(await acquire(engine, "notion", "daemon-b", SystemClock().now(), 1.2))
            await asyncio.sleep(0.1)
        assert intake.polls >= 1  # the first poll ran, and took longer than the lease
        assert taken_by_b == [None] * len(taken_by_b)
        assert (await holder(engine, "notion"))[0] == "daemon-a"
    finally:
        stop.set()
        await running


async def test_the_outbox_never_runs_twice_at_once(engine: AsyncEngine, tmp_path: Path) -> None:
    """Regression: a poll that acted ran the outbox while the outbox job ran it too; both wrote the
    same unsent rows, and the second Status write undid the operator's approval made in between
    (seen as a page stuck at Storyboard Review in test_outbox_crash_points under load)."""

    class ActingIntake:
        async def poll(self, at: datetime) -> bool:
            return True

    class CountingWriter:
        running = most = flushes = 0
        next_due = None

        async def send_board_files(self, at: datetime) -> None:
            return None

        async def flush(self, at: datetime) -> int:
            self.running += 1
            self.flushes += 1
            self.most = max(self.most, self.running)
            await asyncio.sleep(0.2)
            self.running -= 1
            return 0

    writer = CountingWriter()
    # Polls as often as asked: the idle rule (poll less often when nothing is at work) is not the point.
    jobs = NotionJobs(
        engine, ActingIntake(), writer, tmp_path, SystemClock(), "daemon-a", poll_s=1e-3, idle_poll_s=1e-9
    )
    await jobs.lead()
    assert jobs.leading()
    await asyncio.gather(jobs.poll(), jobs.outbox(), jobs.poll())
    await _outbox_after_poll(jobs)
    assert writer.flushes >= 2  # the polls acted: each asked for a flush
    assert writer.most == 1


async def test_a_leader_whose_lease_is_not_renewed_stops_writing_when_it_runs_out(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """Regression: a failed renewal was logged and the token kept, so intake and the outbox went on
    beside the daemon that took the lease over."""

    class Clock:
        at = SystemClock().now()

        def now(self) -> datetime:
            return self.at

    class CountingWriter:
        flushes = 0
        next_due = None

        async def send_board_files(self, at: datetime) -> None:
            return None

        async def flush(self, at: datetime) -> int:
            self.flushes += 1
            return 0

    class QuietIntake:
        async def poll(self, at: datetime) -> bool:
            return True

    clock, writer = Clock(), CountingWriter()
    jobs = NotionJobs(engine, QuietIntake(), writer, tmp_path, clock, "daemon-a", poll_s=60, lease_ttl_s=10)
    await jobs.lead()
    assert jobs.leading()
    await jobs.poll()
    await _outbox_after_poll(jobs)
    assert writer.flushes == 1

    class Unreachable:
        dialect = engine.dialect

        def begin(self) -> None:
            raise OSError("connection refused")

    # The database is unreachable: the renewal fails, and the lease is still ours until it runs out.
    jobs.engine = Unreachable()
    clock.at += timedelta(seconds=5)
    with pytest.raises(OSError, match="connection refused"):
        await jobs.lead()
    assert jobs.leading()
    clock.at += timedelta(seconds=6)  # past the lease's end
    assert not jobs.leading()
    await jobs.poll()
    await _outbox_after_poll(jobs)
    await jobs.outbox()
    assert writer.flushes == 1  # nothing written once the lease ran out


async def test_notion_is_polled_every_poll_s_at_work_and_every_idle_poll_s_when_idle(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    class Clock:
        at = SystemClock().now()

        def now(self) -> datetime:
            return self.at

    class CountingIntake:
        polls = 0

        async def poll(self, at: datetime) -> bool:
            self.polls += 1
            return False

    class NoWrites:
        next_due = None

        async def send_board_files(self, at: datetime) -> None:
            return None

        async def flush(self, at: datetime) -> int:
            return 0

    clock, intake = Clock(), CountingIntake()
    jobs = NotionJobs(
        engine, intake, NoWrites(), tmp_path, clock, "daemon-a", poll_s=2, idle_poll_s=4, lease_ttl_s=600
    )
    await jobs.lead()
    seen = []
    for second in range(0, 13, 2):  # the intake job fires every poll_s
        clock.at = Clock.at + timedelta(seconds=second)
        if second >= 8:
            jobs.watched = {1}  # a task at work from here on (each sync would say so; none runs here)
        await jobs.poll()
        seen.append(intake.polls)
    assert seen == [1, 1, 2, 2, 3, 4, 5]


async def _outbox_after_poll(jobs: NotionJobs) -> None:
    """The outbox run a poll that acted started in a task of its own, once it has ended."""
    if jobs.outbox_task is not None:
        await jobs.outbox_task


async def test_a_poll_does_not_wait_for_the_boards_files_so_the_next_poll_sees_an_edit_on_time(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """Regression: the outbox a poll starts sends the boards' files first (seconds each), and the
    poll waited for it, so the next poll did too: an operator's Cancelled, set while a video's
    frames went to Notion, was seen 5 s and more later (tests/acceptance/test_operator_loop.py)."""

    class SlowFiles:
        next_due = None
        sending = 0
        flushes = 0

        def __init__(self) -> None:
            self.sent = asyncio.Event()  # the files are in Notion when the test says so

        async def send_board_files(self, at: datetime) -> None:
            self.sending += 1
            await self.sent.wait()

        async def flush(self, at: datetime) -> int:
            self.flushes += 1
            return 0

    class ActingIntake:
        polls = 0

        async def poll(self, at: datetime) -> bool:
            self.polls += 1
            return True  # each poll acted (a page queued, a Cancelled): the outbox is asked for

    writer, intake = SlowFiles(), ActingIntake()
    jobs = NotionJobs(
        engine, intake, writer, tmp_path, SystemClock(), "daemon-a", poll_s=1e-3, idle_poll_s=1e-9
    )
    await jobs.lead()
    await asyncio.wait_for(jobs.poll(), 5)  # the files are still being sent
    await asyncio.wait_for(jobs.poll(), 5)  # the next poll runs meanwhile
    assert intake.polls == 2
    assert writer.sending == 1  # one outbox run at a time: the second poll started none
    writer.sent.set()
    await _outbox_after_poll(jobs)
    assert writer.flushes == 1
