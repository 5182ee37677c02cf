"""The sandbox's YouTube and Google OAuth, driven as a client following the provider facts would:
the loopback consent with PKCE, refreshes and revocation, resumable uploads in 256 KiB chunks
(308 and Range, the status query, expiry), the metadata checks, the per-project Pacific-day
quota, thumbnails, captions, finding an upload by its tag, the watch page, the control API and a
restart on the same state folder."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import secrets
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import httpx
import imageio_ffmpeg
import pytest
from PIL import Image

from tests.support.sandbox_proc import SandboxProcess

CHUNK = 256 * 1024
UPLOAD_SCOPE = "https://www.googleapis.com/auth/youtube.upload"
FORCE_SSL_SCOPE = "https://www.googleapis.com/auth/youtube.force-ssl"
REDIRECT = "http://127.0.0.1:53117/"
VIDEO_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")
SRT = b"1\n00:00:00,000 --> 00:00:02,500\nAt first light, the delta belongs to the patient.\n\n"
VTT = b"WEBVTT\n\n00:00.000 --> 00:02.500\nAt first light.\n"


@pytest.fixture(scope="module")
def youtube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """A sandbox of this module's own: its uploads count against a quota no other test shares."""
    proc = SandboxProcess(tmp_path_factory.mktemp("youtube")).start()
    yield proc
    proc.stop()


# A client, as the reference facts describe it -------------------------------------------------------
def _client(sandbox: SandboxProcess) -> tuple[str, str]:
    creds = json.loads((sandbox.state_dir / "credentials.json").read_text())
    return creds["youtube_client_id"], creds["youtube_client_secret"]


def _token(sandbox: SandboxProcess, form: dict[str, str]) -> httpx.Response:
    client_id, secret = _client(sandbox)
    body = {"client_id": client_id, "client_secret": secret, **form}
    return httpx.post(f"{sandbox.url}/google-oauth/token", data=body, timeout=30)


def _refresh_token(sandbox: SandboxProcess, **body: Any) -> str:
    return str(sandbox.post("/_sandbox/youtube/refresh-token", body)["refresh_token"])


