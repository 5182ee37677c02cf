"""videos.insert as a resumable upload: the session POST (the metadata), then PUTs of the bytes in
chunks of 256 KiB multiples with `Content-Range`, answered 308 with `Range` until the last one,
and the status query (`Content-Range: bytes */N`) a client resumes from after a crash.

The video exists from the POST on (the control API lists it, incomplete); the Data API knows it
only once its last byte arrived. Bytes go to `<media>/youtube/<id>.video`, written at the offset
the session has counted, so a restart keeps an upload that can go on.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any
from urllib.parse import quote

from sandbox.app import IDENTITY_HEADER
from sandbox.http import Request, Response, json_response
from sandbox.youtube import clock, metadata
from sandbox.youtube.errors import YouTubeError
from sandbox.youtube.grants import Grant
from sandbox.youtube.resources import VIDEO_PARTS, parts, video_resource
from sandbox.youtube.state import SESSION, YouTube, new_id

CHUNK = 256 * 1024
_RANGE = re.compile(r"^bytes (?:(\d+)-(\d+)|\*)/(\d+|\*)$")


def create_session(youtube: YouTube, request: Request, grant: Grant) -> Response:
    if request.arg("uploadType") != "resumable":
        raise YouTubeError(400, "badRequest", "The sandbox takes videos.insert as uploadType=resumable only.")
    wanted = parts(request.arg("part"), VIDEO_PARTS)
    size = request.header("x-upload-content-length")
    if not size.isdigit() or int(size) <= 0:
        raise YouTubeError(400, "badRequest", "X-Upload-Content-Length must give the video's size in bytes.")
    content_type = request.header("x-upload-content-type") or "application/octet-stream"
    if not content_type.startswith("video/") and content_type != "application/octet-stream":
        raise YouTubeError(400, "badRequest", f"X-Upload-Content-Type must be video/*, not {content_type}.")
    try:
        body = request.json()
    except ValueError as exc:
        raise YouTubeError(400, "parseError", f"The request body is not JSON: {exc}") from exc
    now = youtube.now()
    snippet, status = metadata.validate(body, now)
    with youtube.lock:
        video_id = youtube.new_video_id()
        youtube.put_video(
            {
                "id": video_id,
                "channel_id": grant.channel_id,
                "project": grant.project,
                "snippet": snippet,
                "status": status,
                "content_type": content_type,
                "size": int(size),
                "complete": False,
                "created": now,
                "published_at": None,
                "sha256": None,
                "thumbnail": None,
            }
        )
        upload_id = "AJRbA5" + new_id(60)
        session = {
            "id": upload_id,
            "video_id": video_id,
            "total": int(size),
            "received": 0,
            "created": now,
            "parts": wanted,
        }
        youtube.store.put(SESSION, upload_id, session)
    location = (
        f"{youtube.api_base}/upload/youtube/v3/videos?uploadType=resumable&upload_id={quote(upload_id)}"
    )
    headers = {"Location": location, "X-GUploader-UploadID": upload_id, IDENTITY_HEADER: video_id}
    return Response(200, b"", headers)


def put_bytes(youtube: YouTube, request: Request, grant: Grant) -> Response:
    """A chunk, the last chunk, or a status query, on the session named by `upload_id`."""
    with youtube.lock:
        session = live_session(youtube, request.arg("upload_id") or "")
        video = youtube.video(session["video_id"])
        assert video is not None
        if not video["complete"] and session["received"] == session["total"]:
            video = _complete(youtube, video)  # stopped between the last write and its completion
        if video["complete"]:
            return _finished(youtube, session, video)
        first, last, total = _content_range(request, session)
        if first is None:  # a status query
            return _incomplete(session)
        if total != session["total"]:
            raise YouTubeError(
                400, "badContent", f"The upload's size is {session['total']} bytes, not {total}."
            )
        if first != session["received"]:
            raise YouTubeError(
                400,
                "badContent",
                f"The chunk starts at byte {first}, but the upload has {session['received']} bytes.",
                _range_header(session),
            )
        if last is None or last - first + 1 != len(request.body) or last >= total:
            raise YouTubeError(400, "badContent", "Content-Range does not match the chunk's length.")
        final = last == total - 1
        if not final and len(request.body) % CHUNK:
            raise YouTubeError(
                400,
                "badContent",
                f"A chunk other than the last must be a multiple of 256 KiB ({CHUNK} bytes);"
                f" this one has {len(request.body)}.",
                _range_header(session),
            )
        _write(youtube, video, first, request.body)
        session["received"] = last + 1
        youtube.store.put(SESSION, session["id"], session)
        if not final:
            return _incomplete(session)
        video = _complete(youtube, video)
    time.sleep(youtube.config.scaled(youtube.config.youtube_seconds))  # processing, outside the lock
    return json_response(200, video_resource(youtube, video, session["parts"], upload_status="uploaded"))


def live_session(youtube: YouTube, upload_id: str) -> dict[str, Any]:
    session = youtube.store.get(SESSION, upload_id)
    if session is None or expired(youtube, session):
        raise YouTubeError(404, "notFound", "The upload session does not exist or has expired.")
    return session


def expired(youtube: YouTube, session: dict[str, Any]) -> bool:
    """Sessions live `youtube_session_expiry_s` on YouTube's clock, read now (so a test can shorten it)."""
    return youtube.now() >= float(session["created"]) + youtube.config.youtube_session_expiry_s


