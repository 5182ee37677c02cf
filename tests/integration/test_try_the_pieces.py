"""README "Try the pieces": its marked shell blocks, run as written against a fresh sandbox."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.integration.test_scripts_support import ROOT, local_env
from tests.support.media import moov_before_mdat, video_info
from tests.support.sandbox_proc import SandboxProcess

pytestmark = pytest.mark.slow  # the README's commands, to a finished video

MARKER = "<!-- try-the-pieces -->"


def readme_blocks() -> list[str]:
    """The shell blocks right after the marker, inside the "## Try the pieces" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Try the pieces", 1)[1]
    section = re.split(r"\n## ", section, maxsplit=1)[0]
    return re.findall(re.escape(MARKER) + r"\s*```sh\n(.*?)```", section, re.DOTALL)


def test_the_readme_has_the_blocks() -> None:
    blocks = readme_blocks()
    assert len(blocks) == 2
    commands = "\n".join(blocks)
    for script in ("generate_storyboard", "generate_asset", "create_composite", "generate_video",
                   "generate_audio", "generate_sound_effects", "assemble_video"):  # fmt: skip
        assert f"scripts/{script}.py" in commands


def test_the_readme_commands_make_a_video(fresh_sandbox: SandboxProcess, tmp_path: Path) -> None:
    # Same behaviour, less waiting: the README's sandbox runs with the default latencies.
    fresh_sandbox.configure(
        kling_seconds=6, gemini_image_seconds=0, gemini_text_seconds=0, tts_seconds=0, sfx_seconds=0
    )
    host_port = fresh_sandbox.url.removeprefix("http://")
    out = tmp_path / "out"
    script = "\n".join(readme_blocks())
    script = script.replace("/tmp/try-out", str(out)).replace("/tmp/try", str(fresh_sandbox.state_dir))
    script = script.replace("127.0.0.1:8765", host_port)
    assert "8765" not in script
    proc = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script],
        cwd=ROOT, env=local_env(), capture_output=True, text=True, timeout=150, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    results = [line for line in lines if line["event"] == "result"]
    assert len(results) == 12  # one per script command
    assert not [line for line in lines if line["event"] == "error"]

    final = out / "final.mp4"
    info = video_info(final)
    assert (info.width, info.height, info.video_codec, info.audio_codec) == (1920, 1080, "h264", "aac")
    assert info.duration == pytest.approx(results[-1]["meta"]["duration_s"], abs=0.3)
    assert moov_before_mdat(final)
    storyboard = json.loads((out / "storyboard.json").read_text())
    assert len(storyboard["scenes"]) == 2
