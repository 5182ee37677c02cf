"""A full workspace disk pauses work with a clear message, and work resumes when space returns;
nothing recorded as done is lost or made again."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from tests.support.chaos import audit
from tests.support.daemon_proc import DaemonProcess, run_cli
from tests.support.db import ON_SQLITE
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import STORYBOARD, daemon_env, small_cut_scripts, write_channel

SIZE_MB = 48


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 48 MB tmpfs for the workspace (the machine's tests run as root, as CI does)."""
    mount = tmp_path / "ws"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"cannot mount a tmpfs for the disk-full test: {done.stderr}"
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path, leave_mb: float) -> Path:
    """Takes the disk's free space down to `leave_mb`."""
    filler = disk / "filler.bin"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with filler.open("wb") as out:
        out.write(b"\0" * max(0, int(free - leave_mb * 1_000_000)))
    return filler


async def _until(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@ON_SQLITE
async def test_a_full_disk_pauses_work_and_space_coming_back_resumes_it(
    small_disk: Path, fresh_sandbox: SandboxProcess, database: str, tmp_path: Path
) -> None:
    fresh_sandbox.configure(cheap_media=True, kling_seconds=180)
    channels = tmp_path / "channels"
    write_channel(channels)
    env = {
        **daemon_env(fresh_sandbox, small_disk, channels, database, scripts_dir=small_cut_scripts(tmp_path)),
        "CLAIM_POLL_S": "0.2",
        "IDLE_POLL_MAX_S": "0.5",
        "MIN_FREE_MB": "8",
    }
    board = {**STORYBOARD, "scenes": STORYBOARD["scenes"][:2]}
    (tmp_path / "sb.yaml").write_text(yaml.safe_dump(board))
    assert (
        run_cli(env, "enqueue", "--channel", "nature", "--storyboard", str(tmp_path / "sb.yaml")).returncode
        == 0
    )
    daemon = DaemonProcess(env, tmp_path / "daemon.log", "disk-host").start()
    try:

        async def narrations_done() -> bool:
            result = await audit(database, fresh_sandbox, small_disk)
            return all(i.state == "succeeded" for i in result.items if i.kind == "narration")

        await _until(narrations_done, 90, "the narrations to be made")
        done_before = {
            i.key: i.output_path
            for i in (await audit(database, fresh_sandbox, small_disk)).items
            if i.state == "succeeded" and i.output_path
        }
        filler = _fill(small_disk, leave_mb=2)

        async def paused() -> bool:
            return any(e.get("event") == "workspace_disk_full_paused" for e in daemon.events())

        await _until(paused, 30, "the daemon to pause on the full disk")
        message = next(e for e in daemon.events() if e.get("event") == "workspace_disk_full_paused")
        assert message["needed_mb"] == 8
        assert "free space" in message["action"]
        await asyncio.sleep(2)
        claimed_while_full = await _claimed_after(database, fresh_sandbox, small_disk, message["timestamp"])
        filler.unlink()

        async def finished() -> bool:
            result = await audit(database, fresh_sandbox, small_disk)
            return bool(result.tasks) and result.tasks[0].state == "done"

        await _until(finished, 180, "the task to finish once space came back")
        assert any(e.get("event") == "workspace_disk_space_back_resumed" for e in daemon.events())
    finally:
        daemon.signal()
        daemon.wait(timeout=30)
    assert claimed_while_full == []
    result = await audit(database, fresh_sandbox, small_disk)
    assert result.problems == []
    for key, path in done_before.items():  # nothing recorded as done was lost or made again
        assert (small_disk / path).is_file(), key
        assert result.calls_per_item("elevenlabs").get(
            f"nature:{result.tasks[0].project_slug}:{key}", 1
        ) == 1 or not key.startswith(("narration", "sfx"))


async def _claimed_after(
    database: str, sandbox: SandboxProcess, workspace: Path, timestamp: str
) -> list[int]:
    """Attempts claimed after the pause was logged. (A step claimed just before the check that saw
    the disk full may log its start a moment after the pause line; it was not started while full.)"""
    paused_at = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    result = await audit(database, sandbox, workspace)
    return [
        a.item_id
        for a in result.attempts
        if (a.started_at if a.started_at.tzinfo else a.started_at.replace(tzinfo=UTC)) > paused_at
    ]
