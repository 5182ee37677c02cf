"""upload_youtube.py as the daemon runs it (a subprocess) against the sandbox's Google OAuth and
YouTube Data API: chunks, a crash at every crash point then a rerun that ends with one video, lost
sessions, the quota day, a revoked sign-in, and no secret on stdout or stderr."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from PIL import Image

from tests.integration.test_scripts_support import Run, run_script, script_env
from tests.support.media import FFMPEG
from tests.support.sandbox_proc import SandboxProcess

CHUNK = 256 * 1024
SRT = (
    "1\n00:00:00,000 --> 00:00:02,500\nAt first light,\n\n"
    "2\n00:00:02,540 --> 00:00:04,800\nthe heron waits.\n"
)
CRASH_EXIT = 9  # scripts/_lib/crash.py


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """A sandbox of this module's own: its uploads, quota and clock are changed here without
    touching the session's; quotas wide enough for every upload below."""
    proc = SandboxProcess(tmp_path_factory.mktemp("youtube-sandbox")).start()
    proc.configure(youtube_units_per_day=1_000_000, youtube_uploads_per_day=1_000)
    yield proc
    proc.stop()


@pytest.fixture(autouse=True)
def _restore(box: SandboxProcess) -> Iterator[None]:
    before = box.get("/_sandbox/config")
    yield
    box.clear_faults()
    keys = ("youtube_units_per_day", "youtube_uploads_per_day", "youtube_clock_offset_s")
    box.configure(**{k: before[k] for k in keys})


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A real MP4 of several hundred KiB (noise does not compress), a JPEG thumbnail, SRT captions."""
    folder = tmp_path_factory.mktemp("youtube-media")
    video = folder / "final.mp4"
    subprocess.run(
        [FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", "nullsrc=s=160x120:r=12,geq=random(1)*255:128:128",
         "-t", "4", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(video)],
        check=True,
    )  # fmt: skip
    assert 2 * CHUNK < video.stat().st_size < 8 * CHUNK
    thumbnail = folder / "final.mp4.thumbnail.jpg"
    Image.new("RGB", (1280, 720), (70, 110, 90)).save(thumbnail, quality=80)
    captions = folder / "final.mp4.srt"
    captions.write_text(SRT)
    return {"video": video, "thumbnail": thumbnail, "captions": captions}


class Channel:
    """One signed-in sandbox channel (its own uploads) and the environment the daemon gives the script."""

    def __init__(self, box: SandboxProcess) -> None:
        self.box = box
        self.title = f"Channel {uuid.uuid4().hex[:8]}"
        self.refresh_token = box.post("/_sandbox/youtube/refresh-token", {"channel_title": self.title})[
            "refresh_token"
        ]
        creds = json.loads((box.state_dir / "credentials.json").read_text())
        self.client_secret = creds["youtube_client_secret"]
        self.env = script_env(
            box,
            YOUTUBE_CLIENT_ID=creds["youtube_client_id"],
            YOUTUBE_CLIENT_SECRET=self.client_secret,
            YOUTUBE_REFRESH_TOKEN=self.refresh_token,
            YOUTUBE_BASE_URL=box.base("youtube"),
            YOUTUBE_OAUTH_BASE_URL=box.base("google-oauth"),
            YOUTUBE_WATCH_URL=None,
            CRASH_AT=None,
            CRASH_ONCE=None,
        )

    def videos(self, marker: str | None = None) -> list[dict[str, Any]]:
        """The channel's videos (complete or not), those tagged with `marker` when given."""
        listed = self.box.get("/_sandbox/youtube/videos")["videos"]
        mine = [v for v in listed if v["channel"]["title"] == self.title]
        return [v for v in mine if marker is None or marker in (v["snippet"].get("tags") or [])]

    def sessions(self) -> list[dict[str, Any]]:
        ids = {v["id"] for v in self.videos()}
        return [s for s in self.box.get("/_sandbox/youtube/videos")["sessions"] if s["video_id"] in ids]


@pytest.fixture
def channel(box: SandboxProcess) -> Channel:
    return Channel(box)


def _marker() -> str:
    return "nvd-" + uuid.uuid4().hex[:12]


