"""A daemon frozen past its lease loses its item to another daemon; thawed, it kills its script and
its completion is refused; the clip is paid once. And a SIGTERMed daemon's work is picked up by a
second daemon within seconds, not after the lease TTL."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from tests.support.chaos import audit
from tests.support.daemon_proc import DaemonProcess, enqueue_one_scene
from tests.support.db import ON_POSTGRES
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import daemon_env, small_cut_scripts, write_channel


async def _until(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _setup(sandbox: SandboxProcess, database: str, tmp_path: Path, kling_seconds: float) -> dict[str, str]:
    sandbox.configure(cheap_media=True, kling_seconds=kling_seconds)
    channels = tmp_path / "channels"
    write_channel(channels)
    env = {
        **daemon_env(sandbox, tmp_path / "ws", channels, database, scripts_dir=small_cut_scripts(tmp_path)),
        "CLAIM_POLL_S": "0.2",
        "IDLE_POLL_MAX_S": "0.5",
        "LEASE_TTL_S": "3",
        "SIGTERM_GRACE_S": "1",
    }
    enqueue_one_scene(env, tmp_path)
    return env


@ON_POSTGRES
async def test_a_frozen_daemon_loses_its_clip_and_its_completion_is_refused(
    fresh_sandbox: SandboxProcess, database: str, tmp_path: Path
) -> None:
    env = _setup(fresh_sandbox, database, tmp_path, kling_seconds=900)  # 15 s clips
    a = DaemonProcess(env, tmp_path / "a.log", "daemon-a").start()
    b: DaemonProcess | None = None
    try:

        async def clip_submitted() -> bool:
            return bool(fresh_sandbox.calls("kling"))

        await _until(clip_submitted, 90, "daemon A to submit the clip")
        a.signal(signal.SIGSTOP)
        b = DaemonProcess(env, tmp_path / "b.log", "daemon-b").start()

        async def b_owns_clip() -> bool:
            # B's attempt exists: it claimed the clip (on a loaded machine the Kling job may be done
            # by then, and B's resume collects it before a look could see it running).
            result = await audit(database, fresh_sandbox, tmp_path / "ws")
            clip = next((i for i in result.items if i.key == "clip_s01"), None)
            return clip is not None and any(
                t.item_id == clip.id and t.owner == "daemon-b" for t in result.attempts
            )

        await _until(b_owns_clip, 30, "daemon B to take the clip over after A's lease expired")
        a.signal(signal.SIGCONT)

        async def a_gave_up_its_clip() -> bool:
            # A's heartbeat finds the lease gone and kills the script; or, when the script (frozen
            # with A, its Kling job done meanwhile) exits first, A's completion is fenced out. Both
            # were seen; a loaded CI machine gives the second.
            refused = ("script_killed_lease_lost", "completion_fenced_out")
            return any(e.get("event") in refused and e.get("item") == "clip_s01" for e in a.events())

        await _until(a_gave_up_its_clip, 15, "daemon A to find its lease gone and give the clip up")

        async def done() -> bool:
            result = await audit(database, fresh_sandbox, tmp_path / "ws")
            return bool(result.tasks) and result.tasks[0].state == "done"

        await _until(done, 120, "the task to finish")
    finally:
        for d in (a, b):
            if d is not None:
                d.signal(signal.SIGCONT)
                d.signal(signal.SIGTERM)
                d.wait(timeout=30)
    result = await audit(database, fresh_sandbox, tmp_path / "ws")
    assert result.problems == []
    assert list(result.kling_creates_per_clip().values()) == [1]  # B resumed A's job: paid once
    clip = next(i for i in result.items if i.key == "clip_s01")
    attempts = sorted((t.number, t.owner, t.outcome) for t in result.attempts if t.item_id == clip.id)
    assert attempts == [(1, "daemon-a", "lost"), (2, "daemon-b", "succeeded")]
    assert not any(e.get("event") == "item_succeeded" and e.get("item") == "clip_s01" for e in a.events())


@ON_POSTGRES
async def test_a_sigtermed_daemons_items_are_picked_up_within_five_seconds(
    fresh_sandbox: SandboxProcess, database: str, tmp_path: Path
) -> None:
    env = _setup(fresh_sandbox, database, tmp_path, kling_seconds=900)
    env = {**env, "LEASE_TTL_S": "60"}  # far longer than the 5 s allowed: a hand-back, not an expiry
    a = DaemonProcess(env, tmp_path / "a.log", "daemon-a").start()
    b = DaemonProcess(env, tmp_path / "b.log", "daemon-b")
    try:

        async def a_runs_clip() -> bool:
            result = await audit(database, fresh_sandbox, tmp_path / "ws")
            return any(i.key == "clip_s01" and i.lease_owner == "daemon-a" for i in result.items)

        await _until(a_runs_clip, 90, "daemon A to run the clip")
        # B is up before A stops: the five seconds are A's hand-back and B's claim, not the start-up
        # of a Python interpreter on a loaded machine.
        b.start()

        async def b_started() -> bool:
            return any(e.get("event") == "daemon_started" for e in b.events())

        await _until(b_started, 60, "daemon B to start")
        signalled = datetime.now(UTC)
        a.signal(signal.SIGTERM)
        assert a.wait(timeout=20) == 0

        async def b_runs_clip() -> bool:
            result = await audit(database, fresh_sandbox, tmp_path / "ws")
            return any(i.key == "clip_s01" and i.lease_owner == "daemon-b" for i in result.items)

        await _until(b_runs_clip, 10, "daemon B to pick the clip up")
        # Timed by the database's record of B's attempt, not by this test's own polling (an audit
        # of the database, the sandbox and the workspace takes a second or more on a loaded machine).
        result = await audit(database, fresh_sandbox, tmp_path / "ws")
        clip = next(i for i in result.items if i.key == "clip_s01")
        taken = next(t for t in result.attempts if t.item_id == clip.id and t.owner == "daemon-b")
        assert (taken.started_at - signalled).total_seconds() < 5
    finally:
        for d in (a, b):
            if d.proc is not None:
                d.signal(signal.SIGTERM)
                d.wait(timeout=30)
