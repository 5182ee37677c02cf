"""A script's start-up carries only what it uses: each run pays its imports before its one call
(benchmarks/script_overhead.py measures the time; this checks what is loaded).

A script is run the way the daemon runs it, up to its first request: its module loaded, its
provider client made from the environment, FFmpeg looked up. What must not come along: trio (httpx's
transport looks for it; the scripts are synchronous), cryptography through a JWT library (Kling's
token is one HMAC), and imageio-ffmpeg's import and binary check (the daemon passes the FFmpeg it
found in IMAGEIO_FFMPEG_EXE)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.paths import FFMPEG_ENV, ffmpeg_executable
from daemon.worker import script_base_env

ROOT = Path(__file__).resolve().parents[2]
NOT_USED = ("trio", "cryptography", "jwt", "imageio_ffmpeg")
CLIENTS = {
    "generate_video": "kling",
    "generate_asset": "gemini",
    "generate_storyboard": "gemini",
    "generate_audio": "elevenlabs",
    "generate_sound_effects": "elevenlabs",
}
PROBE = """
import importlib, json, sys
script, client, unused = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
importlib.import_module("scripts." + script)
lib = importlib.import_module("scripts._lib." + client)
from scripts._lib import ffmpeg
with lib.client_from_env():
    exe = ffmpeg.executable()
print(json.dumps({"loaded": sorted(m for m in sys.modules if m.split(".")[0] in unused), "ffmpeg": exe}))
"""


def _environment() -> dict[str, str]:
    env = {**script_base_env(), "PYTHONPATH": str(ROOT)}
    env |= {
        "GEMINI_API_KEY": "test-key",
        "KLING_ACCESS_KEY": "ak_test",
        "KLING_SECRET_KEY": "sk_" + "0" * 32,
        "ELEVENLABS_API_KEY": "test-key",
    }
    return env


@pytest.mark.parametrize("script", sorted(CLIENTS))
def test_a_script_starts_without_what_it_does_not_use(script: str) -> None:
    env = _environment()
    assert env[FFMPEG_ENV] == ffmpeg_executable()[0], "the daemon passes the FFmpeg it found"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, script, CLIENTS[script], ",".join(NOT_USED)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["loaded"] == [], f"{script} loads {report['loaded']} before its first request"
    assert report["ffmpeg"] == env[FFMPEG_ENV]


def test_without_the_daemons_ffmpeg_a_script_finds_one_itself() -> None:
    env = {k: v for k, v in _environment().items() if k != FFMPEG_ENV}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "generate_audio", "elevenlabs", ",".join(NOT_USED)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)["ffmpeg"]
    assert os.access(found, os.X_OK), found
    assert subprocess.run([found, "-version"], capture_output=True, check=False).returncode == 0