def _upload(
    channel: Channel, media: dict[str, Path], out: Path, marker: str, *extra: object, crash: str | None = None
) -> Run:
    """One run; whatever it ends with, neither the refresh token nor the client secret is printed."""
    env = {**channel.env, "CRASH_AT": crash} if crash else channel.env
    run = run_script(
        "upload_youtube",
        "--video", media["video"], "--title", "The Heron's Patience", "--marker", marker,
        "--description", "A grey heron fishing at dawn.", "--tag", "heron", "--tag", "nature",
        "--thumbnail", media["thumbnail"], "--captions", media["captions"],
        "--output", out, "--chunk-kib", "256", *extra,
        env=env,
    )  # fmt: skip
    for secret in (channel.refresh_token, channel.client_secret):
        assert secret not in run.stdout
        assert secret not in run.stderr
    return run


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_finished_video(channel: Channel, media: dict[str, Path], marker: str) -> dict[str, Any]:
    """Exactly one complete video for this item, with all its bytes, the thumbnail and one track."""
    complete = [v for v in channel.videos(marker) if v["complete"]]
    assert len(complete) == 1, complete
    video = complete[0]
    assert video["sha256"] == _sha(media["video"])
    assert video["thumbnail"] == _sha(media["thumbnail"])
    assert [(c["language"], c["name"], c["sha256"]) for c in video["captions"]] == [
        ("en", "English", _sha(media["captions"]))
    ]
    return video


def _quota_used(box: SandboxProcess) -> dict[str, int]:
    usage = box.get("/_sandbox/youtube/quota")["usage"]
    return {
        "uploads": sum(u["uploads"] for u in usage),
        "units": sum(u["units"] for u in usage),
    }


def test_upload_in_chunks_with_thumbnail_and_captions(
    box: SandboxProcess, channel: Channel, media: dict[str, Path], tmp_path: Path
) -> None:
    marker = _marker()
    before = _quota_used(box)
    run = _upload(channel, media, tmp_path / "upload.json", marker)
    result = run.result
    size = media["video"].stat().st_size
    events = [line["event"] for line in run.lines]
    chunks = math.ceil(size / CHUNK)
    assert events == ["submitted"] + ["progress"] * (chunks - 1) + ["result"]
    assert [p["uploaded"] for p in run.events("progress")] == [CHUNK * (i + 1) for i in range(chunks - 1)]
    assert {p["total"] for p in run.events("progress")} == {size}
    video = _one_finished_video(channel, media, marker)
    assert video["snippet"]["title"] == "The Heron's Patience"
    assert video["snippet"]["tags"] == ["heron", "nature", marker]
    assert video["status"]["privacyStatus"] == "private"
    written = json.loads((tmp_path / "upload.json").read_text())
    assert written == {
        "video_id": video["id"],
        "url": f"https://youtu.be/{video['id']}",
        "privacy_status": "private",
        "publish_at": None,
        "thumbnail": True,
        "caption_id": video["captions"][0]["id"],
    }
    assert result["output"] == str(tmp_path / "upload.json")
    assert (result["provider"], result["cost_usd"]) == ("youtube", 0)
    # What the script counted is what the sandbox charged the project.
    spent = _quota_used(box)
    assert result["meta"] == {**written, "quota": {k: spent[k] - before[k] for k in spent}}
    assert result["meta"]["quota"]["uploads"] == 1
    (session,) = channel.sessions()
    assert run.events("submitted")[0]["job_id"].endswith(f"upload_id={session['id']}")


def test_watch_url_and_a_scheduled_publish_time(
    channel: Channel, media: dict[str, Path], tmp_path: Path
) -> None:
    publish = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    env_url = f"{channel.box.url}/youtube/watch?v={{id}}"
    channel.env["YOUTUBE_WATCH_URL"] = env_url
    run = _upload(
        channel,
        media,
        tmp_path / "upload.json",
        _marker(),
        "--publish-at",
        publish.isoformat(),
        "--chunk-kib",
        "1024",
    )
    meta = run.result["meta"]
    assert meta["publish_at"] == publish.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert meta["privacy_status"] == "private"
    assert meta["url"] == env_url.replace("{id}", meta["video_id"])
    assert [line["event"] for line in run.lines] == ["submitted", "result"]  # one chunk of 1 MiB


