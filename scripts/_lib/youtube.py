"""YouTube Data API v3 for one upload: the OAuth refresh, the resumable upload, thumbnails and
captions, Google's error envelope made into script errors, and the quota this run spent."""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from scripts._lib import env
from scripts._lib.errors import KEY_FIX, ScriptError, by_http_status, permanent, transient
from scripts._lib.http import json_body, make_client, send

PROVIDER = "youtube"
DEFAULT_BASE_URL = "https://www.googleapis.com"
DEFAULT_OAUTH_BASE_URL = "https://oauth2.googleapis.com"
VIDEOS_UPLOAD = "/upload/youtube/v3/videos"
CHUNK_UNIT = 256 * 1024  # non-final chunks of a resumable upload are multiples of this
# Quotas reset at midnight Pacific time (the zone, with its summer time, not a fixed offset).
QUOTA_ZONE = "America/Los_Angeles"
# A token this young that is refused is refused for good; an older one may just have expired.
FRESH_TOKEN_S = 60.0

# What each call takes from the project's daily units (videos.insert takes from its own bucket of
# uploads instead; the resumable chunks and status queries take nothing).
UNIT_COSTS = {
    "videos.insert": 0,
    "upload": 0,
    "videos.list": 1,
    "channels.list": 1,
    "playlistItems.list": 1,
    "thumbnails.set": 50,
    "captions.list": 50,
    "captions.insert": 400,
}
FREE_CALLS = frozenset({"upload"})

RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "backendError", "internalError"})
# A 400 about the metadata: the fix is the operator's, in plain words.
FIXES = {
    "invalidTitle": "YouTube refused the title: at most 100 characters and no < or >; edit Title in Notion.",
    "invalidDescription": (
        "YouTube refused the description: at most 5000 bytes and no < or >; edit the description."
    ),
    "invalidTags": (
        "YouTube refused the tags: at most 500 characters in all (a tag with spaces counts its quotes, and "
        "the commas between tags count); remove some tags."
    ),
    "invalidPublishAt": (
        "YouTube refused the publish time: it must be in the future, and a scheduled video must be private "
        "until then; fix the publish time or the privacy."
    ),
    "invalidVideoMetadata": (
        "YouTube refused the video's details: privacy must be private, unlisted or public; fix the privacy."
    ),
    "invalidCategoryId": "YouTube refused the category id; use one of YouTube's video categories (22).",
    "mediaBodyTooLarge": "YouTube refused the thumbnail: at most 2 MB; make it smaller.",
    "invalidImage": "YouTube refused the thumbnail image: it must be a JPEG or PNG; make it again.",
    "invalidCaptionFile": "YouTube refused the captions file: it must be SRT or WebVTT; make them again.",
    "contentRequired": "YouTube refused the captions file: it is empty; make the captions again.",
}


@dataclass
class Credentials:
    client_id: str
    client_secret: str
    refresh_token: str


@dataclass
class Quota:
    """What this run spent, counted as YouTube counts it (every request at least 1 unit but chunks)."""

    uploads: int = 0
    units: int = 0

    def spend(self, call: str) -> None:
        if call == "videos.insert":
            self.uploads += 1
        elif call not in FREE_CALLS:
            self.units += max(1, UNIT_COSTS.get(call, 1))

    def as_meta(self) -> dict[str, int]:
        return {"uploads": self.uploads, "units": self.units}


@dataclass
class Upload:
    """Where a resumable session stands: bytes received, or (once complete) the video resource."""

    received: int
    video: dict[str, Any] | None = None


class SessionGone(Exception):
    """The upload session expired or is unknown (404/410): what it received is lost."""


class ChunkRefused(Exception):
    """A chunk refused because the server holds other bytes than the client thought (400)."""


