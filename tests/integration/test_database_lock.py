"""One daemon per SQLite file: a second `run` on the file refuses with a message naming the file and
the daemon that holds it (exit 78: a supervisor does not restart into it), while the first goes on
working and the operator's commands still work beside it; a killed daemon's lock goes with it."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.support import fake_scripts
from tests.support.daemon_proc import DaemonProcess, run_cli

CHANNEL = (
    "id: nature\nname: Nature\nvoice: {voice_id: JBFqnCBsd6RMkjVDRZzb}\n"
    "gates: {storyboard: false, assets: false, final: false}\n"
)
STORYBOARD = """
title: The Heron's Patience
atmosphere: Misty river delta at dawn
assets:
  - {key: shallows, kind: environment, prompt: "Reed-lined shallows"}
scenes:
  - {key: s01, frame: {environment: shallows}, motion: Slow push in, narration: At first light., sfx: River}
"""


def _env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "nature.yaml").write_text(CHANNEL)
    (tmp_path / "sb.yaml").write_text(STORYBOARD)
    return {
        "WORKSPACE_DIR": str(tmp_path / "ws"),
        "CHANNELS_DIR": str(tmp_path / "channels"),
        "SCRIPTS_DIR": str(fake_scripts.install(tmp_path / "scripts")),
        "DATABASE_URL": "",  # SQLite in the workspace, whatever the test run's environment says
        "HTTP_PORT": "0",
        "CLAIM_POLL_S": "0.2",
        "IDLE_POLL_MAX_S": "0.5",
    }


def _until_started(daemon: DaemonProcess, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not any(e.get("event") == "daemon_started" for e in daemon.events()):
        assert daemon.proc is not None and daemon.proc.poll() is None, daemon.log_path.read_text()
        assert time.monotonic() < deadline, "the daemon did not start"
        time.sleep(0.1)


@pytest.mark.slow
def test_a_second_daemon_on_one_sqlite_file_is_refused_while_the_first_works_on(tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert run_cli(env, "migrate").returncode == 0
    first = DaemonProcess(env, tmp_path / "a.log", "daemon-a").start()
    second = DaemonProcess(env, tmp_path / "b.log", "daemon-b")
    try:
        _until_started(first)
        refused = run_cli({**env, "DAEMON_ID": "daemon-b"}, "run", timeout=60)
        assert refused.returncode == 78, refused.stderr
        database = (tmp_path / "ws" / "daemon.db").resolve()
        assert refused.stderr.startswith(
            f"configuration error: DATABASE_URL: the SQLite file {database} is in use by `run` "
            f"(pid {first.proc.pid} on {socket.gethostname()}, DAEMON_ID daemon-a, since "  # type: ignore[union-attr]
        )
        assert "stop that one first, or use PostgreSQL" in refused.stderr
        assert "daemon_started" not in refused.stderr  # it stopped before doing anything

        # The first goes on, and the operator's commands work beside it.
        done = run_cli(env, "enqueue", "--channel", "nature", "--storyboard", str(tmp_path / "sb.yaml"))
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 60
        while True:
            shown = run_cli(env, "status", "--json")
            assert shown.returncode == 0, shown.stderr
            if json.loads(shown.stdout)[0]["state"] == "done":
                break
            assert time.monotonic() < deadline, shown.stdout
            time.sleep(0.3)
        assert first.proc is not None and first.proc.poll() is None
        # migrate beside a running daemon: its schema is current, so nothing to do and nothing changed.
        again = run_cli(env, "migrate")
        assert (again.returncode, again.stdout) == (0, "database schema is up to date\n"), again.stderr

        # A daemon killed outright leaves its lock file, not its lock: the next one starts.
        first.signal(signal.SIGKILL)
        first.wait(30)
        second.start()
        _until_started(second)
        assert (tmp_path / "ws" / "daemon.db.lock").exists()
    finally:
        for daemon in (first, second):
            daemon.stop()
