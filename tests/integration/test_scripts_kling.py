"""generate_video.py against the sandbox's Kling: clips, resume without paying twice, error classes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.integration.test_scripts_support import SCRIPTS, parse_lines, run_script, script_env
from tests.support.media import FFMPEG, video_info
from tests.support.sandbox_proc import SandboxProcess

POLL = "0.25"


@pytest.fixture(scope="module")
def frame(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("kling") / "frame.png"
    Image.new("RGB", (1920, 1080), (70, 110, 90)).save(path)
    return path


@pytest.fixture(scope="module")
def quick(sandbox: SandboxProcess) -> Iterator[None]:
    """Tasks finish as soon as their clip is rendered; the shared sandbox's setting is restored."""
    before = sandbox.get("/_sandbox/config")["kling_seconds"]
    sandbox.configure(kling_seconds=6)
    yield
    sandbox.configure(kling_seconds=before)


@pytest.fixture
def cheap(sandbox: SandboxProcess) -> Iterator[None]:
    """Thumbnail-sized clips, for tests about job handling rather than pictures (they render fast)."""
    sandbox.configure(cheap_media=True)
    yield
    sandbox.configure(cheap_media=False)


def _ext() -> str:
    return f"clip_s01_{uuid.uuid4().hex[:8]}"


def _args(
    frame: Path, output: Path, external_id: str, prompt: str = "Slow push in, reeds sway"
) -> list[object]:
    return ["--image", frame, "--prompt", prompt, "--duration", "5", "--external-id", external_id,
            "--output", output, "--poll-interval", POLL]  # fmt: skip


def _creates(sandbox: SandboxProcess, external_id: str) -> list[dict[str, Any]]:
    """Create calls the sandbox accepted for this external id (refused duplicates cost nothing)."""
    return [c for c in sandbox.calls("kling") if c["identity"] == external_id and c["status"] == 200]


def test_clip_is_made_and_paid_once(
    sandbox: SandboxProcess, quick: None, frame: Path, tmp_path: Path
) -> None:
    ext = _ext()
    output = tmp_path / "clips" / "clip_s01.mp4"
    run = run_script("generate_video", *_args(frame, output, ext), env=script_env(sandbox))
    result = run.result
    submitted = run.events("submitted")
    assert len(submitted) == 1
    assert submitted[0]["external_id"] == ext
    assert run.lines.index(submitted[0]) < len(run.lines) - 1
    assert run.events("progress")
    info = video_info(output)
    assert (info.width, info.height) == (1280, 720)
    assert info.duration == pytest.approx(5.0, abs=0.2)
    assert result["meta"]["job_id"] == submitted[0]["job_id"]
    assert result["cost_usd"] == pytest.approx(result["meta"]["units"] * 0.14)
    assert result["meta"]["units_reported"] is True
    assert len(_creates(sandbox, ext)) == 1
    assert [p.name for p in output.parent.iterdir()] == ["clip_s01.mp4"]


