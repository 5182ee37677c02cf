"""What a client reads back: videos.list by id, channels.list (mine), and the uploads playlist
through playlistItems.list, newest first, 50 at most a page."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from sandbox.http import Request, Response, json_response
from sandbox.youtube.errors import YouTubeError
from sandbox.youtube.grants import Grant
from sandbox.youtube.resources import VIDEO_PARTS, etag, parts, video_resource, visible
from sandbox.youtube.state import VIDEO, YouTube

CHANNEL_PARTS = frozenset({"id", "snippet", "contentDetails", "statistics", "status", "brandingSettings"})
PLAYLIST_ITEM_PARTS = frozenset({"id", "snippet", "contentDetails", "status"})
_MAX_RESULTS = 50


def videos_list(youtube: YouTube, request: Request, grant: Grant) -> Response:
    wanted = parts(request.arg("part"), VIDEO_PARTS)
    ids = [i for i in (request.arg("id") or "").split(",") if i]
    if not ids:
        raise YouTubeError(
            400, "missingRequiredParameter", "No filter selected. Expected one of: id, myRating, chart."
        )
    if len(ids) > _MAX_RESULTS:
        raise YouTubeError(400, "invalidValue", f"At most {_MAX_RESULTS} ids at a time.")
    now = youtube.now()
    items = []
    for video_id in ids:
        video = youtube.complete_video(video_id)
        if video is not None and visible(video, grant.channel_id, now):
            items.append(video_resource(youtube, video, wanted))
    return json_response(200, _list_body("youtube#videoListResponse", items, len(items), len(items)))


def channels_list(youtube: YouTube, request: Request, grant: Grant) -> Response:
    wanted = parts(request.arg("part"), CHANNEL_PARTS)
    if request.arg("mine") == "true":
        channels = [youtube.channel(grant.channel_id)]
    elif request.arg("id"):
        channels = [youtube.channel(i) for i in (request.arg("id") or "").split(",") if i]
    else:
        raise YouTubeError(400, "missingRequiredParameter", "No filter selected. Expected one of: mine, id.")
    items = [_channel_resource(youtube, c, wanted) for c in channels if c is not None]
    return json_response(200, _list_body("youtube#channelListResponse", items, len(items), len(items)))


def playlist_items_list(youtube: YouTube, request: Request, grant: Grant) -> Response:
    wanted = parts(request.arg("part"), PLAYLIST_ITEM_PARTS)
    playlist = request.arg("playlistId") or ""
    if not playlist:
        raise YouTubeError(
            400, "missingRequiredParameter", "No filter selected. Expected one of: playlistId, id."
        )
    channel = youtube.channel("UC" + playlist[2:]) if playlist.startswith("UU") else None
    if channel is None:
        raise YouTubeError(404, "playlistNotFound", f"The playlist {playlist} cannot be found.")
    try:
        size = int(request.arg("maxResults", "5") or 5)  # the API's default page is 5
    except ValueError as exc:
        raise YouTubeError(400, "invalidValue", "maxResults must be an integer.") from exc
    if not 0 <= size <= _MAX_RESULTS:
        raise YouTubeError(400, "invalidValue", f"maxResults must be within 0..{_MAX_RESULTS}.")
    offset = _offset(request.arg("pageToken"))
    now = youtube.now()
    with youtube.store.lock:
        uploads = [
            v for v in youtube.store.iter_raw(VIDEO)
            if v["channel_id"] == channel["id"] and v["complete"] and visible(v, grant.channel_id, now)
        ]  # fmt: skip
        uploads = [dict(v) for v in sorted(uploads, key=lambda v: v["completed"], reverse=True)]
    page = uploads[offset : offset + size]
    items = [_playlist_item(youtube, playlist, v, wanted) for v in page]
    body = _list_body("youtube#playlistItemListResponse", items, len(uploads), size)
    if size and offset + size < len(uploads):
        body["nextPageToken"] = _token(offset + size)
    if offset:
        body["prevPageToken"] = _token(max(0, offset - size))
    return json_response(200, body)


def _channel_resource(youtube: YouTube, channel: dict[str, Any], wanted: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "youtube#channel", "etag": "", "id": channel["id"]}
    if "snippet" in wanted:
        out["snippet"] = {"title": channel["title"], "description": "", "publishedAt": channel["created"]}
    if "contentDetails" in wanted:
        out["contentDetails"] = {"relatedPlaylists": {"likes": "", "uploads": "UU" + channel["id"][2:]}}
    out["etag"] = etag(out)
    return out


def _playlist_item(
    youtube: YouTube, playlist: str, video: dict[str, Any], wanted: list[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "youtube#playlistItem", "etag": "", "id": etag([playlist, video["id"]])}
    if "snippet" in wanted:
        resource = video_resource(youtube, video, ["snippet"])["snippet"]
        out["snippet"] = {
            "publishedAt": video["published_at"],
            "channelId": video["channel_id"],
            "title": resource["title"],
            "description": resource["description"],
            "playlistId": playlist,
            "resourceId": {"kind": "youtube#video", "videoId": video["id"]},
        }
    if "contentDetails" in wanted:
        out["contentDetails"] = {"videoId": video["id"], "videoPublishedAt": video["published_at"]}
    if "status" in wanted:
        out["status"] = {
            "privacyStatus": video_resource(youtube, video, ["status"])["status"]["privacyStatus"]
        }
    out["etag"] = etag(out)
    return out


def _list_body(kind: str, items: list[dict[str, Any]], total: int, per_page: int) -> dict[str, Any]:
    return {
        "kind": kind,
        "etag": etag([i["etag"] for i in items]),
        "pageInfo": {"totalResults": total, "resultsPerPage": per_page},
        "items": items,
    }


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"CAU{offset}".encode()).decode().rstrip("=")


def _offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if not text.startswith("CAU"):
            raise ValueError(text)
        return int(text[3:])
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise YouTubeError(400, "invalidPageToken", "The request specifies an invalid page token.") from exc
