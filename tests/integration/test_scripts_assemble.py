"""assemble_video.py on media made here: lengths follow the narration, the bed stays under it."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from tests.integration.test_scripts_support import local_env, run_script
from tests.support.media import (
    FFMPEG,
    decode_audio,
    frame_at,
    frame_types,
    frozen_runs,
    keyframe_times,
    loudness,
    moov_before_mdat,
    rms_dbfs,
    srt_cues,
    stream_lines,
    subtitle_tracks,
    video_info,
)

# (clip seconds, clip size, narration seconds): a clip longer than its narration (trimmed), one
# shorter (last frame held) and one in 4:3 (letterboxed).
SCENES = [(5, "1280x720", 3.0), (5, "1280x720", 6.5), (5, "640x480", 2.0)]


def _ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, Path, Path]]:
    folder = tmp_path_factory.mktemp("assemble")
    scenes = []
    for i, (clip_s, size, narration_s) in enumerate(SCENES, start=1):
        clip, narration, sfx = folder / f"clip{i}.mp4", folder / f"narration{i}.mp3", folder / f"sfx{i}.mp3"
        _ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate=24", "-t", str(clip_s),
                "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(clip))  # fmt: skip
        # A voice-like tone, pulsed like words; then a 2 s ambience bed (looped by the assembly).
        _ffmpeg("-f", "lavfi", "-i", f"sine=frequency={180 + 40 * i}:duration={narration_s}",
                "-af", "volume=0.6,tremolo=f=3:d=0.5", "-c:a", "libmp3lame", str(narration))  # fmt: skip
        # Seeded: the same bed every run (unseeded noise made the level margin vary from run to run).
        _ffmpeg("-f", "lavfi", "-i", f"anoisesrc=d=2:c=pink:a=0.5:seed={i}", "-c:a", "libmp3lame", str(sfx))
        scenes.append((clip, narration, sfx))
    return scenes


def _scene_args(media: list[tuple[Path, Path, Path]]) -> list[object]:
    args: list[object] = []
    for clip, narration, sfx in media:
        args += ["--scene", clip, narration, sfx]
    return args


@pytest.mark.slow
def test_final_cut(media: list[tuple[Path, Path, Path]], tmp_path: Path) -> None:
    output = tmp_path / "final" / "video.mp4"
    run = run_script("assemble_video", *_scene_args(media), "--output", output, env=local_env())
    result = run.result
    meta = result["meta"]
    assert (result["provider"], result["cost_usd"]) == ("local", 0)
    assert meta["scenes"] == 3
    # Each scene: a 0.4 s crossfade (the narration waits it out; the first one the 0.5 s fade from
    # black), the narration, a 0.4 s tail (the last one then fades to black over 0.5 s); the
    # scenes overlap by the crossfade.
    expected = sum(n for _, _, n in SCENES) + (0.5 + 0.4) + (0.4 + 0.4) + (0.4 + 0.9) - 2 * 0.4
    assert meta["duration_s"] == pytest.approx(expected, abs=0.15)
    assert (meta["crossfade_s"], meta["fade_s"]) == (pytest.approx(0.4, abs=0.03), 0.5)

    info = video_info(output)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert (info.width, info.height) == (1920, 1080)
    assert info.duration == pytest.approx(expected, abs=0.3)
    assert moov_before_mdat(output)
    samples = decode_audio(output)
    assert len(samples) / 16000 == pytest.approx(expected, abs=0.3)

    timeline = meta["timeline"]
    for n, scene in enumerate(timeline):
        speech = rms_dbfs(samples, scene["narration_start_s"] + 0.1, scene["narration_end_s"] - 0.1)
        # The bed alone: after the words, before the next scene's narration (or the fade out).
        until = timeline[n + 1]["narration_start_s"] if n + 1 < len(timeline) else scene["end_s"] - 0.5
        tail = rms_dbfs(samples, scene["narration_end_s"] + 0.08, until - 0.02)
        assert speech > tail + 10, (scene, speech, tail)  # the narration stays clearly above the bed
        assert tail > -60, scene  # but the bed is there
    # Across each cut the beds crossfade: no dip in 20 ms windows over the transition.
    for before, after in itertools.pairwise(timeline):
        start, end = (
            max(before["narration_end_s"] + 0.05, after["start_s"]),
            after["narration_start_s"] - 0.02,
        )
        levels = [
            rms_dbfs(samples, t / 100, t / 100 + 0.02) for t in range(int(start * 100), int(end * 100) - 1)
        ]
        assert len(levels) >= 10 and min(levels) > sorted(levels)[len(levels) // 2] - 6, (after, levels)
    # A clip shorter than its scene (scene 2: 5 s for 6.5 s of words) plays slower, never stops on a
    # frozen frame: no run of 4 identical frames anywhere (the fades change every frame).
    assert set(meta["slowed"]) == {"2"} and 1.0 < meta["slowed"]["2"] <= 1.5
    assert meta["held_s"] == {}
    assert frozen_runs(output) == []
    # From black and silence at the start, to them at the end.
    assert rms_dbfs(samples, 0.0, 0.05) < rms_dbfs(samples, 0.6, 0.9) - 15
    assert rms_dbfs(samples, info.duration - 0.05, info.duration) < tail - 15
    assert _mean_luma(frame_at(output, 0.0, tmp_path / "first.png")) < 12
    assert _mean_luma(frame_at(output, 1.0, tmp_path / "second.png")) > 40
    assert [s["end_s"] for s in meta["timeline"]][-1] == pytest.approx(meta["duration_s"])
    # No words beside these narrations: no captions; a thumbnail from the strongest clip frame.
    thumb = output.with_name("video.mp4.thumbnail.jpg")
    assert sorted(output.parent.iterdir()) == [output, thumb]
    assert meta["thumbnail"] == str(thumb) and meta["thumbnail_scene"] in (1, 2, 3)
    with Image.open(thumb) as picture:
        assert (picture.format, picture.size) == ("JPEG", (1280, 720))
    assert thumb.stat().st_size < 2 * 1024 * 1024

    # Loudness exact after encoding: -14 LUFS +-0.5, true peak at most -1 dBTP, as the result says.
    integrated, peak = loudness(output)
    assert integrated == pytest.approx(-14.0, abs=0.5)
    assert peak <= -1.0
    assert meta["loudness_in_spec"] is True
    assert (meta["loudness_lufs"], meta["true_peak_dbtp"]) == (
        pytest.approx(integrated, abs=0.11),
        pytest.approx(peak, abs=0.11),
    )
    # Encoded as YouTube advises: H.264 High in BT.709, a keyframe at least every half second, AAC-LC
    # 48 kHz stereo at 384 kb/s (the encoder's mid/side search left these plain tones at 280).
    video, audio = (line for line in stream_lines(output) if "Video:" in line or "Audio:" in line)
    assert "h264 (High)" in video and "(tv, bt709, progressive)" in video, video  # all three tags
    rate = re.search(r"aac \(LC\).*48000 Hz, stereo.* (\d+) kb/s", audio)
    assert rate is not None and int(rate[1]) >= 360, audio
    types = frame_types(output)
    assert "BB" in types and "BBB" not in types, types[:80]  # two consecutive B-frames at most
    keys = keyframe_times(output)
    assert keys[0] == 0.0
    assert max(b - a for a, b in itertools.pairwise([*keys, info.duration])) <= 0.5 + 1 / 24 + 1e-3


def test_missing_clip_is_permanent(media: list[tuple[Path, Path, Path]], tmp_path: Path) -> None:
    _, narration, sfx = media[0]
    args = ["--scene", tmp_path / "gone.mp4", narration, sfx, "--output", tmp_path / "v.mp4"]
    run = run_script("assemble_video", *args, env=local_env())
    assert "gone.mp4" in run.failed(1, "permanent")["message"]


def test_broken_narration_is_permanent_and_named(
    media: list[tuple[Path, Path, Path]], tmp_path: Path
) -> None:
    (clip, narration, sfx), (clip2, _, sfx2) = media[0], media[1]
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(b"ID3 this is not audio")
    args = ["--scene", clip, narration, sfx, "--scene", clip2, broken, sfx2]
    run = run_script("assemble_video", *args, "--output", tmp_path / "v.mp4", env=local_env())
    # Every file is measured in one FFmpeg run; the one that fails it is found and named.
    message = run.failed(1, "permanent")["message"]
    assert message.startswith("Scene 2: the narration") and "broken.mp3" in message, message
    assert not (tmp_path / "v.mp4").exists()


def test_no_scene_is_a_usage_error(tmp_path: Path) -> None:
    run_script("assemble_video", "--output", tmp_path / "v.mp4", env=local_env()).failed(2, "usage")


def _words_beside(narration: Path, words: list[tuple[str, float, float]]) -> None:
    """The sidecar generate_audio.py writes: the narration's words and when each is spoken."""
    data = {
        "text": " ".join(w for w, _, _ in words),
        "words": [{"text": w, "start": a, "end": b} for w, a, b in words],
    }
    narration.with_name(narration.name + ".words.json").write_text(json.dumps(data))