def _access(sandbox: SandboxProcess, refresh_token: str | None = None) -> str:
    r = _token(
        sandbox, {"grant_type": "refresh_token", "refresh_token": refresh_token or _refresh_token(sandbox)}
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _api(
    sandbox: SandboxProcess,
    token: str,
    method: str,
    path: str,
    content_type: str | None = None,
    **kwargs: Any,
) -> httpx.Response:
    headers = {**_auth(token), **({"Content-Type": content_type} if content_type else {})}
    return httpx.request(method, f"{sandbox.base('youtube')}{path}", headers=headers, timeout=30, **kwargs)


def _mine(sandbox: SandboxProcess, token: str, part: str = "id") -> httpx.Response:
    """channels.list mine=true: the signed-in channel (1 unit)."""
    return _api(sandbox, token, "GET", "/youtube/v3/channels", params={"part": part, "mine": "true"})


def _metadata(
    title: str = "The Heron's Patience",
    description: str = "Dawn on the delta.",
    tags: list[str] | None = None,
    **status: Any,
) -> dict[str, Any]:
    return {
        "snippet": {
            "title": title,
            "description": description,
            "tags": tags or ["heron"],
            "categoryId": "22",
        },
        "status": {"privacyStatus": "private", "selfDeclaredMadeForKids": False, **status},
    }


def _session(
    sandbox: SandboxProcess, token: str, size: int, body: dict[str, Any] | None = None, **headers: str
) -> httpx.Response:
    return httpx.post(
        f"{sandbox.base('youtube')}/upload/youtube/v3/videos",
        params={"uploadType": "resumable", "part": "snippet,status"},
        headers={
            **_auth(token),
            "X-Upload-Content-Length": str(size),
            "X-Upload-Content-Type": "video/mp4",
            **headers,
        },
        json=body or _metadata(),
        timeout=30,
    )


def _put(
    sandbox: SandboxProcess, token: str, url: str, content_range: str, data: bytes = b""
) -> httpx.Response:
    headers = {**_auth(token), "Content-Range": content_range}
    return httpx.put(url, headers=headers, content=data, timeout=30)


def _upload(
    sandbox: SandboxProcess, token: str, data: bytes, body: dict[str, Any] | None = None, chunk: int = CHUNK
) -> dict[str, Any]:
    created = _session(sandbox, token, len(data), body)
    assert created.status_code == 200, created.text
    url = created.headers["Location"]
    sent = 0
    while True:
        piece = data[sent : sent + chunk]
        r = _put(sandbox, token, url, f"bytes {sent}-{sent + len(piece) - 1}/{len(data)}", piece)
        sent += len(piece)
        if sent == len(data):
            assert r.status_code == 200, r.text
            return dict(r.json())
        assert r.status_code == 308, r.text


def _reason(r: httpx.Response) -> str:
    return str(r.json()["error"]["errors"][0]["reason"])


def _videos(sandbox: SandboxProcess) -> dict[str, dict[str, Any]]:
    return {v["id"]: v for v in sandbox.get("/_sandbox/youtube/videos")["videos"]}


def _multipart(snippet: dict[str, Any], content: bytes) -> tuple[bytes, str]:
    boundary = "===============" + secrets.token_hex(8) + "=="
    body = (
        f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".encode()
        + json.dumps({"snippet": snippet}).encode()
        + f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n".encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f'multipart/related; boundary="{boundary}"'


def _insert_caption(
    sandbox: SandboxProcess, token: str, video_id: str, content: bytes, name: str = "English"
) -> httpx.Response:
    body, content_type = _multipart(
        {"videoId": video_id, "language": "en", "name": name, "isDraft": False}, content
    )
    return _api(
        sandbox,
        token,
        "POST",
        "/upload/youtube/v3/captions",
        params={"part": "snippet", "uploadType": "multipart"},
        content=body,
        content_type=content_type,
    )


def _picture(kind: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 36), (40, 90, 140)).save(out, format=kind)
    return out.getvalue()


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def _consent(sandbox: SandboxProcess, **overrides: str) -> httpx.Response:
    client_id, _ = _client(sandbox)
    params = {
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": f"{UPLOAD_SCOPE} {FORCE_SSL_SCOPE}",
        "state": "st-" + secrets.token_hex(4),
        "code_challenge_method": "S256",
        "access_type": "offline",
        "prompt": "consent",
        **overrides,
    }
    return httpx.get(f"{sandbox.url}/google-oauth/o/oauth2/v2/auth", params=params, timeout=30)


# OAuth -------------------------------------------------------------------------------------------------
def test_loopback_consent_gives_a_single_use_code_that_needs_the_pkce_verifier(
    youtube: SandboxProcess,
) -> None:
    verifier, challenge = _pkce()
    consent = _consent(youtube, code_challenge=challenge, state="xyz-1")
    assert consent.status_code == 302
    location = consent.headers["Location"]
    assert location.startswith(REDIRECT)
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == ["xyz-1"]
    assert UPLOAD_SCOPE in query["scope"][0]
    code = query["code"][0]
    exchange = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}

    wrong = _token(youtube, {**exchange, "code_verifier": secrets.token_urlsafe(48)})
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_grant"
    other_redirect = _token(
        youtube, {**exchange, "code_verifier": verifier, "redirect_uri": "http://127.0.0.1:1/"}
    )
    assert other_redirect.status_code == 400
    assert other_redirect.json()["error"] == "invalid_grant"

    right = _token(youtube, {**exchange, "code_verifier": verifier})
    assert right.status_code == 200, right.text
    tokens = right.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 3599
    assert tokens["access_token"].startswith("ya29.")
    assert tokens["refresh_token"]
    assert set(tokens["scope"].split()) == {UPLOAD_SCOPE, FORCE_SSL_SCOPE}
    # The channel that consented is the configured one.
    mine = _mine(youtube, tokens["access_token"], "snippet")
    assert mine.json()["items"][0]["snippet"]["title"] == "Sandbox Channel"

    again = _token(youtube, {**exchange, "code_verifier": verifier})
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_without_offline_access_no_refresh_token_is_given(youtube: SandboxProcess) -> None:
    verifier, challenge = _pkce()
    consent = _consent(youtube, code_challenge=challenge, access_type="online")
    code = parse_qs(urlsplit(consent.headers["Location"]).query)["code"][0]
    r = _token(
        youtube,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
    )
    assert r.status_code == 200
    assert "refresh_token" not in r.json()


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"client_id": "999-nope.apps.googleusercontent.com"}, "invalid_client"),
        ({"redirect_uri": "https://example.com/callback"}, "redirect_uri_mismatch"),
        ({"scope": "https://www.googleapis.com/auth/youtube.readonly"}, "invalid_scope"),
    ],
)
def test_consent_refuses_an_unknown_client_a_non_loopback_redirect_and_missing_upload_scope(
    youtube: SandboxProcess, overrides: dict[str, str], error: str
) -> None:
    r = _consent(youtube, code_challenge=_pkce()[1], **overrides)
    assert r.status_code == 400
    assert error in r.text
    assert "Location" not in r.headers