def _content_range(request: Request, session: dict[str, Any]) -> tuple[int | None, int | None, int]:
    """(first, last, total) of a chunk; first None for a status query. A PUT without Content-Range
    carries the rest of the file."""
    header = request.header("content-range").strip()
    if not header:
        if not request.body:
            raise YouTubeError(400, "badContent", "A PUT needs Content-Range or the rest of the file.")
        first = session["received"]
        return first, first + len(request.body) - 1, session["total"]
    found = _RANGE.match(header)
    if found is None:
        raise YouTubeError(
            400, "badContent", f"Content-Range {header!r} is not `bytes a-b/N` or `bytes */N`."
        )
    first, last, total = found.groups()
    size = session["total"] if total == "*" else int(total)
    if first is None:
        if request.body:
            raise YouTubeError(400, "badContent", "A status query (bytes */N) has no body.")
        return None, None, size
    return int(first), int(last), size


def _write(youtube: YouTube, video: dict[str, Any], offset: int, data: bytes) -> None:
    path = youtube.video_file(video["id"])
    with path.open("r+b" if path.exists() else "wb") as out:
        out.seek(offset)
        out.write(data)
        out.truncate()


def _complete(youtube: YouTube, video: dict[str, Any]) -> dict[str, Any]:
    with youtube.video_file(video["id"]).open("rb") as received:
        digest = hashlib.file_digest(received, "sha256").hexdigest()
    now = youtube.now()
    video.update(complete=True, sha256=digest, completed=now, published_at=clock.rfc3339(now))
    youtube.put_video(video)
    return video


def _finished(youtube: YouTube, session: dict[str, Any], video: dict[str, Any]) -> Response:
    return json_response(200, video_resource(youtube, video, session["parts"]))


def _incomplete(session: dict[str, Any]) -> Response:
    return Response(308, b"", _range_header(session))


def _range_header(session: dict[str, Any]) -> dict[str, str]:
    """What the session has: `Range: bytes=0-<last>`, absent while it has nothing."""
    return {"Range": f"bytes=0-{session['received'] - 1}"} if session["received"] else {}


def session_view(youtube: YouTube, session: dict[str, Any]) -> dict[str, Any]:
    """A session as the control API lists it."""
    return {
        "id": session["id"],
        "video_id": session["video_id"],
        "received": session["received"],
        "total": session["total"],
        "expired": expired(youtube, session),
    }