def _mean_luma(frame: Path) -> float:
    with Image.open(frame) as image:
        return float(ImageStat.Stat(image.convert("L")).mean[0])


def _caption_rows(frame: Path) -> tuple[float, float]:
    """How much of the lower third and of the upper third is near-white (caption text)."""
    with Image.open(frame) as image:
        grey = image.convert("L")
        width, height = grey.size
        pixels = grey.load()
        assert pixels is not None

        def white(top: int, bottom: int) -> float:
            hits = sum(1 for y in range(top, bottom) for x in range(width) if pixels[x, y] > 235)
            return hits / ((bottom - top) * width)

        return white(2 * height // 3, height), white(0, height // 3)


def test_captions_are_burned_in_muxed_and_written_beside_the_video(
    media: list[tuple[Path, Path, Path]], tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    scenes: list[object] = []
    spoken = [
        [
            ("At", 0.30, 0.50),
            ("first", 0.55, 0.90),
            ("light", 0.95, 1.30),
            ("the", 1.35, 1.50),
            ("river", 1.55, 2.00),
            ("wakes.", 2.05, 2.80),
        ],
        [
            ("Herons", 0.20, 0.80),
            ("wait", 0.85, 1.20),
            ("in", 1.25, 1.35),
            ("the", 1.40, 1.50),
            ("reeds.", 1.55, 1.90),
        ],
    ]
    for (clip, narration, sfx), words in zip(media[:2], spoken, strict=True):
        copy = folder / narration.name
        copy.write_bytes(narration.read_bytes())
        _words_beside(copy, words)
        scenes += ["--scene", clip, copy, sfx]
    small = ["--width", "640", "--height", "360"]
    output = tmp_path / "final" / "video.mp4"
    meta = run_script("assemble_video", *scenes, *small, "--output", output, env=local_env()).result["meta"]
    assert (meta["captions"], meta["captions_burned"], meta["scenes_without_words"]) == (2, True, [])

    # The .srt beside the video: each cue inside its scene's speech, on the cut's timeline.
    times = srt_cues(tmp_path / "final" / "video.mp4.srt")
    first, second = meta["timeline"][0], meta["timeline"][1]
    assert [t for _, _, t in times] == ["At first light the river wakes.", "Herons wait in the reeds."]
    assert times[0][0] == pytest.approx(first["narration_start_s"] + 0.30, abs=0.01)
    assert times[0][1] <= times[1][0]
    assert times[1][0] == pytest.approx(second["narration_start_s"] + 0.20, abs=0.01)
    assert times[1][1] <= second["end_s"] + 0.01

    # A soft subtitle track in the MP4, in English.
    assert subtitle_tracks(output) == ["mov_text eng"]

    # Burned in: white text in the lower third while a cue shows, none before it, none up top.
    during = _caption_rows(frame_at(output, times[0][0] + 1.0, tmp_path / "during.png"))
    before = _caption_rows(frame_at(output, 0.1, tmp_path / "before.png"))
    assert during[0] > before[0] + 0.003, (during, before)
    assert during[1] == pytest.approx(before[1], abs=0.003)

    # The channel's weight: the same cue in Source Sans Pro Black carries more white than in Regular.
    ink = {}
    for weight in ("regular", "black"):
        out = tmp_path / weight / "video.mp4"
        args = [*scenes[:4], *small, "--caption-weight", weight, "--output", out]
        run_script("assemble_video", *args, env=local_env())
        ink[weight] = _caption_rows(frame_at(out, times[0][0] + 1.0, tmp_path / f"{weight}.png"))[0]
    assert ink["black"] > ink["regular"] * 1.2, ink


def test_a_clip_much_shorter_than_its_narration_is_slowed_then_held_and_still_has_a_thumbnail(
    tmp_path: Path,
) -> None:
    """Regression: the thumbnail's frame was taken at the narration's middle, past the end of a
    short clip, and the assembly crashed."""
    clip, narration, sfx = tmp_path / "c.mp4", tmp_path / "n.mp3", tmp_path / "s.mp3"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=24", "-t", "3", "-c:v", "libx264",
            "-pix_fmt", "yuv420p", str(clip))  # fmt: skip
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=200:duration=5", "-c:a", "libmp3lame", str(narration))
    _ffmpeg("-f", "lavfi", "-i", "anoisesrc=d=2:c=pink:a=0.3:seed=3", "-c:a", "libmp3lame", str(sfx))
    output = tmp_path / "out" / "v.mp4"
    args = ["--scene", clip, narration, sfx, "--output", output, "--width", "320", "--height", "180"]
    meta = run_script("assemble_video", *args, "--max-slowdown", "1.2", env=local_env()).result["meta"]
    assert meta["slowed"] == {"1": 1.2}
    held = meta["held_s"]["1"]
    assert held == pytest.approx(meta["timeline"][0]["end_s"] - 3.0 * 1.2, abs=0.05)
    # The only frozen run is the part the result tells of, until the fade to black (0.5 s) moves it.
    ((_, seconds),) = frozen_runs(output)
    assert seconds == pytest.approx(held - 0.5, abs=0.1)
    assert meta["thumbnail_scene"] == 1 and output.with_name("v.mp4.thumbnail.jpg").is_file()


def test_each_bed_is_brought_to_its_level_under_the_voice(
    media: list[tuple[Path, Path, Path]], tmp_path: Path
) -> None:
    """A bed 26 dB quieter than another comes out as loud: each is measured and normalised first,
    to the channel's level under the voice (ambience_lu)."""
    clip, narration, loud_bed = media[0]
    quiet_bed = tmp_path / "quiet.mp3"
    _ffmpeg("-f", "lavfi", "-i", "anoisesrc=d=2:c=pink:a=0.025:seed=7", "-c:a", "libmp3lame", str(quiet_bed))
    under: dict[tuple[str, str], float] = {}
    for level, bed in itertools.product(("-12", "-24"), (loud_bed, quiet_bed)):
        output = tmp_path / f"v{level}{bed.stem}.mp4"
        # A small picture: this is about the sound, and it keeps the test quick.
        args = ["--scene", clip, narration, bed, "--output", output, "--ambience-lu", level]
        meta = run_script(
            "assemble_video", *args, "--width", "320", "--height", "180", env=local_env()
        ).result["meta"]
        scene = meta["timeline"][0]
        samples = decode_audio(output)
        speech = rms_dbfs(samples, scene["narration_start_s"] + 0.1, scene["narration_end_s"] - 0.1)
        bed_alone = rms_dbfs(samples, scene["narration_end_s"] + 0.08, scene["end_s"] - 0.55)
        under[level, bed.stem] = speech - bed_alone
    for level in ("-12", "-24"):
        assert under[level, loud_bed.stem] == pytest.approx(under[level, quiet_bed.stem], abs=2.5), under
    assert under["-24", quiet_bed.stem] - under["-12", quiet_bed.stem] == pytest.approx(12, abs=3), under


def test_music_is_looped_under_the_cut_and_ducked_while_the_voice_speaks(
    media: list[tuple[Path, Path, Path]], tmp_path: Path
) -> None:
    """The music (a 55 Hz tone here, below the voice and the bed, so a low-pass hears it alone)
    dips by about duck_db under the words and comes back between them; a 2 s track is looped to
    the cut's length; the cut still meets its loudness."""
    clip = media[0][0]
    narration, bed, music = tmp_path / "words.mp3", tmp_path / "bed.mp3", tmp_path / "music.mp3"
    # Words for 1.5 s, a 2 s pause, words for 1.5 s.
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=600:duration=1.5", "-f", "lavfi", "-i",
            "anullsrc=r=44100:cl=mono:d=2", "-f", "lavfi", "-i", "sine=frequency=700:duration=1.5",
            "-filter_complex", "[0:a][1:a][2:a]concat=n=3:v=0:a=1,volume=0.6", "-c:a", "libmp3lame",
            str(narration))  # fmt: skip
    _ffmpeg("-f", "lavfi", "-i", "anoisesrc=d=2:c=white:a=0.3:seed=3,highpass=f=2000",
            "-c:a", "libmp3lame", str(bed))  # fmt: skip
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=55:duration=2", "-c:a", "libmp3lame", str(music))
    output = tmp_path / "music.mp4"
    args = ["--scene", clip, narration, bed, "--music", music, "--output", output]
    meta = run_script("assemble_video", *args, "--width", "320", "--height", "180", env=local_env()).result[
        "meta"
    ]
    assert meta["music"] == str(music) and meta["levels"]["duck_db"] == 6.0
    start = meta["timeline"][0]["narration_start_s"]
    bass = decode_audio(output, band="lowpass=f=120,lowpass=f=120")
    speaking = rms_dbfs(bass, start + 0.4, start + 1.4)
    pause = rms_dbfs(bass, start + 2.1, start + 3.4)  # the track's second time round
    assert pause > -45, (speaking, pause)  # the music is there
    # Ducked under the words: by about duck_db (a steady tone keys the compressor a little harder
    # than speech, whose level it is set for).
    assert 6 - 3 <= pause - speaking <= 6 + 5, (speaking, pause)
    integrated, peak = loudness(output)
    assert integrated == pytest.approx(-14.0, abs=0.5) and peak <= -1.0