def test_refresh_gives_access_tokens_until_the_refresh_token_is_revoked(youtube: SandboxProcess) -> None:
    refresh = _refresh_token(youtube)
    first = _token(youtube, {"grant_type": "refresh_token", "refresh_token": refresh})
    assert first.status_code == 200
    answer = first.json()
    assert "refresh_token" not in answer
    assert answer["expires_in"] == 3599
    access = answer["access_token"]
    assert _mine(youtube, access).status_code == 200

    client_id, _ = _client(youtube)
    wrong_secret = httpx.post(
        f"{youtube.url}/google-oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "client_id": client_id,
            "client_secret": "x",
        },
    )
    assert wrong_secret.status_code == 401
    assert wrong_secret.json()["error"] == "invalid_client"

    assert youtube.post("/_sandbox/youtube/revoke", {"refresh_token": refresh}) == {"revoked": 1}
    refused = _token(youtube, {"grant_type": "refresh_token", "refresh_token": refresh})
    assert refused.status_code == 400
    assert refused.json() == {
        "error": "invalid_grant",
        "error_description": "Token has been expired or revoked.",
    }
    # Google revokes the whole grant: the access token it gave stops working too.
    gone = _mine(youtube, access)
    assert gone.status_code == 401
    assert _reason(gone) == "authError"

    # `{}` revokes every refresh token there is.
    others = [_refresh_token(youtube), _refresh_token(youtube, channel_title="Another Channel")]
    assert youtube.post("/_sandbox/youtube/revoke", {})["revoked"] >= 2
    for token in others:
        r = _token(youtube, {"grant_type": "refresh_token", "refresh_token": token})
        assert (r.status_code, r.json()["error"]) == (400, "invalid_grant")


def test_every_api_call_needs_a_bearer_token_with_the_methods_scope(youtube: SandboxProcess) -> None:
    for headers in ({}, {"Authorization": "Bearer ya29.not-a-token"}):
        r = httpx.get(f"{youtube.base('youtube')}/youtube/v3/channels?part=id&mine=true", headers=headers)
        assert r.status_code == 401
        assert r.json()["error"]["code"] == 401
        assert _reason(r) == "authError"
    upload_only = _access(youtube, _refresh_token(youtube, scopes=[UPLOAD_SCOPE]))
    r = _api(
        youtube, upload_only, "GET", "/youtube/v3/captions", params={"part": "snippet", "videoId": "x" * 11}
    )
    assert r.status_code == 403
    assert _reason(r) == "insufficientPermissions"


