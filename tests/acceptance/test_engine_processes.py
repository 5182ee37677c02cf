"""The real daemon processes: enqueue, run to a finished video, SIGTERM mid-clip and resume."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from daemon.db.engine import make_engine
from daemon.db.models import Item, Task
from tests.support.daemon_proc import DaemonProcess, enqueue_one_scene
from tests.support.db import ON_POSTGRES
from tests.support.media import video_info
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import daemon_env, write_channel


async def _items(url: str) -> dict[str, Any]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return {r.key: r for r in await conn.execute(select(Item))}
    finally:
        await engine.dispose()


async def _task(url: str) -> Any:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(select(Task))).one()
    finally:
        await engine.dispose()


def _one_scene_video(
    sandbox: SandboxProcess, database: str, tmp_path: Path, **channel: Any
) -> dict[str, str]:
    """A one-scene video enqueued on the nature channel (with `channel`'s settings); the daemon's
    environment, with a 1 s SIGTERM grace."""
    channels = tmp_path / "channels"
    write_channel(channels, **channel)
    env = {
        **daemon_env(sandbox, tmp_path / "ws", channels, database),
        "SIGTERM_GRACE_S": "1",
        "CLAIM_POLL_S": "0.3",
    }
    enqueue_one_scene(env, tmp_path)
    return env


async def _finish_with_a_second_daemon(env: dict[str, str], database: str, tmp_path: Path) -> DaemonProcess:
    """A second daemon runs the task to its end, then stops cleanly."""
    second = DaemonProcess(env, tmp_path / "second.log", "second").start()
    try:

        async def finished() -> bool:
            return str((await _task(database)).state) == "done"

        await _wait_for(finished, 180, "the task to finish")
        second.signal(signal.SIGTERM)
        assert second.wait(timeout=20) == 0
    finally:
        second.stop()
    return second


async def _wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@ON_POSTGRES
async def test_sigterm_mid_clip_hands_back_and_a_second_daemon_resumes_the_same_kling_job(
    fresh_sandbox: SandboxProcess, database: str, tmp_path: Path
) -> None:
    # Clips take ~12 s in the sandbox, so the first daemon is surely mid-clip when it is stopped.
    fresh_sandbox.configure(kling_seconds=720)
    env = _one_scene_video(fresh_sandbox, database, tmp_path)

    first = DaemonProcess(env, tmp_path / "first.log", "first").start()
    try:

        async def clip_submitted() -> bool:
            clip = (await _items(database)).get("clip_s01")
            return clip is not None and clip.provider_job_id is not None

        await _wait_for(clip_submitted, 90, "the clip to be submitted to Kling")
        stopped_at = time.monotonic()
        first.signal(signal.SIGTERM)
        assert first.wait(timeout=20) == 0
        assert time.monotonic() - stopped_at < 10
    finally:
        first.stop()
    clip = (await _items(database))["clip_s01"]
    assert clip.state == "ready"
    assert clip.lease_token is None
    job_id = clip.provider_job_id
    assert any(e.get("event") == "lease_handed_back" for e in first.events())

    second = await _finish_with_a_second_daemon(env, database, tmp_path)
    creates = fresh_sandbox.calls("kling")  # billable Kling calls are the creates
    assert len(creates) == 1, json.dumps(creates)
    resumed = [
        e for e in second.events() if e.get("event") == "script_started" and e.get("item") == "clip_s01"
    ]
    assert resumed and resumed[0]["resume"] == job_id
    task = await _task(database)
    info = video_info(tmp_path / "ws" / task.final_video_path)
    assert (info.width, info.height) == (1920, 1080)


@ON_POSTGRES
async def test_sigterm_while_the_music_is_made_lets_that_paid_call_finish_and_nothing_is_bought_twice(
    fresh_sandbox: SandboxProcess, database: str, tmp_path: Path
) -> None:
    """ElevenLabs charges the music as it answers and keeps nothing to fetch again: a daemon stopped
    mid-call must let the call finish (SIGTERM_PAID_GRACE_S), or the next run pays for it again.
    The clip, waiting on Kling, is handed back after SIGTERM_GRACE_S as before."""
    # The music takes ~6 s and a clip ~12 s: the daemon is stopped a second into the music.
    fresh_sandbox.configure(music_seconds=360, kling_seconds=720, cheap_media=True)
    env = _one_scene_video(fresh_sandbox, database, tmp_path, music={"source": "generated"})

    def music_calls() -> list[dict[str, Any]]:
        return [c for c in fresh_sandbox.calls("elevenlabs") if "/v1/music" in c["endpoint"]]

    first = DaemonProcess(env, tmp_path / "first.log", "first").start()
    try:

        async def music_started() -> bool:
            return any(
                e.get("event") == "script_started" and e.get("item") == "music_bed" for e in first.events()
            )

        await _wait_for(music_started, 90, "the music to start")
        await asyncio.sleep(1.0)  # its request is on its way
        calls = music_calls()
        assert len(calls) == 1 and not calls[0]["finished"], calls  # asked, not answered yet
        stopped_at = time.monotonic()
        first.signal(signal.SIGTERM)
        assert first.wait(timeout=40) == 0
        stop_took = time.monotonic() - stopped_at
    finally:
        first.stop()
    events = first.events()
    assert any(e.get("event") == "shutdown_waits_for_paid_calls" for e in events)
    assert len(music_calls()) == 1
    items = await _items(database)
    assert items["music_bed"].state == "succeeded"  # finished within its grace: kept
    assert stop_took < 20
    handed = {e.get("item") for e in events if e.get("event") == "lease_handed_back"}
    assert "music_bed" not in handed

    await _finish_with_a_second_daemon(env, database, tmp_path)
    assert len(music_calls()) == 1  # the second daemon bought no music
    assert len(fresh_sandbox.calls("kling")) == 1  # and the clip was resumed, not bought again
