"""thumbnails.set: a JPEG or PNG of at most 2 MB as a video's custom thumbnail; setting it again
replaces it."""

from __future__ import annotations

import hashlib
import io
from typing import Any

from PIL import Image

from sandbox.app import IDENTITY_HEADER
from sandbox.http import Request, Response, json_response
from sandbox.youtube.errors import YouTubeError
from sandbox.youtube.grants import Grant
from sandbox.youtube.resources import etag, thumbnails
from sandbox.youtube.state import YouTube

MAX_BYTES = 2 * 1024 * 1024
_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png"}


def set_thumbnail(youtube: YouTube, request: Request, grant: Grant) -> Response:
    video = owned_video(youtube, request.arg("videoId") or "", grant)
    data = request.body
    if not data:
        raise YouTubeError(400, "mediaBodyRequired", "The request does not include the image content.")
    if len(data) > MAX_BYTES:
        raise YouTubeError(400, "mediaBodyTooLarge", "The thumbnail image is larger than 2 MB.")
    try:
        with Image.open(io.BytesIO(data)) as picture:
            kind, (width, height) = picture.format, picture.size
    except (OSError, ValueError) as exc:
        raise YouTubeError(400, "invalidImage", "The provided image content is invalid.") from exc
    if kind not in _FORMATS:
        raise YouTubeError(400, "invalidImage", f"The thumbnail must be a JPEG or PNG, not {kind}.")
    with youtube.lock:
        youtube.thumbnail_file(video["id"]).write_bytes(data)
        stored = youtube.video(video["id"]) or video
        stored["thumbnail"] = {
            "sha256": hashlib.sha256(data).hexdigest(),
            "content_type": _FORMATS[kind],
            "width": width,
            "height": height,
        }
        youtube.put_video(stored)
    body: dict[str, Any] = {"kind": "youtube#thumbnailSetResponse", "items": [thumbnails(youtube, stored)]}
    body["etag"] = etag(body)
    return json_response(200, body, {IDENTITY_HEADER: video["id"]})


def owned_video(youtube: YouTube, video_id: str, grant: Grant) -> dict[str, Any]:
    """A complete video of the caller's channel: 404 videoNotFound, or 403 forbidden for another's."""
    video = youtube.complete_video(video_id) if video_id else None
    if video is None:
        raise YouTubeError(
            404, "videoNotFound", "The video identified by the videoId parameter cannot be found."
        )
    if video["channel_id"] != grant.channel_id:
        raise YouTubeError(403, "forbidden", "The video belongs to another channel.")
    return video
