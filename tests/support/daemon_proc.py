"""Runs `python -m daemon ...` as a real process, with its log kept in a file for assertions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.support.stack import STORYBOARD


class DaemonProcess:
    def __init__(self, env: dict[str, str], log_path: Path, daemon_id: str) -> None:
        self.env = {**os.environ, **env, "DAEMON_ID": daemon_id}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *args: str) -> DaemonProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", *(args or ("run",))], env=self.env, stdout=log, stderr=log
        )
        log.close()
        return self

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                out.append(event)
        return out


def run_cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def enqueue_one_scene(env: dict[str, str], folder: Path) -> None:
    """`nvd enqueue` of the test storyboard's first scene on the nature channel (its file in `folder`)."""
    board = folder / "sb.yaml"
    board.write_text(yaml.safe_dump({**STORYBOARD, "scenes": STORYBOARD["scenes"][:1]}))
    done = run_cli(env, "enqueue", "--channel", "nature", "--storyboard", str(board))
    assert done.returncode == 0, done.stderr
