"""The sandbox's ElevenLabs: real speech, ambience beds of the asked length, limits and errors."""

from __future__ import annotations

import array
import base64
import itertools
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.media import RATE, audio_duration, decode_audio, rms_dbfs, stream_lines
from tests.support.sandbox_proc import SandboxProcess

VOICE = "JBFqnCBsd6RMkjVDRZzb"
SHORT = "At first light the delta belongs to the patient."
LONG = SHORT + " The heron waits in the reeds, still as the water, until the fish forget it is there."


def _key(sandbox: SandboxProcess) -> str:
    return str(json.loads((sandbox.state_dir / "credentials.json").read_text())["elevenlabs_api_key"])


def _post(
    sandbox: SandboxProcess, path: str, body: dict[str, Any], trace: str | None = None, **params: str
) -> httpx.Response:
    headers = {"xi-api-key": _key(sandbox)}
    if trace:
        headers["X-Pipeline-Trace"] = trace
    return httpx.post(
        f"{sandbox.base('elevenlabs')}/v1{path}", json=body, params=params, headers=headers, timeout=60
    )


def _speak(sandbox: SandboxProcess, text: str, speed: float = 1.0) -> httpx.Response:
    body = {
        "text": text,
        "model_id": "eleven_multilingual_v2",
        "voice_settings": {"stability": 0.5, "speed": speed},
    }
    return _post(sandbox, f"/text-to-speech/{VOICE}", body, output_format="mp3_44100_128")


