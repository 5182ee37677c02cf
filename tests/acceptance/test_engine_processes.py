"""The real daemon processes: enqueue, run to a finished video, SIGTERM mid-clip and resume."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select

from daemon.db.engine import make_engine
from daemon.db.models import Item, Task
from tests.support.daemon_proc import DaemonProcess, run_cli
from tests.support.db import ON_POSTGRES
from tests.support.media import video_info
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import STORYBOARD, daemon_env, write_channel


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
    channels = tmp_path / "channels"
    write_channel(channels)
    env = {
        **daemon_env(fresh_sandbox, tmp_path / "ws", channels, database),
        "SIGTERM_GRACE_S": "1",
        "CLAIM_POLL_S": "0.3",
    }
    storyboard = {**STORYBOARD, "scenes": STORYBOARD["scenes"][:1]}
    (tmp_path / "sb.yaml").write_text(yaml.safe_dump(storyboard))
    enqueued = run_cli(env, "enqueue", "--channel", "nature", "--storyboard", str(tmp_path / "sb.yaml"))
    assert enqueued.returncode == 0, enqueued.stderr

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

    second = DaemonProcess(env, tmp_path / "second.log", "second").start()
    try:

        async def finished() -> bool:
            return str((await _task(database)).state) == "done"

        await _wait_for(finished, 180, "the task to finish")
        second.signal(signal.SIGTERM)
        assert second.wait(timeout=20) == 0
    finally:
        second.stop()
    creates = fresh_sandbox.calls("kling")  # billable Kling calls are the creates
    assert len(creates) == 1, json.dumps(creates)
    resumed = [
        e for e in second.events() if e.get("event") == "script_started" and e.get("item") == "clip_s01"
    ]
    assert resumed and resumed[0]["resume"] == job_id
    task = await _task(database)
    info = video_info(tmp_path / "ws" / task.final_video_path)
    assert (info.width, info.height) == (1920, 1080)
