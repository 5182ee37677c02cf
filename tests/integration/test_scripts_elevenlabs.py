"""generate_audio.py, generate_sound_effects.py and generate_music.py against the sandbox's ElevenLabs."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_scripts_support import run_script, script_env
from tests.support.media import FFMPEG, audio_duration, decode_audio, rms_dbfs
from tests.support.sandbox_proc import SandboxProcess

VOICE = "JBFqnCBsd6RMkjVDRZzb"
TEXT = "At first light the delta belongs to the patient."


@pytest.fixture(scope="module")
def fast(sandbox: SandboxProcess) -> Iterator[None]:
    """Answers at once; the shared sandbox's settings are restored."""
    before = sandbox.get("/_sandbox/config")
    sandbox.configure(tts_seconds=0.0, sfx_seconds=0.0, music_seconds=0.0)
    yield
    sandbox.configure(
        tts_seconds=before["tts_seconds"],
        sfx_seconds=before["sfx_seconds"],
        music_seconds=before["music_seconds"],
    )


def test_narration_is_speech_of_the_measured_length(
    sandbox: SandboxProcess, fast: None, tmp_path: Path
) -> None:
    output = tmp_path / "narration" / "s01.mp3"
    run = run_script(
        "generate_audio", "--text", TEXT, "--voice-id", VOICE, "--output", output, env=script_env(sandbox)
    )
    result = run.result
    meta = result["meta"]
    assert result["provider"] == "elevenlabs"
    assert meta["characters"] == len(TEXT)
    assert result["cost_usd"] == pytest.approx(len(TEXT) * 0.00018, abs=1e-6)
    duration = audio_duration(output)
    assert meta["duration_s"] == pytest.approx(duration, abs=0.1)
    assert 1.5 < duration < 8
    samples = decode_audio(output)
    words = rms_dbfs(samples, 0.3, duration - 0.5)
    silence = rms_dbfs(samples, duration - 0.2, duration)
    assert words > -40
    assert words > silence + 20
    assert sorted(p.name for p in output.parent.iterdir()) == ["s01.mp3", "s01.mp3.words.json"]
    # The words as spoken, in order, each inside the audio and after the one before.
    timing = json.loads((output.parent / "s01.mp3.words.json").read_text())
    assert timing["text"] == TEXT
    assert [w["text"] for w in timing["words"]] == TEXT.split()
    starts = [w["start"] for w in timing["words"]]
    assert starts == sorted(starts) and starts[0] > 0.0
    assert all(w["start"] < w["end"] <= duration for w in timing["words"])
    assert meta["words"] == len(TEXT.split())
    # Speech is where the words are: louder inside the first word than before it.
    first = timing["words"][0]
    assert rms_dbfs(samples, first["start"], first["end"]) > rms_dbfs(samples, 0.0, first["start"] * 0.8) + 10


def test_voice_settings_reach_the_voice(sandbox: SandboxProcess, fast: None, tmp_path: Path) -> None:
    env = script_env(sandbox)
    base = [
        "--text",
        TEXT,
        "--voice-id",
        VOICE,
        "--stability",
        "0.5",
        "--similarity-boost",
        "0.75",
        "--style",
        "0",
    ]
    slow = run_script(
        "generate_audio", *base, "--speed", "0.7", "--output", tmp_path / "slow.mp3", env=env
    ).result
    quick = run_script(
        "generate_audio", *base, "--speed", "1.2", "--output", tmp_path / "quick.mp3", env=env
    ).result
    assert slow["meta"]["duration_s"] > quick["meta"]["duration_s"] + 0.5


def test_unknown_voice_is_permanent(sandbox: SandboxProcess, fast: None, tmp_path: Path) -> None:
    args = ["--text", TEXT, "--voice-id", "nope", "--output", tmp_path / "x.mp3"]
    error = run_script("generate_audio", *args, env=script_env(sandbox)).failed(1, "permanent")
    assert error["provider_code"] == "voice_not_found"
    assert not (tmp_path / "x.mp3").exists()


