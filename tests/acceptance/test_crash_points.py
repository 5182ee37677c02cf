"""Each crash point: the daemon (or its script) dies there, restarts, and the outcome is checked
against the sandbox's call log: nothing lost, no Kling clip paid twice, repeats only where allowed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import yaml

from tests.support.chaos import audit, repeats
from tests.support.daemon_proc import DaemonProcess, run_cli
from tests.support.media import video_info
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import STORYBOARD, daemon_env, small_cut_scripts, write_channel

# The daemon dies at these points; a restarted daemon (same DAEMON_ID) finishes the work.
DAEMON_POINTS = (
    "after_claim",
    "after_attempt_written",
    "after_job_id_stored",
    "before_complete",
    "after_complete",
)
# The clip script dies at these; the same daemon retries it, which must resume the Kling job.
SCRIPT_POINTS = ("after_submit_before_job_id", "mid_download")
# Every point on SQLite; two on PostgreSQL too, to keep the suite short.
CASES = [(p, "sqlite") for p in DAEMON_POINTS + SCRIPT_POINTS] + [
    ("after_submit_before_job_id", "postgres"),
    ("before_complete", "postgres"),
]


async def _until(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize(("point", "database"), CASES, indirect=["database"])
async def test_a_crash_at_each_point_loses_nothing_and_pays_no_clip_twice(
    point: str, database: str, fresh_sandbox: SandboxProcess, tmp_path: Path
) -> None:
    fresh_sandbox.configure(cheap_media=True, kling_seconds=180)
    channels = tmp_path / "channels"
    write_channel(channels)
    env = {
        **daemon_env(
            fresh_sandbox, tmp_path / "ws", channels, database, scripts_dir=small_cut_scripts(tmp_path)
        ),
        "CLAIM_POLL_S": "0.2",
        "LEASE_TTL_S": "5",
        "RETRY_BASE_S": "0.2",
        "RETRY_CAP_S": "1",
    }
    board = {**STORYBOARD, "scenes": STORYBOARD["scenes"][:2]}
    (tmp_path / "sb.yaml").write_text(yaml.safe_dump(board))
    enqueued = run_cli(env, "enqueue", "--channel", "nature", "--storyboard", str(tmp_path / "sb.yaml"))
    assert enqueued.returncode == 0, enqueued.stderr

    async def finished() -> bool:
        a = await audit(database, fresh_sandbox, tmp_path / "ws")
        return bool(a.tasks) and a.tasks[0].state == "done"

    if point in DAEMON_POINTS:
        crashing = DaemonProcess({**env, "CRASH_AT": point}, tmp_path / "crash.log", "machine-1").start()
        try:
            assert crashing.wait(timeout=120) in (9, -9), f"the daemon did not crash at {point}"
        finally:
            crashing.stop()
        env_after = env
    else:
        env_after = {**env, "CRASH_AT": point, "CRASH_ONCE": str(tmp_path / "crashed-once")}
    daemon = DaemonProcess(env_after, tmp_path / "after.log", "machine-1").start()
    try:
        await _until(finished, 180, "the task to finish")
    finally:
        daemon.signal()
        daemon.wait(timeout=30)
    if point in SCRIPT_POINTS:
        assert (tmp_path / f"crashed-once.{point}").exists(), f"no script crashed at {point}"

    result = await audit(database, fresh_sandbox, tmp_path / "ws")
    assert result.problems == []
    assert sorted(result.kling_creates_per_clip().values()) == [1, 1]
    # Gemini and ElevenLabs calls repeat only for attempts the kill cut off before their result
    # was recorded (scripts in flight are reaped at the restart); each such repeat is explained.
    _, unexplained = repeats(result)
    assert unexplained == []
    info = video_info(tmp_path / "ws" / result.tasks[0].final_video_path)
    assert info.video_codec == "h264"
