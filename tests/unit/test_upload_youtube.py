"""upload_youtube.py's pure parts: argument checks, the chunk size rule, the quota reset in Pacific
time, Google's error envelope made into script errors, the caption file and marker helpers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from scripts import upload_youtube
from scripts._lib import youtube
from scripts._lib.errors import ScriptError

SECRET_ENV = {
    "YOUTUBE_CLIENT_ID": "123-abc.apps.googleusercontent.com",
    "YOUTUBE_CLIENT_SECRET": "GOCSPX-unit-test-secret",
    "YOUTUBE_REFRESH_TOKEN": "1//unit-test-refresh-token",
    "YOUTUBE_BASE_URL": "http://yt.test",
}
SRT = (
    b"1\n00:00:00,000 --> 00:00:02,500\nAt first light\n\n2\n00:00:02,540 --> 00:00:04,000\nthe heron waits\n"
)
VTT = b"WEBVTT\n\n00:00.000 --> 00:02.500\nAt first light\n"


def _envelope(code: int, reason: str, message: str = "m") -> dict[str, Any]:
    domain = "youtube.quota" if reason == "quotaExceeded" else "youtube.api"
    return {"error": {"code": code, "message": message, "errors": [{"domain": domain, "reason": reason}]}}


@pytest.fixture(autouse=True)
def _no_youtube_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checks must fail before the network: without credentials a call would be a usage error."""
    for name in (*SECRET_ENV, "YOUTUBE_OAUTH_BASE_URL", "YOUTUBE_WATCH_URL", "CRASH_AT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "final.mp4"
    path.write_bytes(b"\0" * 1000)
    return path


def _run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, video: Path, *extra: str, title: str = "The Heron"
) -> tuple[int, dict[str, Any]]:
    argv = ["--video", str(video), "--title", title, "--marker", "nvd-3f9a0c21d4e5"]
    code = upload_youtube.main([*argv, "--output", str(tmp_path / "out.json"), *extra])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return code, lines[-1]


# Arguments -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["256", "512", "8192"])
def test_chunk_size_is_a_multiple_of_256_kib(value: str) -> None:
    assert upload_youtube.chunk_kib(value) * 1024 % youtube.CHUNK_UNIT == 0


@pytest.mark.parametrize("value", ["0", "-256", "100", "300", "257", "1.5", "lots"])
def test_other_chunk_sizes_are_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, video: Path, value: str
) -> None:
    code, line = _run(capsys, tmp_path, video, "--chunk-kib", value)
    assert (code, line["kind"]) == (2, "usage")
    assert "256" in line["message"]


@pytest.mark.parametrize(
    ("title", "fixes"),
    [("x" * 101, "Title"), ("", "Title"), ("Herons <3", "Title")],
)
def test_a_title_youtube_refuses_fails_before_any_call(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, video: Path, title: str, fixes: str
) -> None:
    # No credentials in the environment: reaching the network would be a usage error instead.
    code, line = _run(capsys, tmp_path, video, title=title)
    assert (code, line["kind"], line["provider_code"]) == (1, "permanent", "invalidTitle")
    assert fixes in line["message"]


def test_a_title_of_100_characters_passes() -> None:
    upload_youtube.check_metadata("x" * 100, "", None, "private")


def test_description_is_counted_in_bytes() -> None:
    upload_youtube.check_metadata("T", "é" * 2500, None, "private")
    with pytest.raises(ScriptError, match="5000") as caught:
        upload_youtube.check_metadata("T", "é" * 2501, None, "private")
    assert caught.value.provider_code == "invalidDescription"


def test_a_scheduled_video_must_be_private(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, video: Path
) -> None:
    code, line = _run(capsys, tmp_path, video, "--privacy", "public", "--publish-at", "2030-01-01T10:00:00Z")
    assert (code, line["provider_code"]) == (1, "invalidPublishAt")
    assert "private" in line["message"]


@pytest.mark.parametrize(
    ("text", "utc"),
    [
        ("2026-12-08T17:00:00Z", "2026-12-08T17:00:00Z"),
        ("2026-12-08T09:00:00-08:00", "2026-12-08T17:00:00Z"),
        ("2026-12-08T17:00:00.250Z", "2026-12-08T17:00:00Z"),
    ],
)
def test_publish_at_is_sent_in_utc(text: str, utc: str) -> None:
    assert upload_youtube.parse_publish_at(text) == utc


@pytest.mark.parametrize("text", ["tomorrow", "2026-12-08T17:00:00", "2026-12-08"])
def test_publish_at_needs_a_time_with_its_zone(text: str) -> None:
    with pytest.raises(ScriptError) as caught:
        upload_youtube.parse_publish_at(text)
    assert caught.value.kind == "usage"


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--marker", "a b"], "--marker"),
        (["--category-id", "people"], "--category-id"),
        (["--caption-language", "English!"], "--caption-language"),
        (["--resume-job", "yt.test/upload/youtube/v3/videos?upload_id=x"], "--resume-job"),
        (["--resume-job", "http://yt.test/upload/youtube/v3/videos"], "--resume-job"),
    ],
)
def test_usage_errors(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    video: Path,
    args: list[str],
    problem: str,
) -> None:
    monkeypatch.setenv("YOUTUBE_BASE_URL", "http://yt.test")
    code, line = _run(capsys, tmp_path, video, *args)
    assert (code, line["kind"]) == (2, "usage")
    assert problem in line["message"]