# Resumable uploads -------------------------------------------------------------------------------------
def test_a_resumable_upload_goes_in_256_kib_chunks_answered_308_with_range(youtube: SandboxProcess) -> None:
    token = _access(youtube)
    data = secrets.token_bytes(2 * CHUNK + 1000)
    created = _session(youtube, token, len(data))
    assert created.status_code == 200, created.text
    url = created.headers["Location"]
    assert url.startswith(f"{youtube.url}/youtube/upload/youtube/v3/videos?uploadType=resumable&upload_id=")
    total = len(data)

    nothing_yet = _put(youtube, token, url, f"bytes */{total}")
    assert nothing_yet.status_code == 308
    assert "Range" not in nothing_yet.headers

    first = _put(youtube, token, url, f"bytes 0-{CHUNK - 1}/{total}", data[:CHUNK])
    assert first.status_code == 308
    assert first.headers["Range"] == f"bytes=0-{CHUNK - 1}"

    # A non-final chunk that is not a multiple of 256 KiB is refused, and nothing is taken from it.
    odd = _put(youtube, token, url, f"bytes {CHUNK}-{CHUNK + 999}/{total}", data[CHUNK : CHUNK + 1000])
    assert odd.status_code == 400
    assert _reason(odd) == "badContent"
    assert "256 KiB" in odd.json()["error"]["message"]
    # A chunk that does not start where the server is says where it is.
    ahead = _put(youtube, token, url, f"bytes {2 * CHUNK}-{total - 1}/{total}", data[2 * CHUNK :])
    assert ahead.status_code == 400
    assert _reason(ahead) == "badContent"
    assert ahead.headers["Range"] == f"bytes=0-{CHUNK - 1}"

    status = _put(youtube, token, url, f"bytes */{total}")  # the crash-resume query, mid-way
    assert status.status_code == 308
    assert status.headers["Range"] == f"bytes=0-{CHUNK - 1}"

    second = _put(youtube, token, url, f"bytes {CHUNK}-{2 * CHUNK - 1}/{total}", data[CHUNK : 2 * CHUNK])
    assert second.status_code == 308
    assert second.headers["Range"] == f"bytes=0-{2 * CHUNK - 1}"
    last = _put(youtube, token, url, f"bytes {2 * CHUNK}-{total - 1}/{total}", data[2 * CHUNK :])
    assert last.status_code == 200, last.text
    video = last.json()
    assert video["kind"] == "youtube#video"
    assert VIDEO_ID.match(video["id"])
    assert video["status"]["uploadStatus"] == "uploaded"
    assert video["status"]["privacyStatus"] == "private"
    assert video["snippet"]["title"] == "The Heron's Patience"

    done = _put(youtube, token, url, f"bytes */{total}")  # after completion: the video again
    assert done.status_code == 200
    assert done.json()["id"] == video["id"]

    listed = _api(
        youtube,
        token,
        "GET",
        "/youtube/v3/videos",
        params={"part": "snippet,status,contentDetails", "id": video["id"]},
    )
    item = listed.json()["items"][0]
    assert listed.json()["kind"] == "youtube#videoListResponse"
    assert item["status"]["uploadStatus"] == "processed"
    assert item["snippet"]["tags"] == ["heron"]
    assert "duration" not in item["contentDetails"]  # random bytes are no video to measure

    stored = _videos(youtube)[video["id"]]
    assert stored["complete"] is True
    assert stored["size"] == total
    assert stored["sha256"] == hashlib.sha256(data).hexdigest()
    assert stored["channel"]["title"] == "Sandbox Channel"
    sessions = [
        s for s in youtube.get("/_sandbox/youtube/videos")["sessions"] if s["video_id"] == video["id"]
    ]
    assert sessions == [{"id": sessions[0]["id"], "video_id": video["id"], "received": total, "total": total,
                         "expired": False}]  # fmt: skip


def test_an_upload_in_one_put_and_the_call_log_counts_the_billable_calls(youtube: SandboxProcess) -> None:
    token = _access(youtube)
    since = max([c["seq"] for c in youtube.calls("youtube")], default=0)
    video = _upload(youtube, token, b"tiny video", chunk=8 * CHUNK)
    assert VIDEO_ID.match(video["id"])
    thumb = _api(
        youtube, token, "POST", "/upload/youtube/v3/thumbnails/set", params={"videoId": video["id"]},
        content=_picture(), content_type="image/png",
    )  # fmt: skip
    assert thumb.status_code == 200
    assert _insert_caption(youtube, token, video["id"], SRT).status_code == 200
    calls = [c for c in youtube.calls("youtube") if c["seq"] > since]
    assert [(c["endpoint"], c["identity"], c["usage"]) for c in calls] == [
        ("videos.insert", video["id"], {"uploads": 1, "units": 0}),
        ("thumbnails.set", video["id"], {"uploads": 0, "units": 50}),
        ("captions.insert", video["id"], {"uploads": 0, "units": 400}),
    ]