@pytest.mark.parametrize(
    "point",
    [
        "youtube.before_session",
        "youtube.after_session",
        "youtube.mid_upload",
        "youtube.after_last_chunk",
        "youtube.before_thumbnail",
        "youtube.before_captions",
    ],
)
def test_a_crash_at_each_point_then_a_rerun_leaves_one_video(
    channel: Channel, media: dict[str, Path], tmp_path: Path, point: str
) -> None:
    marker = _marker()
    out = tmp_path / "upload.json"
    crashed = _upload(channel, media, out, marker, crash=point)
    assert crashed.code == CRASH_EXIT, crashed.stdout + crashed.stderr
    assert not out.exists()
    submitted = crashed.events("submitted")
    resume: list[str] = []
    if point == "youtube.before_session":
        assert not submitted
        assert not channel.videos(marker)
    else:
        # The session URL is out before a byte is sent: the daemon has it whatever happens next.
        assert len(submitted) == 1
        resume = ["--resume-job", submitted[0]["job_id"]]
        (session,) = channel.sessions()
        expected = {"youtube.after_session": 0, "youtube.mid_upload": CHUNK}
        assert session["received"] == expected.get(point, session["total"])

    rerun = _upload(channel, media, out, marker, *resume)
    result = rerun.result
    video = _one_finished_video(channel, media, marker)
    assert result["meta"]["video_id"] == video["id"]
    assert json.loads(out.read_text())["video_id"] == video["id"]
    assert len(channel.videos(marker)) == 1  # no second session was opened either
    assert len(rerun.events("submitted")) == (0 if resume else 1)
    if point == "youtube.mid_upload":
        assert rerun.events("progress")[0]["uploaded"] == 2 * CHUNK  # went on from the first chunk


def test_a_rerun_after_success_adds_nothing(channel: Channel, media: dict[str, Path], tmp_path: Path) -> None:
    marker = _marker()
    first = _upload(channel, media, tmp_path / "a.json", marker).result
    again = _upload(channel, media, tmp_path / "b.json", marker)  # no --resume-job: found by its marker
    assert not again.events("submitted")
    assert again.result["meta"]["video_id"] == first["meta"]["video_id"]
    assert again.result["meta"]["caption_id"] == first["meta"]["caption_id"]
    assert again.result["meta"]["quota"]["uploads"] == 0
    _one_finished_video(channel, media, marker)


def test_an_expired_incomplete_session_is_uploaded_anew_once(
    box: SandboxProcess, channel: Channel, media: dict[str, Path], tmp_path: Path
) -> None:
    marker = _marker()
    crashed = _upload(channel, media, tmp_path / "upload.json", marker, crash="youtube.mid_upload")
    job = crashed.events("submitted")[0]["job_id"]
    box.configure(youtube_clock_offset_s=2 * 86_400)  # sessions live a day
    rerun = _upload(channel, media, tmp_path / "upload.json", marker, "--resume-job", job)
    result = rerun.result
    assert [line["event"] for line in rerun.lines][:2] == ["warning", "submitted"]
    assert rerun.events("submitted")[0]["job_id"] != job
    assert result["meta"]["quota"]["uploads"] == 1
    video = _one_finished_video(channel, media, marker)
    assert result["meta"]["video_id"] == video["id"]
    # The first session's video never completed: it is not published, only listed by the control API.
    assert [v["complete"] for v in channel.videos(marker)].count(False) == 1


def test_an_expired_finished_session_finds_its_video_by_the_marker(
    box: SandboxProcess, channel: Channel, media: dict[str, Path], tmp_path: Path
) -> None:
    marker = _marker()
    crashed = _upload(channel, media, tmp_path / "upload.json", marker, crash="youtube.after_last_chunk")
    job = crashed.events("submitted")[0]["job_id"]
    box.configure(youtube_clock_offset_s=2 * 86_400)
    rerun = _upload(channel, media, tmp_path / "upload.json", marker, "--resume-job", job)
    assert not rerun.events("submitted")
    assert rerun.result["meta"]["quota"]["uploads"] == 0
    assert len(channel.videos(marker)) == 1
    assert rerun.result["meta"]["video_id"] == _one_finished_video(channel, media, marker)["id"]


