"""The daemon's command line as an operator meets it: real processes, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

GOOD = "id: nature\nname: Nature\nvoice: {voice_id: JBFqnCBsd6RMkjVDRZzb}\n"
STORYBOARD = """
title: The Heron's Patience
atmosphere: Misty river delta at dawn
assets:
  - {key: shallows, kind: environment, prompt: "Reed-lined shallows"}
scenes:
  - key: s01
    frame: {environment: shallows}
    motion: Slow push in
    narration: At first light the delta belongs to the patient.
    sfx: Dawn river ambience
"""


def _daemon(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WORKSPACE_DIR": str(tmp_path / "ws"), "CHANNELS_DIR": str(tmp_path / "channels")}
    env.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_run_refuses_an_unmigrated_database_and_names_the_command(tmp_path: Path) -> None:
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "nature.yaml").write_text(GOOD)
    done = _daemon(tmp_path, "run")
    assert done.returncode == 1
    assert "run `python -m daemon migrate` first" in done.stderr


def test_a_bad_channel_file_stops_start_up(tmp_path: Path) -> None:
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "nature.yaml").write_text(GOOD.replace("voice_id", "voice_name"))
    assert _daemon(tmp_path, "migrate").returncode == 0
    done = _daemon(tmp_path, "run")
    assert done.returncode == 1
    assert "nature.yaml: invalid channel configuration" in done.stderr
    assert "voice.voice_id: Field required (add this field)" in done.stderr


@pytest.mark.slow
def test_enqueue_plans_a_task_and_a_bad_storyboard_names_the_field(tmp_path: Path) -> None:
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "nature.yaml").write_text(GOOD)
    assert _daemon(tmp_path, "migrate").returncode == 0
    good = tmp_path / "sb.yaml"
    good.write_text(STORYBOARD)
    done = _daemon(tmp_path, "enqueue", "--channel", "nature", "--storyboard", str(good))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"task": 1, "channel": "nature", "slug": "the-heron-s-patience"}
    status = json.loads(_daemon(tmp_path, "status").stdout)
    assert status[0]["state"] == "active"
    assert status[0]["items"]["ready"] >= 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(STORYBOARD.replace("environment: shallows}", "environment: shalows}"))
    done = _daemon(tmp_path, "enqueue", "--channel", "nature", "--storyboard", str(bad))
    assert done.returncode == 1
    assert "scenes[0].frame.environment" in done.stderr and "shallows" in done.stderr
    done = _daemon(tmp_path, "enqueue", "--channel", "oceans", "--storyboard", str(good))
    assert done.returncode == 1
    assert "unknown channel 'oceans'; known channels: nature" in done.stderr