def test_a_real_video_has_its_duration_measured(youtube: SandboxProcess, tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "color=c=black:s=64x36:r=8:d=3",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", str(clip)],
        check=True, timeout=60,
    )  # fmt: skip
    token = _access(youtube)
    video = _upload(youtube, token, clip.read_bytes())
    r = _api(
        youtube, token, "GET", "/youtube/v3/videos", params={"part": "contentDetails", "id": video["id"]}
    )
    assert r.json()["items"][0]["contentDetails"]["duration"] == "PT3S"


def test_a_final_chunk_applied_but_answered_with_an_error_is_found_by_the_status_query(
    youtube: SandboxProcess,
) -> None:
    token = _access(youtube)
    data = secrets.token_bytes(CHUNK + 10)
    url = _session(youtube, token, len(data)).headers["Location"]
    assert _put(youtube, token, url, f"bytes 0-{CHUNK - 1}/{len(data)}", data[:CHUNK]).status_code == 308
    youtube.fault(provider="youtube", kind="apply_then_fail", status=503, endpoint="^PUT ", count=1)
    try:
        lost = _put(youtube, token, url, f"bytes {CHUNK}-{len(data) - 1}/{len(data)}", data[CHUNK:])
    finally:
        youtube.clear_faults()
    assert lost.status_code == 503
    assert _reason(lost) == "backendError"
    status = _put(youtube, token, url, f"bytes */{len(data)}")
    assert status.status_code == 200
    assert _videos(youtube)[status.json()["id"]]["sha256"] == hashlib.sha256(data).hexdigest()


def test_an_expired_or_unknown_session_answers_404(fresh_sandbox: SandboxProcess) -> None:
    token = _access(fresh_sandbox)
    url = _session(fresh_sandbox, token, 3 * CHUNK).headers["Location"]
    assert (
        _put(fresh_sandbox, token, url, f"bytes 0-{CHUNK - 1}/{3 * CHUNK}", bytes(CHUNK)).status_code == 308
    )
    fresh_sandbox.configure(youtube_session_expiry_s=3600, youtube_clock_offset_s=3601)
    for r in (
        _put(fresh_sandbox, token, url, f"bytes */{3 * CHUNK}"),
        _put(fresh_sandbox, token, url, f"bytes {CHUNK}-{2 * CHUNK - 1}/{3 * CHUNK}", bytes(CHUNK)),
        _put(fresh_sandbox, token, url.replace("upload_id=", "upload_id=x"), f"bytes */{3 * CHUNK}"),
    ):
        assert r.status_code == 404
        assert _reason(r) == "notFound"
    [session] = fresh_sandbox.get("/_sandbox/youtube/videos")["sessions"]
    assert (session["received"], session["total"], session["expired"]) == (CHUNK, 3 * CHUNK, True)


# Metadata ----------------------------------------------------------------------------------------------
def _in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (_metadata("x" * 101), "invalidTitle"),
        (_metadata("Herons <3"), "invalidTitle"),
        (_metadata(""), "invalidTitle"),
        (_metadata(description="é" * 2501), "invalidDescription"),  # 5002 bytes in 2501 characters
        (_metadata(description="a > b"), "invalidDescription"),
        (_metadata(tags=["t" * 100] * 5), "invalidTags"),  # 500 characters, and 4 commas
        (_metadata(privacyStatus="secret"), "invalidVideoMetadata"),
        (_metadata(privacyStatus="public", publishAt=_in(86400)), "invalidPublishAt"),
        (_metadata(publishAt=_in(-60)), "invalidPublishAt"),
    ],
    ids=["title-101", "title-angle", "title-empty", "description-bytes", "description-angle", "tags-total",
         "privacy", "publish-at-public", "publish-at-past"],
)  # fmt: skip
def test_the_metadata_is_checked_as_youtube_does(
    youtube: SandboxProcess, body: dict[str, Any], reason: str
) -> None:
    r = _session(youtube, _access(youtube), 1000, body)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == 400
    assert _reason(r) == reason
    assert "Location" not in r.headers


