"""A restarted daemon reaps the scripts of its previous life and sweeps their leftovers."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.claim import claim
from daemon.commands import EXTENSIONS
from daemon.runner import reap_orphans
from daemon.workspace import sweep_temp_files
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
    running = (await claim(engine, "elevenlabs", "d", now(), 30, EXTENSIONS)).claimed
    assert running is not None
    attempts = kit.workspace / "channels/nature/projects/p1/attempts"
    attempts.mkdir(parents=True)
    live = kit.workspace / running.attempt_output
    live.write_bytes(b"in progress")
    live_words = live.with_name(live.name + ".words.json")  # written before its audio
    live_words.write_bytes(b"{}")
    dead = attempts / "clip_s01-a1.mp4"
    dead.write_bytes(b"left by a killed run")
    dead_sidecar = attempts / "narration_s01-a7.mp3.words.json"
    dead_sidecar.write_bytes(b"{}")
    assert await sweep_temp_files(engine, kit.workspace) == 2
    assert live.exists() and live_words.exists()
    assert not dead.exists() and not dead_sidecar.exists()


SCRIPT_WITH_CHILD = """
import subprocess, sys, time
from scripts._lib.parent import die_with_parent
die_with_parent()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
open(sys.argv[1], "w").write(f"{child.pid}\\n")
time.sleep(300)
"""

DAEMON = """
import asyncio, sys
from pathlib import Path
from daemon.runner import SubprocessRunner

async def main():
    async def ignore(event): pass
    await SubprocessRunner(Path(sys.argv[1]), fork_server=sys.argv[5] == "fork").run(
        [sys.executable, sys.argv[2], sys.argv[3]], env={"PYTHONPATH": sys.argv[4]}, timeout=300,
        on_event=ignore, cancel=asyncio.Event(), label="clip_s01",
    )

asyncio.run(main())
"""


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie has ended; only its parent's wait is missing.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def _started_script(run: Path, pid_out: Path) -> int:
    """The script's pid once it runs its child and the daemon has written its pidfile (either may
    come first on a loaded machine)."""
    deadline = time.monotonic() + 30
    while True:
        assert time.monotonic() < deadline, "the script did not start"
        if pid_out.exists() and pid_out.read_text().endswith("\n"):
            for pidfile in run.glob("*.json"):
                with contextlib.suppress(ValueError):  # being written
                    return int(json.loads(pidfile.read_text())["pgid"])
        time.sleep(0.05)


@pytest.mark.parametrize("start", ["fork", "new"])
def test_a_killed_daemons_script_and_its_children_die_with_it(tmp_path: Path, start: str) -> None:
    """Without this, an orphan goes on calling a provider for an item another daemon has taken over.
    Either way a script starts: forked by the fork server, or a new interpreter."""
    root = Path(__file__).resolve().parents[2]
    (tmp_path / "script.py").write_text(SCRIPT_WITH_CHILD)
    pid_out = tmp_path / "child.pid"
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-c",
            DAEMON,
            str(tmp_path / "run"),
            str(tmp_path / "script.py"),
            str(pid_out),
            str(root),
            start,
        ],
        cwd=root,
    )
    try:
        script_pid = _started_script(tmp_path / "run", pid_out)
    except BaseException:
        daemon.kill()
        daemon.wait()
        raise
    child_pid = int(pid_out.read_text())
    daemon.kill()
    daemon.wait()
    deadline = time.monotonic() + 5
    while not (_gone(script_pid) and _gone(child_pid)):
        if time.monotonic() > deadline:
            for pid in (script_pid, child_pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
            raise AssertionError("the script or its child outlived the killed daemon")
        time.sleep(0.05)