def test_text_over_the_model_limit_is_permanent(sandbox: SandboxProcess, tmp_path: Path) -> None:
    args = ["--text", "word " * 2001, "--voice-id", VOICE, "--output", tmp_path / "x.mp3"]
    run_script("generate_audio", *args, env=script_env(sandbox)).failed(1, "permanent")


@pytest.mark.parametrize(
    ("status", "code", "exit_code", "kind"),
    [
        (429, "too_many_concurrent_requests", 75, "transient"),
        (429, "system_busy", 75, "transient"),
        (401, "quota_exceeded", 1, "permanent"),
        (500, None, 75, "transient"),
        (503, None, 75, "transient"),
    ],
)
def test_provider_errors(
    sandbox: SandboxProcess, tmp_path: Path, status: int, code: str | None, exit_code: int, kind: str
) -> None:
    sandbox.fault(provider="elevenlabs", status=status, code=code, count=1)
    args = ["--text", TEXT, "--voice-id", VOICE, "--output", tmp_path / "x.mp3"]
    error = run_script("generate_audio", *args, env=script_env(sandbox)).failed(exit_code, kind)
    if code:
        assert error["provider_code"] == code


def test_wrong_key_is_permanent_and_never_printed(sandbox: SandboxProcess, tmp_path: Path) -> None:
    wrong = "sk_" + "0" * 48
    args = ["--text", TEXT, "--voice-id", VOICE, "--output", tmp_path / "x.mp3"]
    run = run_script("generate_audio", *args, env=script_env(sandbox, ELEVENLABS_API_KEY=wrong))
    assert "ELEVENLABS_API_KEY" in run.failed(1, "permanent")["message"]
    assert wrong not in run.stdout + run.stderr


def test_missing_key_is_a_usage_error(sandbox: SandboxProcess, tmp_path: Path) -> None:
    args = ["--prompt", "wind", "--duration", "2", "--output", tmp_path / "x.mp3"]
    run = run_script("generate_sound_effects", *args, env=script_env(sandbox, ELEVENLABS_API_KEY=None))
    assert "ELEVENLABS_API_KEY" in run.failed(2, "usage")["message"]


def test_sound_bed_has_the_asked_length_and_price(
    sandbox: SandboxProcess, fast: None, tmp_path: Path
) -> None:
    output = tmp_path / "sfx.mp3"
    args = ["--prompt", "Dawn river ambience, gentle water lapping", "--duration", "3", "--output", output]
    result = run_script("generate_sound_effects", *args, env=script_env(sandbox)).result
    assert audio_duration(output) == pytest.approx(3.0, abs=0.15)
    assert result["meta"]["credits"] == 120
    assert result["cost_usd"] == pytest.approx(120 * 0.00018)
    assert rms_dbfs(decode_audio(output)) > -50  # not silence


@pytest.mark.parametrize("duration", ["0.4", "31", "soon"])
def test_sound_bed_duration_out_of_range_is_a_usage_error(
    sandbox: SandboxProcess, tmp_path: Path, duration: str
) -> None:
    args = ["--prompt", "wind", "--duration", duration, "--output", tmp_path / "x.mp3"]
    assert (
        "--duration"
        in run_script("generate_sound_effects", *args, env=script_env(sandbox)).failed(2, "usage")["message"]
    )


def test_sound_bed_busy_is_transient(sandbox: SandboxProcess, tmp_path: Path) -> None:
    sandbox.fault(provider="elevenlabs", status=429, code="too_many_concurrent_requests", count=1)
    args = ["--prompt", "wind", "--duration", "2", "--output", tmp_path / "x.mp3"]
    run_script("generate_sound_effects", *args, env=script_env(sandbox)).failed(75, "transient")