def test_a_session_needs_the_upload_length(youtube: SandboxProcess) -> None:
    token = _access(youtube)
    r = httpx.post(
        f"{youtube.base('youtube')}/upload/youtube/v3/videos?uploadType=resumable&part=snippet,status",
        headers={**_auth(token), "X-Upload-Content-Type": "video/mp4"},
        json=_metadata(),
    )
    assert r.status_code == 400
    assert _reason(r) == "badRequest"


def test_a_scheduled_private_video_keeps_its_publish_time(youtube: SandboxProcess) -> None:
    token = _access(youtube)
    at = _in(7 * 86400)
    video = _upload(youtube, token, b"scheduled", _metadata(publishAt=at))
    assert video["status"] == {**video["status"], "privacyStatus": "private", "publishAt": at}
    title_100 = _upload(youtube, token, b"long title", _metadata("x" * 100))
    assert title_100["snippet"]["title"] == "x" * 100


# Quota -------------------------------------------------------------------------------------------------
def _next_pacific_day_offset() -> float:
    """Seconds from now to a minute past the next midnight in America/Los_Angeles."""
    now = datetime.now(ZoneInfo("America/Los_Angeles"))
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), now.tzinfo)
    return (midnight - now).total_seconds() + 60


def test_the_uploads_bucket_runs_out_then_resets_on_the_next_pacific_day(
    fresh_sandbox: SandboxProcess,
) -> None:
    fresh_sandbox.configure(youtube_uploads_per_day=2)
    token = _access(fresh_sandbox)
    assert [_session(fresh_sandbox, token, 100).status_code for _ in range(2)] == [200, 200]
    refused = _session(fresh_sandbox, token, 100)
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert (error["code"], error["errors"][0]["reason"], error["errors"][0]["domain"]) == (
        403, "quotaExceeded", "youtube.quota",
    )  # fmt: skip
    # Other methods draw on the units bucket, which still has room.
    mine = _mine(fresh_sandbox, token)
    assert mine.status_code == 200

    quota = fresh_sandbox.get("/_sandbox/youtube/quota")
    client_id, _ = _client(fresh_sandbox)
    today = quota["today"]
    assert quota["usage"] == [{"project": client_id, "day": today, "uploads": 2, "units": 1}]

    fresh_sandbox.configure(youtube_clock_offset_s=_next_pacific_day_offset())
    assert _session(fresh_sandbox, token, 100).status_code == 200
    quota = fresh_sandbox.get("/_sandbox/youtube/quota")
    assert quota["today"] > today
    assert {(q["day"], q["uploads"]) for q in quota["usage"]} == {(today, 2), (quota["today"], 1)}


def test_the_units_bucket_counts_each_method_and_refuses_what_does_not_fit(
    fresh_sandbox: SandboxProcess,
) -> None:
    fresh_sandbox.configure(youtube_units_per_day=52)
    token = _access(fresh_sandbox)
    video = _upload(fresh_sandbox, token, b"v")  # an upload and its chunks cost no units
    bad = _api(
        fresh_sandbox, token, "GET", "/youtube/v3/videos", params={"part": "nonsense", "id": video["id"]}
    )
    assert (bad.status_code, _reason(bad)) == (400, "unknownPart")  # invalid, and still 1 unit
    listed = _api(
        fresh_sandbox,
        token,
        "GET",
        "/youtube/v3/captions",
        params={"part": "snippet", "videoId": video["id"]},
    )
    assert listed.status_code == 200  # 50 units: 51 used
    over = _api(
        fresh_sandbox,
        token,
        "GET",
        "/youtube/v3/captions",
        params={"part": "snippet", "videoId": video["id"]},
    )
    assert (over.status_code, _reason(over)) == (403, "quotaExceeded")
    last = _api(fresh_sandbox, token, "GET", "/youtube/v3/videos", params={"part": "id", "id": video["id"]})
    assert last.status_code == 200  # 1 unit still fits
    [usage] = fresh_sandbox.get("/_sandbox/youtube/quota")["usage"]
    assert (usage["uploads"], usage["units"]) == (1, 52)