def test_missing_credentials_are_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, video: Path
) -> None:
    for name in SECRET_ENV:
        monkeypatch.delenv(name, raising=False)
    code, line = _run(capsys, tmp_path, video)
    assert (code, line["kind"]) == (2, "usage")
    assert "YOUTUBE_CLIENT_ID" in line["message"]


def test_inputs_are_checked_before_the_network(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, video: Path
) -> None:
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff\xd8\xff" + b"\0" * (2 * 1024 * 1024))
    text = tmp_path / "thumb.jpg"
    text.write_text("not an image")
    captions = tmp_path / "captions.srt"
    captions.write_text("just words, no cues\n")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    cases = [
        (["--thumbnail", str(big)], "mediaBodyTooLarge"),
        (["--thumbnail", str(text)], "invalidImage"),
        (["--thumbnail", str(tmp_path / "none.jpg")], None),
        (["--captions", str(captions)], "invalidCaptionFile"),
        (["--tag", "x" * 499], "invalidTags"),
    ]
    for extra, provider_code in cases:
        code, line = _run(capsys, tmp_path, video, *extra)
        assert (code, line["kind"], line["provider_code"]) == (1, "permanent", provider_code), extra
    code, line = _run(capsys, tmp_path, empty)
    assert (code, line["kind"]) == (1, "permanent")
    assert "empty" in line["message"]


def test_the_token_goes_only_to_youtube_s_host() -> None:
    session = "https://www.googleapis.com/upload/youtube/v3/videos?uploadType=resumable&upload_id=xa298sd_f"
    upload_youtube.check_session_url(session)
    assert upload_youtube.at_youtube(session, youtube.DEFAULT_BASE_URL)
    assert not upload_youtube.at_youtube(
        session.replace("www.googleapis.com", "evil.test"), youtube.DEFAULT_BASE_URL
    )
    assert upload_youtube.at_youtube(
        "http://127.0.0.1:9/youtube/upload/x?upload_id=1", "http://127.0.0.1:9/youtube"
    )


# The quota day ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("now", "hours"),
    [
        ("2026-01-15T20:00:00", 12.0),  # noon PST
        ("2026-07-01T07:00:00", 24.0),  # midnight PDT: the whole next day
        ("2026-07-01T06:59:30", 1 / 120),  # 30 s before midnight PDT
        ("2026-03-08T08:30:00", 22.5),  # 00:30 PST on the day summer time starts (a 23 h day)
        ("2026-11-01T07:30:00", 24.5),  # 00:30 PDT on the day it ends (a 25 h day)
    ],
)
def test_quota_resets_at_the_next_pacific_midnight(now: str, hours: float) -> None:
    moment = datetime.fromisoformat(now).replace(tzinfo=UTC)
    assert youtube.seconds_to_quota_reset(moment) == pytest.approx(hours * 3600)


# Google's error envelope -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "reason", "kind", "words"),
    [
        (403, "rateLimitExceeded", "transient", "busy"),
        (403, "userRateLimitExceeded", "transient", "busy"),
        (429, "tooManyRequests", "transient", "busy"),
        (500, "backendError", "transient", "busy"),
        (503, "", "transient", "busy"),
        (400, "invalidTitle", "permanent", "edit Title in Notion"),
        (400, "invalidDescription", "permanent", "description"),
        (400, "invalidTags", "permanent", "tags"),
        (400, "invalidPublishAt", "permanent", "publish time"),
        (400, "invalidVideoMetadata", "permanent", "privacy"),
        (400, "mediaBodyTooLarge", "permanent", "2 MB"),
        (400, "invalidCaptionFile", "permanent", "SRT"),
        (401, "authError", "permanent", "sign in"),
        (403, "forbidden", "permanent", "verified"),
        (404, "videoNotFound", "permanent", "videoNotFound"),
        (400, "somethingNew", "permanent", "somethingNew"),
    ],
)
def test_errors_are_classified_by_reason(status: int, reason: str, kind: str, words: str) -> None:
    error = youtube.classify(status, _envelope(status, reason) if reason else {}, "the upload")
    assert error.kind == kind
    assert words in error.message
    assert error.provider_code == (reason or status)
    assert error.retry_after_s is None


def test_quota_exceeded_waits_for_pacific_midnight() -> None:
    error = youtube.classify(403, _envelope(403, "quotaExceeded"), "the upload")
    assert (error.kind, error.provider_code) == ("transient", "quotaExceeded")
    assert error.retry_after_s == pytest.approx(youtube.seconds_to_quota_reset(), abs=5)
    assert "midnight Pacific" in error.message


def test_an_error_page_that_is_not_json_falls_back_to_the_status() -> None:
    assert youtube.classify(502, {}, "the upload").kind == "transient"
    assert youtube.classify(400, {}, "the upload").kind == "permanent"


