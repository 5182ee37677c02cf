"""The video and caption resources as the Data API shows them, by the `part`s asked for."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from typing import Any

from sandbox.media import ffmpeg
from sandbox.youtube import clock
from sandbox.youtube.errors import YouTubeError
from sandbox.youtube.state import YouTube

# Parts a video has; the sandbox fills id, snippet, status and contentDetails, and leaves out the rest.
VIDEO_PARTS = frozenset(
    {"id", "snippet", "status", "contentDetails", "statistics", "player", "processingDetails",
     "recordingDetails", "topicDetails", "localizations", "liveStreamingDetails"}
)  # fmt: skip
_DURATION = re.compile(rb"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")


def parts(value: str | None, known: frozenset[str]) -> list[str]:
    """The `part` parameter as a list; 400 when it is missing or names a part the resource lacks."""
    names = [p.strip() for p in (value or "").split(",") if p.strip()]
    if not names:
        raise YouTubeError(400, "required", "Required parameter: part")
    unknown = [p for p in names if p not in known]
    if unknown:
        raise YouTubeError(400, "unknownPart", f"'{unknown[0]}'")
    return names


def etag(obj: Any) -> str:
    raw = hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).digest()
    return raw.hex()[:27]


def effective_status(video: dict[str, Any], now: float) -> dict[str, Any]:
    """The status now: a scheduled video turns public, losing publishAt, once its time has come."""
    status = dict(video["status"])
    publish_at = status.get("publishAt")
    if publish_at and clock.parse_rfc3339(publish_at) <= now:
        status.pop("publishAt")
        status["privacyStatus"] = "public"
    return status


def visible(video: dict[str, Any], channel_id: str, now: float) -> bool:
    """A video shows to its channel, and to others once it is not private."""
    return bool(
        video["channel_id"] == channel_id or effective_status(video, now)["privacyStatus"] != "private"
    )


def video_resource(
    youtube: YouTube, video: dict[str, Any], wanted: list[str], upload_status: str = "processed"
) -> dict[str, Any]:
    now = youtube.now()
    out: dict[str, Any] = {"kind": "youtube#video", "etag": "", "id": video["id"]}
    if "snippet" in wanted:
        channel = youtube.channel(video["channel_id"]) or {"title": ""}
        snippet = {
            "publishedAt": video["published_at"] or clock.rfc3339(video["created"]),
            "channelId": video["channel_id"],
            "title": video["snippet"]["title"],
            "description": video["snippet"]["description"],
            "channelTitle": channel["title"],
            "categoryId": video["snippet"]["categoryId"],
            "liveBroadcastContent": "none",
            "localized": {"title": video["snippet"]["title"], "description": video["snippet"]["description"]},
        }
        if video["snippet"]["tags"]:  # YouTube leaves out an empty tag list
            snippet["tags"] = video["snippet"]["tags"]
        if "defaultLanguage" in video["snippet"]:
            snippet["defaultLanguage"] = video["snippet"]["defaultLanguage"]
        if video["thumbnail"]:
            snippet["thumbnails"] = thumbnails(youtube, video)
        out["snippet"] = snippet
    if "status" in wanted:
        status = effective_status(video, now)
        out["status"] = {
            "uploadStatus": upload_status,
            "privacyStatus": status["privacyStatus"],
            "license": "youtube",
            "embeddable": True,
            "publicStatsViewable": True,
            "madeForKids": status["selfDeclaredMadeForKids"],
            "selfDeclaredMadeForKids": status["selfDeclaredMadeForKids"],
        }
        if "publishAt" in status:
            out["status"]["publishAt"] = status["publishAt"]
    if "contentDetails" in wanted:
        details: dict[str, Any] = {"dimension": "2d", "definition": "hd", "caption": "false"}
        seconds = duration(youtube, video)
        if seconds is not None:
            details["duration"] = iso_duration(seconds)
        out["contentDetails"] = details
    out["etag"] = etag(out)
    return out


def thumbnails(youtube: YouTube, video: dict[str, Any]) -> dict[str, Any]:
    """The custom thumbnail at YouTube's three sizes (the sandbox serves the one picture for all)."""
    url = f"{youtube.api_base}/vi/{video['id']}/default.jpg?v={video['thumbnail']['sha256'][:12]}"
    sizes = {"default": (120, 90), "medium": (320, 180), "high": (480, 360)}
    return {name: {"url": url, "width": w, "height": h} for name, (w, h) in sizes.items()}


def caption_resource(caption: dict[str, Any]) -> dict[str, Any]:
    out = {
        "kind": "youtube#caption",
        "etag": "",
        "id": caption["id"],
        "snippet": {
            "videoId": caption["video_id"],
            "lastUpdated": caption["created"],
            "trackKind": "standard",
            "language": caption["language"],
            "name": caption["name"],
            "audioTrackType": "unknown",
            "isCC": False,
            "isLarge": False,
            "isEasyReader": False,
            "isDraft": caption["is_draft"],
            "isAutoSynced": False,
            "status": "serving",
        },
    }
    out["etag"] = etag(out)
    return out


def duration(youtube: YouTube, video: dict[str, Any]) -> float | None:
    """The file's length in seconds, read once from its header by FFmpeg; None for bytes that are
    not a video (tests upload small byte strings)."""
    if "duration_s" not in video:
        video["duration_s"] = _probe(youtube.video_file(video["id"]))
        with youtube.lock:
            stored = youtube.video(video["id"])
            if stored is not None:
                stored["duration_s"] = video["duration_s"]
                youtube.put_video(stored)
    value = video["duration_s"]
    return None if value is None else float(value)


def _probe(path: Any) -> float | None:
    try:
        run = subprocess.run(
            [ffmpeg.executable(), "-hide_banner", "-nostdin", "-i", str(path)],
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = _DURATION.search(run.stderr)
    if found is None:
        return None
    hours, minutes, seconds = found.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def iso_duration(seconds: float) -> str:
    """ISO 8601 as YouTube writes it: PT25S, PT1M5S, PT1H2M3S (whole seconds, rounded; a clip shorter
    than half a second still lasts PT1S)."""
    if seconds <= 0:
        return "P0D"
    total = max(1, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    text = "PT" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    return text + (f"{secs}S" if secs or not (hours or minutes) else "")
