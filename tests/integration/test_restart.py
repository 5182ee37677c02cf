"""A restarted daemon reaps the scripts of its previous life and sweeps their leftovers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.app import sweep_temp_files
from daemon.claim import claim
from daemon.commands import EXTENSIONS
from daemon.runner import reap_orphans
from tests.support import fake_scripts
from tests.support.engine_kit import Kit, now, storyboard


def _spawn_sleeper(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    script = tmp_path / "sleeper.py"
    script.write_text("import time\ntime.sleep(300)\n")
    proc = subprocess.Popen([sys.executable, str(script)], start_new_session=True)
    return proc, script


def _pidfile(folder: Path, proc: subprocess.Popen[bytes], script: Path, daemon_pid: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{proc.pid}.json"
    path.write_text(
        json.dumps({"pgid": proc.pid, "daemon_pid": daemon_pid, "label": "clip_s01", "script": str(script)})
    )
    return path


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(done.stdout)


def test_scripts_of_a_dead_daemon_are_killed_and_a_live_daemons_are_left(tmp_path: Path) -> None:
    orphan, script = _spawn_sleeper(tmp_path)
    other, other_script = _spawn_sleeper(tmp_path)
    pids = tmp_path / "run"
    orphan_file = _pidfile(pids, orphan, script, _dead_pid())
    other_file = _pidfile(pids, other, other_script, os.getppid())  # a live daemon's script
    try:
        reaped = reap_orphans(pids)
        assert [r["pgid"] for r in reaped] == [orphan.pid]
        assert orphan.wait(timeout=5) == -9
        assert not orphan_file.exists()
        time.sleep(0.2)
        assert other.poll() is None
        assert other_file.exists()
    finally:
        for proc in (orphan, other):
            proc.kill()
            proc.wait()


def test_a_recycled_pid_is_not_killed(tmp_path: Path) -> None:
    innocent, _ = _spawn_sleeper(tmp_path)
    pids = tmp_path / "run"
    _pidfile(pids, innocent, tmp_path / "generate_video.py", _dead_pid())  # same pid, other program
    try:
        assert reap_orphans(pids) == []
        assert innocent.poll() is None
    finally:
        innocent.kill()
        innocent.wait()


async def test_leftover_attempt_files_are_swept_but_not_a_running_attempts(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    kit = Kit(engine, tmp_path / "ws", fake_scripts.install(tmp_path / "scripts"))
    await kit.prepare()
    await kit.submit(storyboard(scenes=1))
    running = await claim(engine, "elevenlabs", "d", now(), 30, EXTENSIONS)
    assert running is not None
    attempts = kit.workspace / "channels/nature/projects/p1/attempts"
    attempts.mkdir(parents=True)
    live = kit.workspace / running.attempt_output
    live.write_bytes(b"in progress")
    dead = attempts / "clip_s01-a1.mp4"
    dead.write_bytes(b"left by a killed run")
    assert await sweep_temp_files(engine, kit.workspace) == 1
    assert live.exists()
    assert not dead.exists()
