"""`python -m daemon demo` as a newcomer runs it: a finished MP4, a Ready page, audible speech in
every scene's narration window with the sound bed between words, music ducked under the voice,
captions for every scene, and a resumed second run; beside a daemon on the default HTTP port, the
demo listens on a port of its own and says where."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select

from daemon.db.engine import make_engine
from daemon.db.models import Attempt, Item
from daemon.settings import DEFAULT_HTTP_PORT
from tests.support.demo_run import SHARED_DEMO, DemoRun
from tests.support.media import (
    decode_audio,
    frozen_runs,
    keyframe_times,
    loudness,
    rms_dbfs,
    srt_cues,
    subtitle_tracks,
    video_info,
)
from tests.support.sandbox_proc import SandboxProcess


@SHARED_DEMO
@pytest.mark.timeout(420)  # the shared demo run (about a minute alone, minutes beside the suite) and more
def test_the_demo_makes_a_video_with_speech_in_every_scene_and_resumes(demo: DemoRun) -> None:
    done = demo.first
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    video = Path(lines[-1])
    assert video.suffix == ".mp4"
    assert video.is_file()
    assert "review gates are approved automatically in demo mode" in done.stdout
    assert any(line.startswith("Notion page: Status Published") and "$" in line for line in lines)
    # A progress view a person reads: each Status the page takes, each step's count when it is done,
    # each review approved for them; the daemon's JSON log in the file it names, none on the terminal.
    for status in STATUSES:
        assert any(line.endswith(f"] {status}") for line in lines), status
    assert any("]   video clips 4/4 done ·" in line for line in lines)
    approved = [line.split("] ", 1)[1].strip() for line in lines if "review: approved automatically" in line]
    assert approved == [f"{gate} review: approved automatically (demo mode)" for gate in GATES_ON]
    assert not [line for line in (done.stdout + done.stderr).splitlines() if line.lstrip().startswith("{")]
    assert "\x1b" not in done.stdout  # not a terminal: no redraws
    logged = [json.loads(line) for line in demo.log.read_text().splitlines()]
    assert {"daemon_started", "daemon_stopped"} <= {event["event"] for event in logged}
    assert f"the daemon's log is in {demo.log}" in done.stdout
    # Its metrics on a port of its own: the default one (8080) is held, as a daemon on the host would.
    said = "demo: the daemon's metrics, while it runs: http://127.0.0.1:"
    metrics = next(line for line in lines if line.startswith(said))
    port = int(metrics[len(said) :].split("/", 1)[0])
    assert port != DEFAULT_HTTP_PORT and metrics.endswith(
        f"/metrics (health: http://127.0.0.1:{port}/healthz)"
    )

    info = video_info(video)
    assert (info.width, info.height, info.video_codec, info.audio_codec) == (1920, 1080, "h264", "aac")
    meta = asyncio.run(_assembly_result(demo.database))
    timeline = meta["timeline"]
    assert len(timeline) == 4
    # Heard roughly as a listener does (the lows count for less: K-weighting's shape).
    audio = decode_audio(video, band=K_WEIGHTED)
    silence = -60.0
    for scene in timeline:
        speech = rms_dbfs(audio, scene["narration_start_s"] + 0.2, scene["narration_end_s"] - 0.1)
        assert speech > -30, scene
        # After the words: the ambience bed and the music coming back up, under the voice.
        bed = rms_dbfs(audio, scene["narration_end_s"] + 0.05, scene["end_s"] - 0.02)
        assert silence < bed < speech - 4, (scene, bed, speech)

    # Music under every scene, ducked while the voice speaks. The sandbox's music carries its bass
    # below 70 Hz, where neither the voice nor the (low-cut) ambience reaches: there the final cut
    # is the music alone, so against the music file it shows the gain the music was given and, under
    # the words, the ducking on top.
    music = Path(meta["music"])
    assert music.is_file() and music.parent.name == "music"
    bass, source = decode_audio(video, band=BASS), decode_audio(music, band=BASS)
    undocked = meta["music_gain_db"] + meta["gain_db"]
    for scene in timeline:
        words = (scene["narration_start_s"] + 0.2, scene["narration_end_s"] - 0.1)
        heard = rms_dbfs(bass, *words)
        assert heard > -50, scene  # present
        ducked = undocked - (heard - rms_dbfs(source, *words))
        assert ducked >= meta["levels"]["duck_db"] - 3, (scene, ducked)  # lower while the voice speaks

    # Captions from the voice's own timing: a subtitle track, and the .srt beside the video with
    # every scene's words inside that scene, from its narration's start to its end.
    assert subtitle_tracks(video) == ["mov_text eng"]
    cues = srt_cues(video.with_name(video.name + ".srt"))
    for scene in timeline:
        inside = [c for c in cues if scene["start_s"] <= c[0] < scene["end_s"]]
        assert inside, (scene, cues)
        assert all(c[1] <= scene["end_s"] + 0.01 for c in inside), (scene, inside)
        assert inside[0][0] <= scene["start_s"] + 1.0  # the first words come with the narration

    # No frozen picture: no run of 4 identical frames anywhere. (The beds across each cut are
    # measured in test_scripts_assemble on steady noise: the sandbox's sparse ambience varies too
    # much in 20 ms windows to tell a dip from its own quiet moments.)
    assert frozen_runs(video) == []

    # The thumbnail beside the video, as YouTube takes it; the demo's channel asks for a title card
    # and a 25 s floor (an end card makes up the difference).
    with Image.open(video.with_name(video.name + ".thumbnail.jpg")) as thumbnail:
        assert (thumbnail.format, thumbnail.size) == ("JPEG", (1280, 720))
    assert video.with_name(video.name + ".thumbnail.jpg").stat().st_size < 2 * 1024 * 1024
    assert meta["title_card"] is True and info.duration >= 25.0 - 0.05
    assert meta["end_card_s"] > 0

    # Loudness exact after encoding, and a keyframe at least every half second.
    integrated, peak = loudness(video)
    assert integrated == pytest.approx(-14.0, abs=0.5)
    assert peak <= -1.0
    keys = keyframe_times(video)
    assert max(b - a for a, b in itertools.pairwise([*keys, info.duration])) <= 0.5 + 1 / 24 + 1e-3

    # Published on the sandbox's YouTube, once, with its thumbnail and its captions attached; the
    # page's YouTube URL is that video's.
    url = next(line.split("YouTube URL ", 1)[1].split()[0] for line in lines if "YouTube URL " in line)
    sandbox = SandboxProcess(demo.state).start()
    try:
        videos = [v for v in sandbox.get("/_sandbox/youtube/videos")["videos"] if v["complete"]]
    finally:
        sandbox.stop()
    assert [v["id"] for v in videos] == [url.rsplit("=", 1)[1]]
    published = videos[0]
    assert published["size"] == video.stat().st_size
    assert (
        published["thumbnail"]
        == hashlib.sha256(video.with_name(video.name + ".thumbnail.jpg").read_bytes()).hexdigest()
    )
    assert [(c["language"], c["name"]) for c in published["captions"]] == [("en", "English")]
    assert published["status"]["privacyStatus"] == "public"

    again = demo.again()
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.strip().splitlines()[-1] == str(video)  # the same project, not a new one


# The Statuses the demo's page takes for seconds at least, as the progress view says them (Uploading
# may last less than the view's half-second look, on the sandbox's YouTube).
STATUSES = ("Planning", "Generating Assets", "Generating Video", "Assembling", "Published")
GATES_ON = ("storyboard", "final")  # the demo channel's reviews (its assets review is off)
K_WEIGHTED = "highpass=f=60,highshelf=f=1500:g=4"
BASS = "lowpass=f=70,lowpass=f=70"


async def _assembly_result(db: Path) -> dict[str, Any]:
    engine = make_engine(f"sqlite+aiosqlite:///{db}")
    try:
        async with engine.connect() as conn:
            usage = await conn.scalar(
                select(Attempt.usage)
                .join(Item, Item.id == Attempt.item_id)
                .where(Item.kind == "assembly", Attempt.outcome == "succeeded")
            )
    finally:
        await engine.dispose()
    assert usage is not None
    return dict(usage)