def seconds_to_quota_reset(now: datetime | None = None) -> float:
    """Seconds from `now` to the next midnight in Pacific time, where YouTube's quotas reset."""
    from zoneinfo import ZoneInfo  # only a quota error needs the zone

    zone = ZoneInfo(QUOTA_ZONE)
    utc_now = (now or datetime.now(UTC)).astimezone(UTC)
    local = utc_now.astimezone(zone)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    # Subtracted in UTC: two times of one zone subtract as wall clocks, wrong on a summer-time day.
    return (midnight.astimezone(UTC) - utc_now).total_seconds()


class YouTube:
    """One run's calls: a bearer token from the refresh token, sent on every request."""

    def __init__(self, http: httpx.Client, credentials: Credentials, token_url: str) -> None:
        self.http = http
        self.credentials = credentials
        self.token_url = token_url
        self.quota = Quota()
        self._token = ""
        self._token_at = 0.0

    def __enter__(self) -> YouTube:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def refresh(self) -> None:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": self.credentials.refresh_token,
            "client_id": self.credentials.client_id,
            "client_secret": self.credentials.client_secret,
        }
        response = send(self.http, "Google's sign-in", "POST", self.token_url, data=form)
        payload = json_body(response)
        if response.status_code != 200:
            raise oauth_error(response.status_code, payload)
        token = payload.get("access_token")
        if not isinstance(token, str) or not token:
            raise transient("Google's sign-in answered without an access token; retry later.", "bad_answer")
        self._token = token
        self._token_at = time.monotonic()

    def call(
        self, name: str, method: str, url: str, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One request with the bearer token; a 401 on a token older than a minute refreshes it once."""
        for attempt in (1, 2):
            response = send(
                self.http,
                "YouTube",
                method,
                url,
                headers={**(headers or {}), "Authorization": f"Bearer {self._token}"},
                follow_redirects=False,  # 308 is the upload's "go on", not a redirect
                **kwargs,
            )
            self.quota.spend(name)
            stale = time.monotonic() - self._token_at > FRESH_TOKEN_S
            if response.status_code != 401 or attempt == 2 or not stale:
                return response
            self.refresh()
        raise AssertionError("unreachable")

    def error(self, response: httpx.Response, what: str) -> ScriptError:
        """The answer as a script error, with the access token kept out of the message."""
        error = classify(response.status_code, json_body(response), what)
        error.message = self._scrub(error.message)
        return error

    def _said(self, response: httpx.Response, fallback: str) -> str:
        return self._scrub(_message(json_body(response)) or fallback)

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "<access token>") if self._token else text

    # The resumable upload --------------------------------------------------------------------------
    def create_session(self, metadata: dict[str, Any], size: int, content_type: str) -> str:
        response = self.call(
            "videos.insert",
            "POST",
            VIDEOS_UPLOAD,
            params={"uploadType": "resumable", "part": "snippet,status"},
            headers={"X-Upload-Content-Length": str(size), "X-Upload-Content-Type": content_type},
            json=metadata,
        )
        location = str(response.headers.get("Location", ""))
        if response.status_code != 200:
            raise self.error(response, "the upload")
        if not location:
            raise transient("YouTube opened the upload without a session URL; retry later.", "bad_answer")
        return location

    def status(self, session: str, size: int) -> Upload:
        """Asks the session what it has; SessionGone when it no longer exists."""
        response = self.call(
            "upload", "PUT", session, headers={"Content-Range": f"bytes */{size}"}, content=b""
        )
        return self._upload_answer(response, size)

    def put_chunk(self, session: str, data: bytes, start: int, size: int) -> Upload:
        end = start + len(data) - 1
        response = self.call(
            "upload", "PUT", session, headers={"Content-Range": f"bytes {start}-{end}/{size}"}, content=data
        )
        if response.status_code == 400:
            raise ChunkRefused(self._said(response, f"bytes {start}-{end} refused"))
        return self._upload_answer(response, size)

    def _upload_answer(self, response: httpx.Response, size: int) -> Upload:
        status = response.status_code
        if status == 308:
            return Upload(received_bytes(response.headers.get("Range")))
        if status in (200, 201):
            video = json_body(response)
            if not video.get("id"):
                raise transient("YouTube finished the upload without a video id; retry later.", "bad_answer")
            return Upload(size, video)
        if status in (404, 410):
            raise SessionGone(self._said(response, f"HTTP {status}"))
        raise self.error(response, "the upload")

    # Finding an earlier upload by its marker tag ----------------------------------------------------
    def uploads_playlist(self) -> str:
        response = self.call(
            "channels.list", "GET", "/youtube/v3/channels", params={"part": "contentDetails", "mine": "true"}
        )
        if response.status_code != 200:
            raise self.error(response, "the channel lookup")
        items = _items(json_body(response))
        playlist = _get(items[0], "contentDetails", "relatedPlaylists", "uploads") if items else None
        if not isinstance(playlist, str) or not playlist:
            raise permanent(
                "The signed-in Google account has no YouTube channel; create it, then sign in again.",
                "noChannel",
            )
        return playlist

    def recent_uploads(self, playlist: str) -> list[str]:
        """The ids of the channel's newest uploads (one page of 50)."""
        params = {"part": "contentDetails", "playlistId": playlist, "maxResults": "50"}
        response = self.call("playlistItems.list", "GET", "/youtube/v3/playlistItems", params=params)
        if response.status_code == 404:
            return []  # a channel without uploads may have no uploads playlist yet
        if response.status_code != 200:
            raise self.error(response, "the list of uploads")
        ids = [_get(item, "contentDetails", "videoId") for item in _items(json_body(response))]
        return [i for i in ids if isinstance(i, str) and i]

    def videos(self, ids: list[str]) -> list[dict[str, Any]]:
        if not ids:
            return []
        params = {"part": "snippet,status", "id": ",".join(ids)}
        response = self.call("videos.list", "GET", "/youtube/v3/videos", params=params)
        if response.status_code != 200:
            raise self.error(response, "the video lookup")
        return _items(json_body(response))

    # After the upload -------------------------------------------------------------------------------
    def set_thumbnail(self, video_id: str, image: bytes, content_type: str) -> None:
        response = self.call(
            "thumbnails.set",
            "POST",
            "/upload/youtube/v3/thumbnails/set",
            params={"videoId": video_id},
            headers={"Content-Type": content_type},
            content=image,
        )
        if response.status_code != 200:
            raise self.error(response, "the thumbnail")

    def captions(self, video_id: str) -> list[dict[str, Any]]:
        params = {"part": "snippet", "videoId": video_id}
        response = self.call("captions.list", "GET", "/youtube/v3/captions", params=params)
        if response.status_code != 200:
            raise self.error(response, "the caption list")
        return _items(json_body(response))

    def insert_caption(self, video_id: str, language: str, name: str, text: bytes) -> str:
        snippet = {"snippet": {"videoId": video_id, "language": language, "name": name, "isDraft": False}}
        body, content_type = multipart_related(json.dumps(snippet).encode(), text)
        response = self.call(
            "captions.insert",
            "POST",
            "/upload/youtube/v3/captions",
            params={"part": "snippet", "uploadType": "multipart"},
            headers={"Content-Type": content_type},
            content=body,
        )
        caption_id = json_body(response).get("id")
        if response.status_code != 200:
            raise self.error(response, "the captions")
        if not isinstance(caption_id, str) or not caption_id:
            raise transient("YouTube took the captions without a caption id; retry later.", "bad_answer")
        return caption_id


def client_from_env(transport: httpx.BaseTransport | None = None) -> YouTube:
    credentials = Credentials(
        env.require("YOUTUBE_CLIENT_ID"),
        env.require("YOUTUBE_CLIENT_SECRET"),
        env.require("YOUTUBE_REFRESH_TOKEN"),
    )
    oauth = env.base_url("YOUTUBE_OAUTH_BASE_URL", DEFAULT_OAUTH_BASE_URL)
    # Chunks of several MB on a slow uplink take a while: the read timeout is generous.
    http = make_client(api_base_url(), timeout=300.0, transport=transport)
    return YouTube(http, credentials, f"{oauth}/token")


def api_base_url() -> str:
    return env.base_url("YOUTUBE_BASE_URL", DEFAULT_BASE_URL)


def multipart_related(metadata: bytes, media: bytes) -> tuple[bytes, str]:
    """Google's multipart upload: a JSON part, then the file, with a boundary found in neither."""
    boundary = "nvd" + secrets.token_hex(16)
    while boundary.encode() in metadata or boundary.encode() in media:
        boundary = "nvd" + secrets.token_hex(16)
    head = f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n".encode()
    part = f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n".encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head + metadata + part + media + tail, f"multipart/related; boundary={boundary}"


def received_bytes(range_header: str | None) -> int:
    """`Range: bytes=0-b` -> b + 1 bytes received; no header -> nothing received yet."""
    if not range_header:
        return 0
    found = re.fullmatch(r"\s*bytes=0-(\d+)\s*", range_header)
    if not found:
        raise transient(f"YouTube answered the upload with a Range it does not explain: {range_header!r}.")
    return int(found.group(1)) + 1


def classify(status: int, payload: dict[str, Any], what: str) -> ScriptError:
    """Google's error envelope ({"error":{"code","message","errors":[{"domain","reason"}]}}) as a
    script error: its first reason decides, the HTTP status when there is none."""
    reason = _reason(payload)
    message = _message(payload)
    said = f" YouTube said: {message}" if message else ""
    code: str | int = reason or status
    if reason == "quotaExceeded":
        return _quota_error(
            f"YouTube's daily quota for this Google Cloud project is used up ({what}); it resets at midnight "
            "Pacific time, when this goes on by itself. Ask Google for more quota to upload more a day.",
            reason,
        )
    if reason == "uploadLimitExceeded":
        return _quota_error(
            "This channel has uploaded as many videos as YouTube allows in a day; it goes on by itself "
            "tomorrow.",
            reason,
        )
    if reason in RATE_REASONS or status in (408, 429) or status >= 500:
        return transient(f"YouTube is busy ({reason or status}, {what}); retry later.{said}", code)
    if reason in FIXES:
        return permanent(FIXES[reason], reason)
    if status == 401:
        return permanent(
            f"YouTube refused the sign-in ({reason or status}, {what}) although it was just renewed; sign in "
            f"to the channel again.{said}",
            code,
        )
    if status == 403:
        return permanent(
            f"YouTube refused {what} for this channel ({reason or 'forbidden'}): check that the channel is "
            f"verified and the sign-in granted the upload rights, then sign in again.{said}",
            code,
        )
    return by_http_status(status, f"YouTube refused {what} ({reason or status}).{said}", code)


def oauth_error(status: int, payload: dict[str, Any]) -> ScriptError:
    """The token endpoint's {"error": "...", "error_description": "..."}."""
    error = payload.get("error")
    code = error if isinstance(error, str) and error else status
    if code == "invalid_grant":
        return permanent(
            "The YouTube sign-in for this channel has expired or was revoked; sign in again.", "invalid_grant"
        )
    if code in ("invalid_client", "unauthorized_client"):
        return permanent(
            f"Google refused the OAuth client ({code}): "
            + KEY_FIX.format("YOUTUBE_CLIENT_ID and YOUTUBE_CLIENT_SECRET (one OAuth client)"),
            code,
        )
    return by_http_status(status, f"Google's sign-in refused to renew the access token ({code})", code)


def _quota_error(message: str, reason: str) -> ScriptError:
    return ScriptError("transient", message, reason, retry_after_s=round(seconds_to_quota_reset(), 1))


def _reason(payload: dict[str, Any]) -> str:
    error = payload.get("error")
    if not isinstance(error, dict):
        return ""
    for item in error.get("errors") or []:
        if isinstance(item, dict) and item.get("reason"):
            return str(item["reason"])
    return ""


def _message(payload: dict[str, Any]) -> str:
    error = payload.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or "").strip()
    return ""


def _items(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return [item for item in payload.get("items") or [] if isinstance(item, dict)]


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data