def _save(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# Text to speech -------------------------------------------------------------------------------------
def test_speech_is_real_audio_louder_in_words_than_in_the_pauses(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    r = _speak(sandbox, LONG)
    assert r.status_code == 200
    assert r.headers["content-type"] == "audio/mpeg"
    assert r.headers["character-cost"] == str(len(LONG))
    assert r.headers["request-id"]
    samples = decode_audio(_save(tmp_path, "speech.mp3", r.content))
    duration = len(samples) / RATE
    assert 3.0 < duration < 12.0
    speaking = rms_dbfs(samples, 0.3, duration - 0.6)
    trailing = rms_dbfs(samples, duration - 0.2, duration)
    assert speaking > -35
    assert trailing < speaking - 25


def test_longer_text_gives_longer_audio_and_speed_changes_the_duration(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    short = audio_duration(_save(tmp_path, "short.mp3", _speak(sandbox, SHORT).content))
    long = audio_duration(_save(tmp_path, "long.mp3", _speak(sandbox, LONG).content))
    assert long > short * 1.8
    slow = audio_duration(_save(tmp_path, "slow.mp3", _speak(sandbox, LONG, speed=0.7).content))
    fast = audio_duration(_save(tmp_path, "fast.mp3", _speak(sandbox, LONG, speed=1.2).content))
    assert fast < long < slow
    assert fast / slow < 0.75


def test_with_timestamps_aligns_every_character_to_the_audio(sandbox: SandboxProcess, tmp_path: Path) -> None:
    r = _post(sandbox, f"/text-to-speech/{VOICE}/with-timestamps", {"text": LONG})
    assert r.status_code == 200
    answer = r.json()
    alignment = answer["alignment"]
    assert alignment["characters"] == list(LONG)
    starts, ends = alignment["character_start_times_seconds"], alignment["character_end_times_seconds"]
    assert len(starts) == len(ends) == len(LONG)
    assert all(a <= b for a, b in zip(starts, ends, strict=True))
    assert starts == sorted(starts)
    assert answer["normalized_alignment"]["characters"] == list(LONG)
    samples = decode_audio(_save(tmp_path, "ts.mp3", base64.b64decode(answer["audio_base64"])))
    duration = len(samples) / RATE
    assert ends[-1] <= duration
    word = LONG.index("reeds")
    in_word = rms_dbfs(samples, starts[word], ends[word + 4])
    after_speech = rms_dbfs(samples, ends[-1] + 0.1, duration)
    assert in_word > after_speech + 20


@pytest.mark.parametrize(
    ("voice", "body", "status", "code"),
    [
        ("bad-voice!", {"text": "hello"}, 400, "voice_not_found"),
        (VOICE, {"text": "x" * 10_001}, 400, "max_character_limit_exceeded"),
        (VOICE, {"text": ""}, 422, "validation_error"),
        (VOICE, {"text": "hello", "voice_settings": {"speed": 3}}, 422, "validation_error"),
    ],
)
def test_bad_tts_requests_answer_in_the_detail_envelope(
    sandbox: SandboxProcess, voice: str, body: dict[str, Any], status: int, code: str
) -> None:
    r = _post(sandbox, f"/text-to-speech/{voice}", body)
    assert r.status_code == status
    assert r.json()["detail"]["status"] == code
    assert r.json()["detail"]["message"]


def test_the_character_limit_follows_the_model(sandbox: SandboxProcess) -> None:
    r = _post(sandbox, f"/text-to-speech/{VOICE}", {"text": "x" * 40_001, "model_id": "eleven_flash_v2_5"})
    assert (r.status_code, r.json()["detail"]["status"]) == (400, "max_character_limit_exceeded")
    assert "40000" in r.json()["detail"]["message"]


def test_wrong_key_and_injected_faults_use_the_detail_envelope(sandbox: SandboxProcess) -> None:
    r = httpx.post(
        f"{sandbox.base('elevenlabs')}/v1/sound-generation", json={"text": "x"}, headers={"xi-api-key": "no"}
    )
    assert (r.status_code, r.json()["detail"]["status"]) == (401, "invalid_api_key")

    sandbox.fault(provider="elevenlabs", status=401, code="quota_exceeded", count=1)
    r = _speak(sandbox, SHORT)
    assert (r.status_code, r.json()["detail"]["status"]) == (401, "quota_exceeded")

    sandbox.fault(provider="elevenlabs", status=429, code="system_busy", retry_after=1.5, count=1)
    r = _speak(sandbox, SHORT)
    assert (r.status_code, r.json()["detail"]["status"]) == (429, "system_busy")
    assert r.headers["retry-after-ms"] == "1500"

    sandbox.fault(provider="elevenlabs", status=429, count=1)
    r = _speak(sandbox, SHORT)
    assert (r.status_code, r.json()["detail"]["status"]) == (429, "too_many_concurrent_requests")


def test_requests_over_the_concurrency_limit_are_429(fresh_sandbox: SandboxProcess) -> None:
    fresh_sandbox.configure(elevenlabs_concurrency=2, tts_seconds=90)  # 1.5 s each
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: _speak(fresh_sandbox, SHORT), range(4)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 200, 429, 429]
    refused = next(a for a in answers if a.status_code == 429)
    assert refused.json()["detail"]["status"] == "too_many_concurrent_requests"
    assert fresh_sandbox.stats()["elevenlabs"]["max_concurrency"] >= 2


# Sound generation -----------------------------------------------------------------------------------
@pytest.mark.parametrize("seconds", [0.5, 7.3, 30.0])
def test_sound_effects_last_the_asked_duration_and_are_calm_but_audible(
    sandbox: SandboxProcess, tmp_path: Path, seconds: float
) -> None:
    body = {"text": "Dawn river ambience, gentle water lapping, distant birds", "duration_seconds": seconds}
    r = _post(sandbox, "/sound-generation", body, output_format="mp3_44100_128")
    assert r.status_code == 200
    assert r.headers["content-type"] == "audio/mpeg"
    samples = decode_audio(_save(tmp_path, "sfx.mp3", r.content))
    assert len(samples) / RATE == pytest.approx(seconds, abs=0.15)
    level = rms_dbfs(samples)
    assert -45 < level < -12
    peak = max(abs(s) for s in samples) / 32768
    assert peak < 0.9


def test_sound_effects_without_duration_pick_about_five_seconds(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    r = _post(sandbox, "/sound-generation", {"text": "wind in tall grass", "duration_seconds": None})
    assert audio_duration(_save(tmp_path, "auto.mp3", r.content)) == pytest.approx(5.0, abs=0.15)


def test_different_prompts_make_different_beds(sandbox: SandboxProcess, tmp_path: Path) -> None:
    rain = decode_audio(
        _save(tmp_path, "a.mp3", _post(sandbox, "/sound-generation", {"text": "heavy rain"}).content)
    )
    calm = decode_audio(
        _save(tmp_path, "b.mp3", _post(sandbox, "/sound-generation", {"text": "still cave"}).content)
    )
    assert rain.tobytes() != calm.tobytes()
    # Rain adds high-frequency noise: its signal changes sign far more often.
    assert _zero_crossings(rain) > 1.5 * _zero_crossings(calm)


def _zero_crossings(samples: array.array[int]) -> float:
    return sum((a < 0) != (b < 0) for a, b in itertools.pairwise(samples)) / len(samples)


def test_pcm_output_has_the_exact_number_of_samples(sandbox: SandboxProcess) -> None:
    r = _post(
        sandbox, "/sound-generation", {"text": "birds", "duration_seconds": 2.0}, output_format="pcm_16000"
    )
    assert r.status_code == 200
    assert len(r.content) == 2 * 16000 * 2


@pytest.mark.parametrize(
    "body",
    [
        {"text": "rain", "duration_seconds": 31},
        {"text": "rain", "duration_seconds": 0.4},
        {"text": "rain", "prompt_influence": 2},
        {"duration_seconds": 3},
    ],
)
def test_bad_sound_requests_are_422(sandbox: SandboxProcess, body: dict[str, Any]) -> None:
    r = _post(sandbox, "/sound-generation", body)
    assert (r.status_code, r.json()["detail"]["status"]) == (422, "validation_error")


def test_calls_are_logged_with_the_trace(sandbox: SandboxProcess) -> None:
    before = len(sandbox.calls("elevenlabs"))
    _post(
        sandbox, "/sound-generation", {"text": "brook", "duration_seconds": 1}, trace="generate_sfx/sfx_s01"
    )
    _post(sandbox, f"/text-to-speech/{VOICE}", {"text": SHORT}, trace="generate_audio/narration_s01")
    calls = sandbox.calls("elevenlabs")[before:]
    assert [(c["client"], c["item"], c["status"]) for c in calls] == [
        ("generate_sfx", "sfx_s01", 200),
        ("generate_audio", "narration_s01", 200),
    ]
    assert all(c["identity"] for c in calls)
    assert calls[0]["usage"]["credits"] == 40
    assert calls[1]["usage"] == {**calls[1]["usage"], "characters": len(SHORT), "credits": len(SHORT)}


# Music ----------------------------------------------------------------------------------------------
def test_music_lasts_the_asked_length_in_stereo_with_a_bass_under_the_voices_range(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    body = {
        "prompt": "Tense instrumental background music",
        "music_length_ms": 8_000,
        "force_instrumental": True,
    }
    r = _post(sandbox, "/music", body, output_format="mp3_44100_128")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg"
    path = _save(tmp_path, "music.mp3", r.content)
    assert audio_duration(path) == pytest.approx(8.0, abs=0.15)
    assert "stereo" in " ".join(stream_lines(path))
    # The bass (below 70 Hz, under any voice) carries the tune; the piece is not silence.
    assert rms_dbfs(decode_audio(path, band="lowpass=f=70,lowpass=f=70"), 2, 6) > -30
    other = _post(sandbox, "/music", {**body, "prompt": "Playful instrumental music"})
    assert other.content != r.content  # the prompt makes the piece


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"prompt": "calm", "music_length_ms": 2_000}, 422, "validation_error"),
        ({"prompt": "calm", "music_length_ms": 300_001}, 422, "validation_error"),
        ({"music_length_ms": 5_000}, 422, "validation_error"),
        ({"prompt": "piano in the style of someone famous", "music_length_ms": 5_000}, 400, "bad_prompt"),
    ],
)
def test_bad_music_requests_answer_in_the_detail_envelope(
    sandbox: SandboxProcess, body: dict[str, object], status: int, code: str
) -> None:
    r = _post(sandbox, "/music", body)
    assert r.status_code == status and r.json()["detail"]["status"] == code
