"""The daemon's log as `python -m daemon run` writes it, set by LOG_LEVEL and LOG_FORMAT."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

SECRET = "sk_RecognisableGeminiKey4242"


def _run_until_warned(tmp_path: Path, **settings: str) -> str:
    """The daemon's stderr from start to SIGTERM: started with no channel (it warns about that;
    the channel folder's name holds a key's value, so the warning quotes a secret) and a disk it
    finds too full (MIN_FREE_MB: an error from the worker's first round, after start-up is done)."""
    channels = tmp_path / f"channels-{SECRET}"
    channels.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOG_", "DATABASE_URL"))}
    env.update(
        WORKSPACE_DIR=str(tmp_path / "ws"),
        CHANNELS_DIR=str(channels),
        GEMINI_API_KEY=SECRET,
        HTTP_PORT="0",
        MIN_FREE_MB="1e12",
        **settings,
    )
    migrated = subprocess.run(
        [sys.executable, "-m", "daemon", "migrate"], capture_output=True, text=True, env=env, timeout=60
    )
    assert migrated.returncode == 0, migrated.stderr
    daemon = subprocess.Popen(
        [sys.executable, "-m", "daemon", "run"], stderr=subprocess.PIPE, text=True, env=env
    )
    seen = []
    limit = threading.Timer(60, daemon.kill)  # a daemon that never says it ends the loop below
    limit.start()
    try:
        assert daemon.stderr is not None
        for raw in daemon.stderr:
            seen.append(raw)
            if "workspace_disk_full_paused" in raw:
                break
        daemon.send_signal(signal.SIGTERM)
        _, rest = daemon.communicate(timeout=30)
        return "".join(seen) + rest
    finally:
        limit.cancel()
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


@pytest.mark.slow
def test_log_level_warning_hides_info_and_console_lines_are_for_a_person_with_secrets_redacted(
    tmp_path: Path,
) -> None:
    quiet = _run_until_warned(tmp_path, LOG_LEVEL="warning", LOG_FORMAT="console")
    assert "no_channel_configured" in quiet and "workspace_disk_full_paused" in quiet
    assert "daemon_started" not in quiet and "daemon_stopped" not in quiet  # info events
    assert SECRET not in quiet
    (warned,) = [line for line in quiet.splitlines() if "no_channel_configured" in line]
    assert not warned.startswith("{") and "[redacted]" in warned

    # The same daemon at debug, its format left to the default (stderr is a pipe: JSON lines).
    chatty = _run_until_warned(tmp_path, LOG_LEVEL="DEBUG")
    events = [json.loads(line) for line in chatty.splitlines() if line.startswith("{")]
    names = {e["event"] for e in events}
    assert {
        "no_channel_configured",
        "daemon_started",
        "workspace_disk_full_paused",
        "daemon_stopped",
    } <= names
    assert SECRET not in chatty