def test_a_title_over_the_opening_and_an_end_card_up_to_the_length_floor(
    media: list[tuple[Path, Path, Path]], tmp_path: Path
) -> None:
    """--title-card draws the title over the opening's upper third; --min-length 12 lengthens a
    5 s cut with an end card (the strongest frame blurred, with the text), which moves (no frozen
    run) and fades to black at the end."""
    small = ["--width", "640", "--height", "360", "--title", "The Heron's Patience"]
    plain_out, dressed_out = tmp_path / "plain.mp4", tmp_path / "dressed.mp4"
    run_script("assemble_video", "--scene", *media[0], "--output", plain_out, *small, env=local_env())
    args = ["--scene", *media[0], "--output", dressed_out, *small, "--title-card", "--min-length", "12"]
    meta = run_script("assemble_video", *args, "--outro-text", "Thanks for watching", env=local_env()).result[
        "meta"
    ]
    assert meta["title_card"] is True
    info = video_info(dressed_out)
    assert info.duration == pytest.approx(12.0, abs=0.1) and meta["duration_s"] >= 12.0
    assert meta["end_card_s"] == pytest.approx(12.0 - 3.9, abs=0.1)  # 0.5 lead, 3 s of words, 0.4 tail
    # The title: in the upper third at 1.5 s, against the same moment without it.
    with_title = Image.open(frame_at(dressed_out, 1.5, tmp_path / "t.png")).convert("L")
    without = Image.open(frame_at(plain_out, 1.5, tmp_path / "p.png")).convert("L")
    upper, lower = (0, 60, 640, 150), (0, 240, 640, 300)
    assert _difference(with_title, without, upper) > 4 * _difference(with_title, without, lower) + 2
    # The end card: blurred (far fewer edges than the scene's clip), moving, then black.
    card = Image.open(frame_at(dressed_out, 9.0, tmp_path / "card.png"))
    scene = Image.open(frame_at(dressed_out, 2.0, tmp_path / "scene.png"))
    assert _edges(card) < _edges(scene) / 2
    assert frozen_runs(dressed_out) == []
    darkening = _mean_luma(frame_at(dressed_out, info.duration - 0.06, tmp_path / "last.png"))
    assert darkening < _mean_luma(tmp_path / "card.png") / 4
    integrated, peak = loudness(dressed_out)
    assert integrated == pytest.approx(-14.0, abs=0.5) and peak <= -1.0


def _difference(a: Image.Image, b: Image.Image, box: tuple[int, int, int, int]) -> float:
    from PIL import ImageChops

    return float(ImageStat.Stat(ImageChops.difference(a.crop(box), b.crop(box))).mean[0])


def _edges(picture: Image.Image) -> float:
    from PIL import ImageFilter

    return float(ImageStat.Stat(picture.convert("L").filter(ImageFilter.FIND_EDGES)).mean[0])