def test_killed_after_submit_then_resumed_pays_once(
    sandbox: SandboxProcess, quick: None, cheap: None, frame: Path, tmp_path: Path
) -> None:
    ext = _ext()
    output = tmp_path / "clip.mp4"
    env = script_env(sandbox)
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "generate_video.py"), *map(str, _args(frame, output, ext))],
        stdout=subprocess.PIPE, text=True, env=env, cwd="/",
    )  # fmt: skip
    assert proc.stdout is not None
    first = json.loads(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert first["event"] == "submitted"
    assert not output.exists()

    resumed = run_script("generate_video", *_args(frame, output, ext), "--resume-job", ext, env=env)
    result = resumed.result
    assert result["meta"]["resumed"] is True
    assert result["meta"]["job_id"] == first["job_id"]
    assert video_info(output).duration == pytest.approx(5.0, abs=0.2)
    assert len(_creates(sandbox, ext)) == 1


def test_second_submit_with_the_same_external_id_collects_the_first(
    sandbox: SandboxProcess, quick: None, cheap: None, frame: Path, tmp_path: Path
) -> None:
    ext = _ext()
    env = script_env(sandbox)
    first = run_script("generate_video", *_args(frame, tmp_path / "a.mp4", ext), env=env).result
    again = run_script("generate_video", *_args(frame, tmp_path / "b.mp4", ext), env=env).result
    assert again["meta"]["job_id"] == first["meta"]["job_id"]
    assert len(_creates(sandbox, ext)) == 1
    assert video_info(tmp_path / "b.mp4").duration == pytest.approx(5.0, abs=0.2)


def test_resume_by_task_id_needs_no_other_input(
    sandbox: SandboxProcess, quick: None, cheap: None, frame: Path, tmp_path: Path
) -> None:
    ext = _ext()
    env = script_env(sandbox)
    job = run_script("generate_video", *_args(frame, tmp_path / "a.mp4", ext), env=env).result["meta"][
        "job_id"
    ]
    again = run_script("generate_video", "--resume-job", job, "--output", tmp_path / "b.mp4", env=env)
    assert again.result["meta"]["job_id"] == job
    assert len(_creates(sandbox, ext)) == 1


def test_resume_of_an_unknown_job_is_permanent(sandbox: SandboxProcess, tmp_path: Path) -> None:
    run = run_script("generate_video", "--resume-job", "nothing_like_it", "--output", tmp_path / "x.mp4",
                     env=script_env(sandbox))  # fmt: skip
    assert "nothing_like_it" in run.failed(1, "permanent")["message"]


def test_lost_create_answer_is_transient_and_the_rerun_collects_it(
    sandbox: SandboxProcess, quick: None, cheap: None, frame: Path, tmp_path: Path
) -> None:
    ext = _ext()
    env = script_env(sandbox)
    sandbox.fault(provider="kling", kind="apply_then_fail", drop=True, endpoint="^POST ", count=1)
    lost = run_script("generate_video", *_args(frame, tmp_path / "a.mp4", ext), env=env)
    lost.failed(75, "transient")
    rerun = run_script("generate_video", *_args(frame, tmp_path / "a.mp4", ext), "--resume-job", ext, env=env)
    assert rerun.result["meta"]["resumed"] is True
    assert len(_creates(sandbox, ext)) == 1


def test_failed_task_is_permanent_with_its_reason(
    sandbox: SandboxProcess, quick: None, cheap: None, frame: Path, tmp_path: Path
) -> None:
    run = run_script("generate_video", *_args(frame, tmp_path / "x.mp4", _ext(), "Push in [sandbox:fail]"),
                     env=script_env(sandbox))  # fmt: skip
    error = run.failed(1, "permanent")
    assert error["provider_code"] == "task_failed"
    assert "risk control" in error["message"]
    assert run.events("submitted")
    assert not (tmp_path / "x.mp4").exists()


def test_unsafe_prompt_is_refused_at_once(sandbox: SandboxProcess, frame: Path, tmp_path: Path) -> None:
    run = run_script("generate_video", *_args(frame, tmp_path / "x.mp4", _ext(), "Push in [sandbox:unsafe]"),
                     env=script_env(sandbox))  # fmt: skip
    assert run.failed(1, "permanent")["provider_code"] == 1301
    assert not run.events("submitted")


@pytest.mark.parametrize(
    ("status", "code", "exit_code", "kind"),
    [
        (429, 1302, 75, "transient"),
        (429, 1303, 75, "transient"),
        (500, 5000, 75, "transient"),
        (503, 5001, 75, "transient"),
        (429, 1101, 1, "permanent"),
        (429, 1102, 1, "permanent"),
        (403, 1103, 1, "permanent"),
    ],
)
def test_provider_errors(
    sandbox: SandboxProcess, frame: Path, tmp_path: Path, status: int, code: int, exit_code: int, kind: str
) -> None:
    sandbox.fault(provider="kling", status=status, code=code, count=1, endpoint="^POST ")
    run = run_script("generate_video", *_args(frame, tmp_path / "x.mp4", _ext()), env=script_env(sandbox))
    assert run.failed(exit_code, kind)["provider_code"] == code


def test_busy_lookup_before_submit_is_transient(sandbox: SandboxProcess, frame: Path, tmp_path: Path) -> None:
    sandbox.fault(provider="kling", status=429, code=1302, count=1, endpoint="^GET ")
    run = run_script("generate_video", *_args(frame, tmp_path / "x.mp4", _ext()), env=script_env(sandbox))
    assert run.failed(75, "transient")["provider_code"] == 1302
    assert not run.events("submitted")


def test_wrong_keys_are_permanent(sandbox: SandboxProcess, frame: Path, tmp_path: Path) -> None:
    env = script_env(sandbox, KLING_SECRET_KEY="sk_" + "f" * 40)
    run = run_script("generate_video", *_args(frame, tmp_path / "x.mp4", _ext()), env=env)
    error = run.failed(1, "permanent")
    assert error["provider_code"] in (1000, 1002)
    assert "KLING_SECRET_KEY" in error["message"]
    assert "f" * 40 not in run.stdout + run.stderr


def test_waiting_past_the_timeout_is_transient_and_names_the_job(
    sandbox: SandboxProcess, cheap: None, frame: Path, tmp_path: Path
) -> None:
    before = sandbox.get("/_sandbox/config")["kling_seconds"]
    sandbox.configure(kling_seconds=600)  # ten seconds in the sandbox: far beyond the script's timeout
    try:
        args = [*_args(frame, tmp_path / "x.mp4", _ext()), "--timeout", "0.5"]
        run = run_script("generate_video", *args, env=script_env(sandbox))
    finally:
        sandbox.configure(kling_seconds=before)
    job = run.events("submitted")[0]["job_id"]
    assert f"--resume-job {job}" in run.failed(75, "transient")["message"]


def test_missing_arguments_for_a_new_submit(sandbox: SandboxProcess, frame: Path, tmp_path: Path) -> None:
    run = run_script("generate_video", "--image", frame, "--prompt", "p", "--duration", "5",
                     "--output", tmp_path / "x.mp4", env=script_env(sandbox))  # fmt: skip
    assert "--external-id" in run.failed(2, "usage")["message"]


def test_every_stdout_line_is_json(sandbox: SandboxProcess, frame: Path, tmp_path: Path) -> None:
    run = run_script(
        "generate_video", "--duration", "7", "--output", tmp_path / "x.mp4", env=script_env(sandbox)
    )
    assert parse_lines(run.stdout) == run.lines
    run.failed(2, "usage")


@pytest.mark.parametrize(("spoken", "clip"), [(3.0, 5), (4.9, 10)])
def test_auto_length_is_the_shortest_clip_that_covers_the_narrations_scene(
    sandbox: SandboxProcess, quick: None, cheap: None, frame: Path, tmp_path: Path, spoken: float, clip: int
) -> None:
    """3 s of words make a 3.9 s scene: a 5 s clip. 4.9 s make 5.8 s, more than a 5 s clip slowed
    unseen (x1.15) covers: a 10 s clip."""
    narration = tmp_path / "narration.mp3"
    subprocess.run(
        [FFMPEG, "-v", "error", "-f", "lavfi", "-i", f"sine=frequency=300:duration={spoken}", str(narration)],
        check=True,
    )
    ext = _ext()
    args = [a if a != "5" else "auto" for a in _args(frame, tmp_path / "clip.mp4", ext)]
    result = run_script("generate_video", *args, "--narration", narration, env=script_env(sandbox)).result
    assert video_info(tmp_path / "clip.mp4").duration == pytest.approx(clip, abs=0.3)
    assert result["meta"]["units"] == (1 if clip == 5 else 2)


def test_auto_length_without_a_narration_is_a_usage_error(
    sandbox: SandboxProcess, frame: Path, tmp_path: Path
) -> None:
    args = [a if a != "5" else "auto" for a in _args(frame, tmp_path / "clip.mp4", _ext())]
    failed = run_script("generate_video", *args, env=script_env(sandbox)).failed(2, "usage")
    assert "--narration" in failed["message"]