def test_invalid_grant_asks_for_a_new_sign_in() -> None:
    error = youtube.oauth_error(
        400, {"error": "invalid_grant", "error_description": "Token has been expired"}
    )
    assert (error.kind, error.provider_code) == ("permanent", "invalid_grant")
    assert error.message == "The YouTube sign-in for this channel has expired or was revoked; sign in again."


@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (401, {"error": "invalid_client"}, "permanent", "invalid_client"),
        (500, {}, "transient", 500),
        (503, {"error": "temporarily_unavailable"}, "transient", "temporarily_unavailable"),
    ],
)
def test_other_sign_in_errors(status: int, body: dict[str, Any], kind: str, code: str | int) -> None:
    error = youtube.oauth_error(status, body)
    assert (error.kind, error.provider_code) == (kind, code)


# Upload details ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("header", "received"), [(None, 0), ("bytes=0-262143", 262144), ("bytes=0-0", 1)])
def test_range_says_how_much_youtube_holds(header: str | None, received: int) -> None:
    assert youtube.received_bytes(header) == received


def test_a_range_that_does_not_start_at_zero_is_not_understood() -> None:
    with pytest.raises(ScriptError):
        youtube.received_bytes("bytes=100-200")


def test_quota_is_counted_by_youtube_costs() -> None:
    quota = youtube.Quota()
    for call in ("videos.insert", "upload", "upload", "channels.list", "thumbnails.set", "captions.insert"):
        quota.spend(call)
    quota.spend("something.new")
    assert quota.as_meta() == {"uploads": 1, "units": 1 + 50 + 400 + 1}


def test_multipart_body_has_both_parts() -> None:
    body, content_type = youtube.multipart_related(b'{"snippet":{}}', SRT)
    boundary = content_type.split("boundary=")[1]
    parts = body.split(f"--{boundary}".encode())
    assert parts[0] == b""
    assert parts[-1] == b"--\r\n"
    assert b"application/json" in parts[1]
    assert parts[2].endswith(SRT + b"\r\n")


# Captions and marker ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "kind"),
    [(SRT, "srt"), (b"\xef\xbb\xbf" + SRT, "srt"), (SRT.replace(b"\n", b"\r\n"), "srt"), (VTT, "vtt")],
)
def test_caption_files_youtube_reads(data: bytes, kind: str) -> None:
    assert upload_youtube.caption_format(data) == kind


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"  \n", "empty"),
        (b"\xff\xfe\x00bad", "UTF-8"),
        (b"Hello there\n", "neither"),
        (b"WEBVTT\n\nno cues\n", "WebVTT"),
    ],
)
def test_caption_files_youtube_refuses(data: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        upload_youtube.caption_format(data)


def test_marker_is_always_one_of_the_tags() -> None:
    assert upload_youtube.tags_with_marker([], "nvd-1") == ["nvd-1"]
    assert upload_youtube.tags_with_marker([" heron ", "heron", "", "nvd-1", "birds"], "nvd-1") == [
        "heron",
        "birds",
        "nvd-1",
    ]


def test_tags_are_counted_as_youtube_counts_them() -> None:
    # "grey heron" is quoted (+2), a comma between the two tags (+1).
    assert upload_youtube.tags_length(["grey heron", "dawn"]) == 12 + 4 + 1
    assert upload_youtube.tags_length([]) == 0


def test_the_marked_video_is_found() -> None:
    videos: list[dict[str, Any]] = [
        {"id": "a", "snippet": {"tags": ["nvd-2"]}},
        {"id": "b"},
        {"id": "c", "snippet": {"tags": None}},
        {"id": "d", "snippet": {"tags": ["heron", "nvd-1"]}},
    ]
    found = upload_youtube.find_marked(videos, "nvd-1")
    assert found is not None
    assert found["id"] == "d"
    assert upload_youtube.find_marked(videos, "nvd-3") is None


def test_default_caption_name() -> None:
    parser = upload_youtube.parser()
    base = ["--video", "v.mp4", "--title", "T", "--marker", "nvd-1234", "--output", "o.json"]
    assert upload_youtube.default_caption_name(parser.parse_args(base)) == "English"
    german = parser.parse_args([*base, "--caption-language", "de"])
    assert upload_youtube.default_caption_name(german) == "de"


def test_watch_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YOUTUBE_WATCH_URL", raising=False)
    assert upload_youtube.watch_url("abcdefghijk") == "https://youtu.be/abcdefghijk"
    monkeypatch.setenv("YOUTUBE_WATCH_URL", "http://127.0.0.1:9/youtube/watch?v={id}")
    assert upload_youtube.watch_url("abcdefghijk") == "http://127.0.0.1:9/youtube/watch?v=abcdefghijk"


def test_youtube_secrets_are_redacted() -> None:
    from scripts._lib.output import redact

    text = "x GOCSPX-unit-test-secret y 1//unit-test-refresh-token"
    assert redact(text, SECRET_ENV) == "x <YOUTUBE_CLIENT_SECRET> y <YOUTUBE_REFRESH_TOKEN>"
