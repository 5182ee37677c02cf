"""upload_youtube.py's flow against a small in-memory YouTube (httpx.MockTransport): chunks, resume,
the marker lookup, a refused chunk resynced, a stale token renewed, captions never doubled. The
crash points and the real wire: tests/integration/test_script_upload_youtube.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from scripts import upload_youtube
from scripts._lib import youtube

BASE = "http://yt.test"
REFRESH = "1//unit-flow-refresh-token"
SECRET = "GOCSPX-unit-flow-secret"
MARKER = "nvd-0123456789ab"
KIB = 1024
SRT = b"1\n00:00:00,000 --> 00:00:02,000\nAt first light\n"


def _error(status: int, reason: str, message: str = "refused") -> httpx.Response:
    body = {"error": {"code": status, "message": message, "errors": [{"domain": "d", "reason": reason}]}}
    return httpx.Response(status, json=body)


class FakeYouTube:
    """Just enough of Google: tokens, resumable sessions, the uploads playlist, thumbnails, captions."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.sessions: dict[str, dict[str, Any]] = {}
        self.videos: dict[str, dict[str, Any]] = {}  # complete ones, oldest first
        self.thumbnails: dict[str, bytes] = {}
        self.captions: list[dict[str, Any]] = []
        self.caption_files: list[bytes] = []
        self.opened = 0  # sessions ever opened
        self.calls: list[str] = []
        self.traces: set[str | None] = set()
        # [pattern, answer, matching calls to let through first], oldest first
        self.next: list[list[Any]] = []

    def answer_next(self, pattern: str, response: httpx.Response, skip: int = 0) -> None:
        self.next.append([pattern, response, skip])

    def handler(self, request: httpx.Request) -> httpx.Response:
        key = f"{request.method} {request.url.path}"
        self.calls.append(key)
        self.traces.add(request.headers.get("X-Pipeline-Trace"))
        for i, (pattern, response, skip) in enumerate(self.next):
            if re.search(pattern, key):
                if skip:
                    self.next[i][2] -= 1
                    break
                del self.next[i]
                return response
        if key == "POST /token":
            return self._token(parse_qs(request.content.decode()))
        if request.headers.get("Authorization", "").removeprefix("Bearer ") not in self.tokens:
            return _error(401, "authError", "Invalid Credentials")
        routes = {
            "POST /upload/youtube/v3/videos": self._create,
            "PUT /upload/youtube/v3/videos": self._chunk,
            "GET /youtube/v3/channels": lambda r: httpx.Response(
                200, json={"items": [{"contentDetails": {"relatedPlaylists": {"uploads": "UUfake"}}}]}
            ),
            "GET /youtube/v3/playlistItems": lambda r: httpx.Response(
                200, json={"items": [{"contentDetails": {"videoId": v}} for v in reversed(self.videos)]}
            ),
            "GET /youtube/v3/videos": lambda r: httpx.Response(
                200,
                json={"items": [self.videos[i] for i in r.url.params["id"].split(",") if i in self.videos]},
            ),
            "POST /upload/youtube/v3/thumbnails/set": self._thumbnail,
            "GET /youtube/v3/captions": lambda r: httpx.Response(
                200,
                json={
                    "items": [c for c in self.captions if c["snippet"]["videoId"] == r.url.params["videoId"]]
                },
            ),
            "POST /upload/youtube/v3/captions": self._caption,
        }
        return routes[key](request)

    def _token(self, form: dict[str, list[str]]) -> httpx.Response:
        if form.get("refresh_token") != [REFRESH] or form.get("client_secret") != [SECRET]:
            return httpx.Response(400, json={"error": "invalid_grant", "error_description": "Token revoked."})
        self.tokens.append(f"ya29.token{len(self.tokens)}")
        return httpx.Response(200, json={"access_token": self.tokens[-1], "expires_in": 3599})

    def _create(self, request: httpx.Request) -> httpx.Response:
        self.opened += 1
        sid = f"s{self.opened}"
        total = int(request.headers["X-Upload-Content-Length"])
        self.sessions[sid] = {"total": total, "data": b"", "meta": json.loads(request.content), "video": None}
        location = f"{BASE}/upload/youtube/v3/videos?uploadType=resumable&upload_id={sid}"
        return httpx.Response(200, headers={"Location": location})

    def _chunk(self, request: httpx.Request) -> httpx.Response:
        session = self.sessions.get(request.url.params["upload_id"])
        if session is None:
            return _error(404, "notFound")
        asked = request.headers["Content-Range"]
        if (query := re.fullmatch(r"bytes \*/(\d+)", asked)) and int(query.group(1)) == session["total"]:
            return self._where(session)
        found = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", asked)
        assert found, asked
        start, end = int(found.group(1)), int(found.group(2))
        if start != len(session["data"]):
            return _error(400, "badContent", "wrong offset")
        if end + 1 < session["total"] and len(request.content) % (256 * KIB):
            return _error(400, "badContent", "chunks are multiples of 256 KiB")
        session["data"] += request.content
        if len(session["data"]) == session["total"]:
            vid = f"vid{len(self.videos):08d}"
            meta = session["meta"]
            status = {"uploadStatus": "uploaded", **meta["status"]}
            session["video"] = self.videos[vid] = {
                "kind": "youtube#video",
                "id": vid,
                **meta,
                "status": status,
            }
        return self._where(session)

    @staticmethod
    def _where(session: dict[str, Any]) -> httpx.Response:
        if session["video"] is not None:
            return httpx.Response(200, json=session["video"])
        received = len(session["data"])
        return httpx.Response(308, headers={"Range": f"bytes=0-{received - 1}"} if received else {})

    def _thumbnail(self, request: httpx.Request) -> httpx.Response:
        self.thumbnails[request.url.params["videoId"]] = request.content
        return httpx.Response(200, json={"kind": "youtube#thumbnailSetResponse", "items": [{}]})

    def _caption(self, request: httpx.Request) -> httpx.Response:
        boundary = request.headers["Content-Type"].split("boundary=")[1]
        parts = request.content.split(f"--{boundary}".encode())
        snippet = json.loads(parts[1].split(b"\r\n\r\n", 1)[1])["snippet"]
        media = parts[2].split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n")
        caption = {"kind": "youtube#caption", "id": f"cap{len(self.captions)}", "snippet": snippet}
        self.captions.append(caption)
        self.caption_files.append(media)
        return httpx.Response(200, json=caption)

    def count(self, key: str) -> int:
        return self.calls.count(key)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeYouTube:
    yt = FakeYouTube()
    for name, value in {
        "YOUTUBE_CLIENT_ID": "123-abc.apps.googleusercontent.com",
        "YOUTUBE_CLIENT_SECRET": SECRET,
        "YOUTUBE_REFRESH_TOKEN": REFRESH,
        "YOUTUBE_BASE_URL": BASE,
        "YOUTUBE_OAUTH_BASE_URL": BASE,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("YOUTUBE_WATCH_URL", "CRASH_AT", "PIPELINE_TRACE"):
        monkeypatch.delenv(name, raising=False)
    real = youtube.client_from_env
    monkeypatch.setattr(youtube, "client_from_env", lambda: real(transport=httpx.MockTransport(yt.handler)))
    return yt


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    video = tmp_path / "final.mp4"
    video.write_bytes(bytes(range(256)) * (600 * KIB // 256))  # 600 KiB: three chunks of 256 KiB
    thumb = tmp_path / "final.mp4.thumbnail.jpg"
    thumb.write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 100)
    srt = tmp_path / "final.mp4.srt"
    srt.write_bytes(SRT)
    return {"video": video, "thumbnail": thumb, "captions": srt, "output": tmp_path / "upload.json"}


def _upload(capsys: pytest.CaptureFixture[str], files: dict[str, Path], *extra: str) -> tuple[int, list[Any]]:
    argv = ["--video", files["video"], "--title", "The Heron's Patience", "--marker", MARKER,
            "--tag", "heron", "--thumbnail", files["thumbnail"], "--captions", files["captions"],
            "--output", files["output"], "--chunk-kib", "256", *extra]  # fmt: skip
    code = upload_youtube.main([str(a) for a in argv])
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_upload_in_chunks_with_thumbnail_and_captions(
    fake: FakeYouTube, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = _upload(capsys, files)
    assert code == 0, lines
    events = [line["event"] for line in lines]
    assert events == ["submitted", "progress", "progress", "result"]
    assert [(p["uploaded"], p["total"]) for p in lines[1:3]] == [
        (256 * KIB, 600 * KIB),
        (512 * KIB, 600 * KIB),
    ]
    (video,) = fake.videos.values()
    assert fake.sessions["s1"]["data"] == files["video"].read_bytes()
    assert video["snippet"]["tags"] == ["heron", MARKER]
    assert video["status"] == {
        "uploadStatus": "uploaded",
        "privacyStatus": "private",
        "selfDeclaredMadeForKids": False,
    }
    assert fake.thumbnails == {video["id"]: files["thumbnail"].read_bytes()}
    assert [c["snippet"] for c in fake.captions] == [
        {"videoId": video["id"], "language": "en", "name": "English", "isDraft": False}
    ]
    assert fake.caption_files == [SRT]
    result = lines[-1]
    written = json.loads(files["output"].read_text())
    assert written == {
        "video_id": video["id"],
        "url": f"https://youtu.be/{video['id']}",
        "privacy_status": "private",
        "publish_at": None,
        "thumbnail": True,
        "caption_id": "cap0",
    }
    assert result["meta"] == {**written, "quota": {"uploads": 1, "units": 1 + 1 + 50 + 50 + 400}}
    assert (result["provider"], result["cost_usd"]) == ("youtube", 0)
    assert lines[0]["job_id"] == f"{BASE}/upload/youtube/v3/videos?uploadType=resumable&upload_id=s1"


def test_resume_goes_on_from_what_youtube_holds(
    fake: FakeYouTube, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    fake.answer_next("PUT /upload", httpx.Response(503), skip=1)  # the second chunk fails: transient
    code, lines = _upload(capsys, files)
    assert code == 75 and lines[-1]["kind"] == "transient"
    assert [line["event"] for line in lines] == ["submitted", "progress", "error"]
    job = lines[0]["job_id"]
    fake.calls.clear()
    code, lines = _upload(capsys, files, "--resume-job", job)
    assert code == 0, lines
    assert [line["event"] for line in lines] == ["progress", "result"]
    assert fake.count("PUT /upload/youtube/v3/videos") == 3  # the status query, two chunks
    assert fake.count("POST /upload/youtube/v3/videos") == 0
    assert fake.count("GET /youtube/v3/channels") == 0  # a live session needs no lookup
    assert len(fake.videos) == 1
    assert lines[-1]["meta"]["quota"] == {"uploads": 0, "units": 500}


def test_a_finished_session_is_collected_and_captions_are_not_doubled(
    fake: FakeYouTube, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = _upload(capsys, files)
    assert code == 0
    fake.calls.clear()
    code, again = _upload(capsys, files, "--resume-job", lines[0]["job_id"])
    assert code == 0, again
    assert again[-1]["meta"]["video_id"] == lines[-1]["meta"]["video_id"]
    assert again[-1]["meta"]["caption_id"] == "cap0"
    assert len(fake.captions) == 1
    assert fake.count("POST /upload/youtube/v3/captions") == 0
    assert fake.calls.count("PUT /upload/youtube/v3/videos") == 1  # the status query only
    assert again[-1]["meta"]["quota"] == {"uploads": 0, "units": 100}


def test_a_lost_session_finds_the_video_by_its_marker(
    fake: FakeYouTube, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = _upload(capsys, files)
    assert code == 0
    fake.sessions.clear()  # expired
    code, again = _upload(capsys, files, "--resume-job", lines[0]["job_id"])
    assert code == 0, again
    assert [line["event"] for line in again] == ["warning", "result"]
    assert again[-1]["meta"]["video_id"] == lines[-1]["meta"]["video_id"]
    assert len(fake.videos) == 1


def test_a_lost_incomplete_session_is_uploaded_anew_once(
    fake: FakeYouTube, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    fake.answer_next("PUT /upload", httpx.Response(500), skip=1)
    code, lines = _upload(capsys, files)
    assert code == 75
    fake.sessions.clear()
    code, again = _upload(capsys, files, "--resume-job", lines[0]["job_id"])
    assert code == 0, again
    assert [line["event"] for line in again] == ["warning", "submitted", "progress", "progress", "result"]
    assert again[1]["job_id"] != lines[0]["job_id"]
    assert len(fake.videos) == 1


def test_a_chunk_youtube_holds_differently_is_resynced(
    fake: FakeYouTube, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    fake.answer_next("PUT /upload", _error(400, "badContent", "Content-Range does not match"))
    code, lines = _upload(capsys, files)
    assert code == 0, lines
    assert fake.sessions["s1"]["data"] == files["video"].read_bytes()


def test_a_refused_upload_never_resynced_for_ever(
    fake: FakeYouTube, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(upload_youtube.MAX_RESYNCS + 1):
        fake.answer_next("PUT /upload", _error(400, "badContent"))
        fake.answer_next("PUT /upload", httpx.Response(308))
    code, lines = _upload(capsys, files)
    assert (code, lines[-1]["provider_code"]) == (1, "badContent")


def test_a_stale_token_is_renewed_once(
    fake: FakeYouTube,
    files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(youtube, "FRESH_TOKEN_S", -1.0)  # every token counts as old
    fake.answer_next("GET /youtube/v3/channels", _error(401, "authError"))
    code, lines = _upload(capsys, files)
    assert code == 0, lines
    assert len(fake.tokens) == 2


def test_a_fresh_token_refused_is_permanent(
    fake: FakeYouTube, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    fake.answer_next("GET /youtube/v3/channels", _error(401, "authError"))
    code, lines = _upload(capsys, files)
    assert (code, lines[-1]["kind"], lines[-1]["provider_code"]) == (1, "permanent", "authError")
    assert len(fake.tokens) == 1


def test_revoked_sign_in(
    fake: FakeYouTube,
    files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("YOUTUBE_REFRESH_TOKEN", "1//revoked-refresh-token")
    code, lines = _upload(capsys, files)
    assert (code, lines[-1]["provider_code"]) == (1, "invalid_grant")
    assert (
        lines[-1]["message"]
        == "The YouTube sign-in for this channel has expired or was revoked; sign in again."
    )
    assert fake.calls == ["POST /token"]


def test_quota_exceeded_waits_for_midnight(
    fake: FakeYouTube, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    fake.answer_next("POST /upload/youtube/v3/videos", _error(403, "quotaExceeded"))
    code, lines = _upload(capsys, files)
    error = lines[-1]
    assert (code, error["kind"], error["provider_code"]) == (75, "transient", "quotaExceeded")
    assert error["retry_after_s"] == pytest.approx(youtube.seconds_to_quota_reset(), abs=5)
    assert not any(line["event"] == "submitted" for line in lines)


def test_metadata_refused_by_youtube_names_the_fix(
    fake: FakeYouTube, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    fake.answer_next(
        "POST /upload/youtube/v3/videos", _error(400, "invalidPublishAt", "publishAt in the past")
    )
    code, lines = _upload(capsys, files, "--publish-at", "2020-01-01T00:00:00Z")
    assert (code, lines[-1]["provider_code"]) == (1, "invalidPublishAt")
    assert "future" in lines[-1]["message"]


def test_the_access_token_never_reaches_stdout(
    fake: FakeYouTube, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    fake.answer_next("POST /upload/youtube/v3/captions", _error(400, "weird", "bad token ya29.token0 given"))
    code, lines = _upload(capsys, files)
    # The video is up: a caption track YouTube refuses is said in the result, not a failure.
    assert code == 0
    assert "ya29.token0" not in json.dumps(lines)
    assert "<access token>" in lines[-1]["meta"]["refused"]["captions"]


def test_a_scheduled_upload_reports_its_publish_time(
    fake: FakeYouTube,
    files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("YOUTUBE_WATCH_URL", "http://sandbox.test/youtube/watch?v={id}")
    code, lines = _upload(capsys, files, "--publish-at", "2030-12-08T09:00:00-08:00", "--chunk-kib", "1024")
    assert code == 0
    meta = lines[-1]["meta"]
    assert meta["publish_at"] == "2030-12-08T17:00:00Z"
    assert meta["url"] == f"http://sandbox.test/youtube/watch?v={meta['video_id']}"
    assert [line["event"] for line in lines] == ["submitted", "result"]  # one chunk: no progress


def test_a_rejected_upload_is_permanent(
    fake: FakeYouTube, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    video = {
        "id": "old",
        "snippet": {"tags": [MARKER]},
        "status": {"uploadStatus": "rejected", "rejectionReason": "duplicate"},
    }
    fake.videos["old"] = video
    code, lines = _upload(capsys, files)
    assert (code, lines[-1]["provider_code"]) == (1, "duplicate")
    assert not fake.sessions


def test_a_session_at_another_host_gets_no_token(
    fake: FakeYouTube, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines = _upload(capsys, files)
    assert code == 0
    fake.calls.clear()
    elsewhere = "http://elsewhere.test/upload/youtube/v3/videos?uploadType=resumable&upload_id=s1"
    code, again = _upload(capsys, files, "--resume-job", elsewhere)
    assert code == 0, again
    assert [line["event"] for line in again] == ["warning", "result"]  # found by its marker
    assert "PUT /upload/youtube/v3/videos" not in fake.calls
    assert again[-1]["meta"]["video_id"] == lines[-1]["meta"]["video_id"]


def test_every_call_carries_the_trace(
    fake: FakeYouTube,
    files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PIPELINE_TRACE", "daemon-1/nature:heron:upload")
    code, _ = _upload(capsys, files)
    assert code == 0
    assert fake.traces == {"daemon-1/nature:heron:upload"}