# Thumbnails and captions -------------------------------------------------------------------------------
def _set_thumbnail(
    sandbox: SandboxProcess, token: str, video_id: str, data: bytes, kind: str
) -> httpx.Response:
    return _api(
        sandbox, token, "POST", "/upload/youtube/v3/thumbnails/set", params={"videoId": video_id},
        content=data, content_type=kind,
    )  # fmt: skip


def test_a_thumbnail_is_set_and_setting_it_again_replaces_it(youtube: SandboxProcess) -> None:
    token = _access(youtube)
    video = _upload(youtube, token, b"thumbnailed")
    png = _set_thumbnail(youtube, token, video["id"], _picture("PNG"), "image/png")
    assert png.status_code == 200, png.text
    assert png.json()["kind"] == "youtube#thumbnailSetResponse"
    url = png.json()["items"][0]["default"]["url"]
    assert httpx.get(url).content == _picture("PNG")
    jpeg = _set_thumbnail(youtube, token, video["id"], _picture("JPEG"), "image/jpeg")
    assert jpeg.status_code == 200
    assert httpx.get(jpeg.json()["items"][0]["default"]["url"]).content == _picture("JPEG")
    assert _videos(youtube)[video["id"]]["thumbnail"] == hashlib.sha256(_picture("JPEG")).hexdigest()

    unknown = _set_thumbnail(youtube, token, "AAAAAAAAAAA", _picture(), "image/png")
    assert (unknown.status_code, _reason(unknown)) == (404, "videoNotFound")
    too_big = _set_thumbnail(youtube, token, video["id"], bytes(2 * 1024 * 1024 + 1), "image/jpeg")
    assert (too_big.status_code, _reason(too_big)) == (400, "mediaBodyTooLarge")


def test_captions_are_inserted_as_multipart_and_listed(youtube: SandboxProcess) -> None:
    token = _access(youtube)
    video = _upload(youtube, token, b"captioned")
    inserted = _insert_caption(youtube, token, video["id"], SRT)
    assert inserted.status_code == 200, inserted.text
    caption = inserted.json()
    assert caption["kind"] == "youtube#caption"
    assert {k: caption["snippet"][k] for k in ("videoId", "language", "name")} == {
        "videoId": video["id"], "language": "en", "name": "English",
    }  # fmt: skip

    for content, reason in ((b"", "contentRequired"), (b"just some words\n", "invalidCaptionFile")):
        refused = _insert_caption(youtube, token, video["id"], content)
        assert (refused.status_code, _reason(refused)) == (400, reason)
    assert _insert_caption(youtube, token, video["id"], VTT, name="English (WebVTT)").status_code == 200

    listed = _api(
        youtube, token, "GET", "/youtube/v3/captions", params={"part": "snippet", "videoId": video["id"]}
    )
    assert listed.json()["kind"] == "youtube#captionListResponse"
    tracks = [(c["snippet"]["language"], c["snippet"]["name"]) for c in listed.json()["items"]]
    assert tracks == [("en", "English"), ("en", "English (WebVTT)")]
    stored = _videos(youtube)[video["id"]]["captions"]
    assert [c["sha256"] for c in stored] == [hashlib.sha256(SRT).hexdigest(), hashlib.sha256(VTT).hexdigest()]