def test_a_lost_answer_to_the_last_chunk_is_collected(
    box: SandboxProcess, channel: Channel, media: dict[str, Path], tmp_path: Path
) -> None:
    marker = _marker()
    one_chunk = ["--chunk-kib", "2048"]  # the first PUT is the last: the fault hits it
    box.fault(provider="youtube", kind="apply_then_fail", status=503, endpoint="^PUT ", count=1)
    lost = _upload(channel, media, tmp_path / "upload.json", marker, *one_chunk)
    lost.failed(75, "transient")
    assert [v["complete"] for v in channel.videos(marker)] == [True]  # it went through all the same
    job = lost.events("submitted")[0]["job_id"]
    rerun = _upload(channel, media, tmp_path / "upload.json", marker, *one_chunk, "--resume-job", job)
    assert not rerun.events("submitted")
    assert rerun.result["meta"]["video_id"] == _one_finished_video(channel, media, marker)["id"]


def test_a_failed_chunk_is_transient_and_resumed(
    box: SandboxProcess, channel: Channel, media: dict[str, Path], tmp_path: Path
) -> None:
    marker = _marker()
    box.fault(provider="youtube", status=503, endpoint="^PUT ", count=1)
    failed = _upload(channel, media, tmp_path / "upload.json", marker)
    assert failed.failed(75, "transient")["provider_code"] in ("backendError", 503)
    job = failed.events("submitted")[0]["job_id"]
    rerun = _upload(channel, media, tmp_path / "upload.json", marker, "--resume-job", job)
    assert rerun.events("progress")[0]["uploaded"] == CHUNK  # from the start: nothing had arrived
    assert rerun.result["meta"]["video_id"] == _one_finished_video(channel, media, marker)["id"]


def _seconds_to_pacific_midnight() -> float:
    pacific = ZoneInfo("America/Los_Angeles")
    now = datetime.now(UTC)
    tomorrow = now.astimezone(pacific).date() + timedelta(days=1)
    return (datetime.combine(tomorrow, datetime.min.time(), tzinfo=pacific) - now).total_seconds()


def test_quota_exceeded_waits_for_pacific_midnight(
    box: SandboxProcess, channel: Channel, media: dict[str, Path], tmp_path: Path
) -> None:
    box.configure(youtube_uploads_per_day=0)
    run = _upload(channel, media, tmp_path / "upload.json", _marker())
    error = run.failed(75, "transient")
    assert error["provider_code"] == "quotaExceeded"
    assert error["retry_after_s"] == pytest.approx(_seconds_to_pacific_midnight(), abs=30)
    assert not run.events("submitted")
    assert not channel.videos()


def test_a_revoked_sign_in_is_permanent(
    box: SandboxProcess, channel: Channel, media: dict[str, Path], tmp_path: Path
) -> None:
    box.post("/_sandbox/youtube/revoke", {"refresh_token": channel.refresh_token})
    run = _upload(channel, media, tmp_path / "upload.json", _marker())
    error = run.failed(1, "permanent")
    assert error["provider_code"] == "invalid_grant"
    assert (
        error["message"] == "The YouTube sign-in for this channel has expired or was revoked; sign in again."
    )


def test_a_title_over_100_characters_names_title(
    box: SandboxProcess, channel: Channel, media: dict[str, Path], tmp_path: Path
) -> None:
    calls = len(box.calls("youtube"))
    run = run_script(
        "upload_youtube", "--video", media["video"], "--title", "H" * 101, "--marker", _marker(),
        "--output", tmp_path / "upload.json", env=channel.env,
    )  # fmt: skip
    error = run.failed(1, "permanent")
    assert "Title" in error["message"]
    assert error["provider_code"] == "invalidTitle"
    assert len(box.calls("youtube")) == calls  # refused before YouTube was asked


def test_a_publish_time_in_the_past_is_refused_by_youtube(
    channel: Channel, media: dict[str, Path], tmp_path: Path
) -> None:
    run = _upload(channel, media, tmp_path / "upload.json", _marker(), "--publish-at", "2020-01-01T00:00:00Z")
    error = run.failed(1, "permanent")
    assert error["provider_code"] == "invalidPublishAt"
    assert "future" in error["message"]
    assert not channel.videos()
