"""The public side: `/youtube/watch?v=ID`, a small page with the video playable (Range requests
served, so a browser can seek), its title, privacy, publishAt, thumbnail and caption tracks; the
URL the daemon writes to Notion. No sign-in: these routes skip the Data API's token check."""

from __future__ import annotations

import re
from html import escape
from typing import Any

from sandbox.http import Request, Response
from sandbox.youtube.captions import tracks
from sandbox.youtube.resources import effective_status, thumbnails
from sandbox.youtube.state import CAPTION, YouTube

_STYLE = """
body { font: 16px/1.5 system-ui, sans-serif; max-width: 960px; margin: 0 auto 4em; padding: 0 1em }
video { width: 100%; background: #000; border-radius: 6px } table td { padding: 2px 12px 2px 0 }
table td:first-child { color: #777 } img.thumb { max-width: 320px; border-radius: 4px }
"""
_SRT_COMMA = re.compile(r"(\d{2}:\d{2}:\d{2}),(\d{3})")


def watch_page(youtube: YouTube, request: Request) -> Response:
    video = youtube.complete_video(request.arg("v") or "")
    if video is None:
        return _text(404, "Video unavailable")
    status = effective_status(video, youtube.now())
    channel = youtube.channel(video["channel_id"]) or {"title": ""}
    title = escape(video["snippet"]["title"])
    base = youtube.api_base
    track_tags = "".join(
        f'<track kind="subtitles" src="{base}/timedtext/{c["id"]}" srclang="{escape(c["language"])}"'
        f' label="{escape(c["name"] or c["language"])}">'
        for c in tracks(youtube, video["id"])
    )
    rows: list[tuple[str, str]] = [
        ("Channel", escape(channel["title"])),
        ("Privacy", escape(status["privacyStatus"])),
        ("Uploaded", escape(video["published_at"] or "")),
    ]
    if "publishAt" in status:
        rows.append(("Publishes at", escape(status["publishAt"])))
    if video["snippet"]["tags"]:
        rows.append(("Tags", escape(", ".join(video["snippet"]["tags"]))))
    captions = [f"{escape(c['language'])}: {escape(c['name'])}" for c in tracks(youtube, video["id"])]
    rows.append(("Captions", "<br>".join(captions) or "none"))
    thumb = ""
    if video["thumbnail"]:
        thumb = (
            f'<p><img class="thumb" src="{thumbnails(youtube, video)["high"]["url"]}" alt="thumbnail"></p>'
        )
    html = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title} - YouTube (sandbox)</title>"
        f"<style>{_STYLE}</style></head><body>"
        f'<video src="{base}/videoplayback/{video["id"]}" controls preload="metadata">{track_tags}</video>'
        f"<h1>{title}</h1><table>"
        + "".join(f"<tr><td>{name}</td><td>{value}</td></tr>" for name, value in rows)
        + f"</table>{thumb}<p style='white-space: pre-wrap'>{escape(video['snippet']['description'])}</p>"
        + "</body></html>"
    )
    return Response(200, html.encode(), {"Content-Type": "text/html; charset=utf-8"})


def video_bytes(youtube: YouTube, request: Request) -> Response:
    video = youtube.complete_video(request.params["video_id"])
    if video is None:
        return _text(404, "Video unavailable")
    return _ranged(request, youtube.video_file(video["id"]).read_bytes(), video["content_type"])


def thumbnail_bytes(youtube: YouTube, request: Request) -> Response:
    video = youtube.complete_video(request.params["video_id"])
    if video is None or not video["thumbnail"]:
        return _text(404, "No thumbnail")
    data = youtube.thumbnail_file(video["id"]).read_bytes()
    return Response(200, data, {"Content-Type": video["thumbnail"]["content_type"]})


def caption_track(youtube: YouTube, request: Request) -> Response:
    """A caption track as WebVTT, which a <track> element needs (an SRT file's timings converted)."""
    caption: dict[str, Any] | None = youtube.store.get(CAPTION, request.params["caption_id"])
    if caption is None:
        return _text(404, "No such caption track")
    text = youtube.caption_file(caption["id"]).read_bytes().decode("utf-8-sig")
    if caption["format"] == "srt":
        text = "WEBVTT\n\n" + _SRT_COMMA.sub(r"\1.\2", text)
    return Response(200, text.encode(), {"Content-Type": "text/vtt; charset=utf-8"})


def _ranged(request: Request, data: bytes, content_type: str) -> Response:
    headers = {"Content-Type": content_type, "Accept-Ranges": "bytes"}
    wanted = request.header("range")
    if not wanted.startswith("bytes="):
        return Response(200, data, headers)
    first, _, last = wanted[6:].split(",")[0].partition("-")
    try:
        start = int(first) if first.strip() else max(0, len(data) - int(last))
        end = min(len(data) - 1, int(last)) if first.strip() and last.strip() else len(data) - 1
    except ValueError:
        start, end = len(data), 0
    if start >= len(data) or start > end:
        return Response(416, b"", {"Content-Range": f"bytes */{len(data)}"})
    headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
    return Response(206, data[start : end + 1], headers)


def _text(status: int, message: str) -> Response:
    return Response(status, message.encode(), {"Content-Type": "text/plain; charset=utf-8"})