def test_music_has_the_asked_length_and_price_and_is_music(
    sandbox: SandboxProcess, fast: None, tmp_path: Path
) -> None:
    output = tmp_path / "music" / "bed.mp3"
    args = ["--prompt", "Calm instrumental background music, soft strings", "--duration", "12"]
    result = run_script("generate_music", *args, "--output", output, env=script_env(sandbox)).result
    assert audio_duration(output) == pytest.approx(12.0, abs=0.15)
    assert result["provider"] == "elevenlabs"
    assert result["meta"]["seconds"] == 12
    assert result["cost_usd"] == pytest.approx(12 * 0.80 / 60)  # the shipped price table's price a minute
    samples = decode_audio(output)
    assert rms_dbfs(samples, 2, 10) > -35  # not silence
    calls = [c for c in sandbox.calls("elevenlabs") if str(c["endpoint"]).endswith("/v1/music")]
    assert calls[-1]["status"] == 200 and calls[-1]["usage"]["seconds"] == 12


def test_a_refused_music_prompt_is_permanent_and_says_what_to_change(
    sandbox: SandboxProcess, fast: None, tmp_path: Path
) -> None:
    args = ["--prompt", "calm piano in the style of a famous composer", "--duration", "5"]
    failed = run_script(
        "generate_music", *args, "--output", tmp_path / "m.mp3", env=script_env(sandbox)
    ).failed(1, "permanent")
    assert "bad_prompt" in failed["message"] and "music.style" in failed["message"]
    assert not (tmp_path / "m.mp3").exists()


@pytest.mark.parametrize("duration", ["2", "301"])
def test_music_length_out_of_the_apis_range_is_a_usage_error(
    sandbox: SandboxProcess, tmp_path: Path, duration: str
) -> None:
    args = ["--prompt", "calm", "--duration", duration, "--output", tmp_path / "m.mp3"]
    failed = run_script("generate_music", *args, env=script_env(sandbox)).failed(2, "usage")
    assert "--duration" in failed["message"]


def _tone(path: Path, seconds: float) -> Path:
    subprocess.run(
        [
            FFMPEG,
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"sine=frequency=300:duration={seconds}",
            str(path),
        ],
        check=True,
    )
    return path


def test_an_auto_bed_covers_its_narrations_scene_and_loops_seamlessly(
    sandbox: SandboxProcess, fast: None, tmp_path: Path
) -> None:
    narration = _tone(tmp_path / "n.mp3", 4.0)
    output = tmp_path / "sfx.mp3"
    args = ["--prompt", "Dawn river ambience", "--duration", "auto", "--narration", narration, "--loop"]
    result = run_script("generate_sound_effects", *args, "--output", output, env=script_env(sandbox)).result
    # The words, the scene's lead-in and tail (0.9 s) and a margin: 5.2 s, priced as asked.
    assert result["meta"]["requested_duration_s"] == 5.2
    assert audio_duration(output) == pytest.approx(5.2, abs=0.15)
    assert result["meta"]["credits"] == pytest.approx(5.2 * 40)
    samples = decode_audio(output)
    # A loop has no fade: its first and last 50 ms are as loud as its middle.
    assert rms_dbfs(samples, 0.0, 0.05) > rms_dbfs(samples, 2.0, 3.0) - 10
    missing = ["--prompt", "x", "--duration", "auto", "--output", tmp_path / "m.mp3"]
    assert (
        "--narration"
        in run_script("generate_sound_effects", *missing, env=script_env(sandbox)).failed(2, "usage")[
            "message"
        ]
    )


def test_auto_music_lasts_the_narrations_scenes_with_room_for_the_ending(
    sandbox: SandboxProcess, fast: None, tmp_path: Path
) -> None:
    scenes = [_tone(tmp_path / f"n{i}.mp3", 4.0) for i in range(3)]
    args = ["--prompt", "Calm instrumental music", "--duration", "auto"]
    for narration in scenes:
        args += ["--narration", narration]
    output = tmp_path / "music.mp3"
    result = run_script("generate_music", *args, "--output", output, env=script_env(sandbox)).result
    # 3 x (4 s + 0.9 s) + 6 s, rounded up: 21 s.
    assert result["meta"]["seconds"] == 21
    assert audio_duration(output) == pytest.approx(21.0, abs=0.15)