# Reading back ------------------------------------------------------------------------------------------
def test_the_channels_uploads_are_searched_for_a_marker_tag(fresh_sandbox: SandboxProcess) -> None:
    token = _access(fresh_sandbox)
    markers = [f"nvd-{secrets.token_hex(6)}" for _ in range(3)]
    uploaded = [
        _upload(fresh_sandbox, token, marker.encode(), _metadata(marker, tags=["heron", marker]))["id"]
        for marker in markers
    ]
    _session(fresh_sandbox, token, 100)  # an upload that never finished is not among them

    [channel] = _mine(fresh_sandbox, token, "contentDetails").json()["items"]
    playlist = channel["contentDetails"]["relatedPlaylists"]["uploads"]
    assert playlist == "UU" + channel["id"][2:]

    newest = {"part": "contentDetails", "playlistId": playlist, "maxResults": 50}
    items = _api(fresh_sandbox, token, "GET", "/youtube/v3/playlistItems", params=newest).json()
    ids = [i["contentDetails"]["videoId"] for i in items["items"]]
    assert ids == uploaded[::-1]  # newest first
    wanted = {"part": "snippet,status", "id": ",".join(ids)}
    videos = _api(fresh_sandbox, token, "GET", "/youtube/v3/videos", params=wanted).json()["items"]
    found = [v["id"] for v in videos if markers[1] in v["snippet"].get("tags", [])]
    assert found == [uploaded[1]]

    first = {"part": "contentDetails", "playlistId": playlist, "maxResults": 2}
    page = _api(fresh_sandbox, token, "GET", "/youtube/v3/playlistItems", params=first).json()
    following = {**first, "pageToken": page["nextPageToken"]}
    rest = _api(fresh_sandbox, token, "GET", "/youtube/v3/playlistItems", params=following).json()
    assert [i["contentDetails"]["videoId"] for i in page["items"] + rest["items"]] == ids
    assert "nextPageToken" not in rest


def test_the_watch_page_plays_the_video(youtube: SandboxProcess) -> None:
    token = _access(youtube)
    data = secrets.token_bytes(5000)
    video = _upload(youtube, token, data, _metadata("Dawn & Dusk"))
    assert _insert_caption(youtube, token, video["id"], SRT).status_code == 200
    url = _videos(youtube)[video["id"]]["url"]
    assert url == f"{youtube.url}/youtube/watch?v={video['id']}"
    page = httpx.get(url)  # no sign-in: a public page
    assert page.status_code == 200
    assert "Dawn &amp;" in page.text
    assert "private" in page.text
    assert "en: English" in page.text
    src = re.search(r'<video src="([^"]+)"', page.text)
    assert src is not None
    part = httpx.get(src.group(1), headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.content == data[100:200]
    assert httpx.get(f"{youtube.url}/youtube/watch?v=AAAAAAAAAAA").status_code == 404


# Restart -----------------------------------------------------------------------------------------------
def test_a_restarted_sandbox_keeps_videos_sessions_tokens_and_quota(fresh_sandbox: SandboxProcess) -> None:
    refresh = _refresh_token(fresh_sandbox)
    token = _access(fresh_sandbox, refresh)
    video = _upload(fresh_sandbox, token, b"kept")
    data = secrets.token_bytes(CHUNK + 7)
    url = _session(fresh_sandbox, token, len(data)).headers["Location"]
    assert (
        _put(fresh_sandbox, token, url, f"bytes 0-{CHUNK - 1}/{len(data)}", data[:CHUNK]).status_code == 308
    )
    quota = fresh_sandbox.get("/_sandbox/youtube/quota")["usage"]

    fresh_sandbox.restart()

    assert fresh_sandbox.get("/_sandbox/youtube/quota")["usage"] == quota
    listed = _api(
        fresh_sandbox, token, "GET", "/youtube/v3/videos", params={"part": "snippet", "id": video["id"]}
    )
    assert [v["id"] for v in listed.json()["items"]] == [video["id"]]
    status = _put(fresh_sandbox, token, url, f"bytes */{len(data)}")
    assert (status.status_code, status.headers["Range"]) == (308, f"bytes=0-{CHUNK - 1}")
    last = _put(fresh_sandbox, token, url, f"bytes {CHUNK}-{len(data) - 1}/{len(data)}", data[CHUNK:])
    assert last.status_code == 200
    assert _videos(fresh_sandbox)[last.json()["id"]]["sha256"] == hashlib.sha256(data).hexdigest()
    assert _token(fresh_sandbox, {"grant_type": "refresh_token", "refresh_token": refresh}).status_code == 200
