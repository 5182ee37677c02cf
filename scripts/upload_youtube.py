"""Uploads one finished video to YouTube, then its thumbnail and captions: a resumable upload that
--resume-job (the session URL) continues, and that a lost session finds again by the marker tag.
Prints {"event":"submitted","job_id":<session URL>} as soon as the session exists."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from scripts._lib import youtube
from scripts._lib.cli import ArgumentParser, Result, run
from scripts._lib.crash import crash_point
from scripts._lib.errors import ScriptError, permanent, transient, usage
from scripts._lib.files import atomic_write_bytes, require_file
from scripts._lib.output import emit

PROG = "upload_youtube.py"
TITLE_LIMIT = 100  # characters
DESCRIPTION_LIMIT = 5000  # bytes of UTF-8
TAGS_LIMIT = 500  # characters, as YouTube counts them (tags_length)
THUMBNAIL_LIMIT = 2 * 1024 * 1024
MARKER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{3,49}")
LANGUAGE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*")
VIDEO_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
}
SRT_TIMING = re.compile(r"^\s*\d+:\d{2}:\d{2}[,.]\d{1,3}\s*-->\s*\d+:\d{2}:\d{2}[,.]\d{1,3}", re.MULTILINE)
VTT_TIMING = re.compile(r"^\s*(\d+:)?\d{2}:\d{2}\.\d{3}\s*-->\s*(\d+:)?\d{2}:\d{2}\.\d{3}", re.MULTILINE)
# A chunk refused because YouTube holds other bytes is sent again from what it has, this often.
MAX_RESYNCS = 3
# 308s in a row that take no byte before the run gives up (the next run resumes the session).
MAX_STALLS = 3


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__)
    p.add_argument("--video", required=True, type=Path, help="the finished video (MP4)")
    p.add_argument("--title", required=True, help="at most 100 characters, no < or >")
    p.add_argument("--marker", required=True, help="a short id of this item, sent as one of the tags")
    p.add_argument("--output", required=True, type=Path, help="JSON file to write: the video's id and URL")
    p.add_argument("--description", default="", help="at most 5000 bytes, no < or >")
    p.add_argument("--tag", action="append", default=[], help="a tag (repeat for more)")
    p.add_argument("--category-id", default="22", help="YouTube's video category (22: People & Blogs)")
    p.add_argument("--privacy", default="private", choices=("private", "unlisted", "public"))
    p.add_argument("--publish-at", help="when a private video goes public, e.g. 2026-12-08T17:00:00Z")
    p.add_argument("--thumbnail", type=Path, help="JPEG or PNG, at most 2 MB")
    p.add_argument("--captions", type=Path, help="SRT or WebVTT file")
    p.add_argument("--caption-language", default="en", help="the captions' language (BCP-47)")
    p.add_argument("--caption-name", help='the caption track\'s name (default "English" for en)')
    p.add_argument("--resume-job", help="the session URL of an earlier run (its submitted job_id)")
    p.add_argument(
        "--chunk-kib", type=chunk_kib, default=8192, help="upload chunk size, a multiple of 256 KiB"
    )
    return p


def chunk_kib(text: str) -> int:
    """A positive multiple of 256: YouTube refuses other lengths for all but the last chunk."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0 or value * 1024 % youtube.CHUNK_UNIT:
        raise argparse.ArgumentTypeError(f"must be a positive multiple of 256, got {text}")
    return value


@dataclass
class Inputs:
    """The checked arguments: what is sent, read before any call is made."""

    video: Path
    size: int
    content_type: str
    metadata: dict[str, Any]
    thumbnail: tuple[bytes, str] | None
    captions: bytes | None
    caption_name: str


def check_args(args: argparse.Namespace) -> Inputs:
    """Everything YouTube would refuse, refused before a call (each invalid call costs quota)."""
    if not MARKER.fullmatch(args.marker):
        raise usage(f"{PROG}: --marker must be 4-50 letters, digits, '-', '_' or '.', got {args.marker!r}")
    if not args.category_id.isdigit():
        raise usage(f"{PROG}: --category-id must be a number, got {args.category_id!r}")
    if not LANGUAGE.fullmatch(args.caption_language):
        raise usage(f"{PROG}: --caption-language must be a language code like en or pt-BR")
    if args.resume_job:
        check_session_url(args.resume_job)
    publish_at = parse_publish_at(args.publish_at) if args.publish_at else None
    check_metadata(args.title, args.description, publish_at, args.privacy)
    tags = tags_with_marker(args.tag, args.marker)
    if any("<" in tag or ">" in tag for tag in tags) or tags_length(tags) > TAGS_LIMIT:
        raise permanent(
            f"The tags take {tags_length(tags)} characters as YouTube counts them (at most {TAGS_LIMIT}: a "
            "tag with spaces counts its quotes, the commas between tags count) or hold < or >; remove some.",
            "invalidTags",
        )
    size = require_file(args.video, "video").stat().st_size
    if size == 0:
        raise permanent(f"The video {args.video} is empty; assemble it again.")
    status: dict[str, Any] = {"privacyStatus": args.privacy, "selfDeclaredMadeForKids": False}
    if publish_at:
        status["publishAt"] = publish_at
    snippet = {
        "title": args.title,
        "description": args.description,
        "tags": tags,
        "categoryId": args.category_id,
    }
    return Inputs(
        video=args.video,
        size=size,
        content_type=VIDEO_TYPES.get(args.video.suffix.lower(), "video/*"),
        metadata={"snippet": snippet, "status": status},
        thumbnail=read_thumbnail(args.thumbnail) if args.thumbnail else None,
        captions=read_captions(args.captions) if args.captions else None,
        caption_name=args.caption_name if args.caption_name is not None else default_caption_name(args),
    )


def check_session_url(url: str) -> None:
    session = urlsplit(url)
    if session.scheme not in ("http", "https") or not session.netloc or "upload_id=" not in session.query:
        raise usage(f"{PROG}: --resume-job must be the upload session URL a run printed, got {url!r}")


def at_youtube(url: str, base: str) -> bool:
    """The bearer token goes with the session URL: only to the host YouTube is reached at."""
    session, api = urlsplit(url), urlsplit(base)
    return (session.scheme, session.netloc) == (api.scheme, api.netloc)


def parse_publish_at(text: str) -> str:
    """An ISO 8601 time with its zone, as YouTube's UTC form (2026-12-08T17:00:00Z)."""
    try:
        when = datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise usage(
            f"{PROG}: --publish-at must be a time with its zone, like 2026-12-08T17:00:00Z; got {text!r}"
        )
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_metadata(title: str, description: str, publish_at: str | None, privacy: str) -> None:
    if not title.strip() or len(title) > TITLE_LIMIT or "<" in title or ">" in title:
        raise permanent(
            f"The title is {len(title)} characters; YouTube takes 1 to {TITLE_LIMIT} and no < or >: "
            "edit Title in Notion.",
            "invalidTitle",
        )
    size = len(description.encode("utf-8"))
    if size > DESCRIPTION_LIMIT or "<" in description or ">" in description:
        raise permanent(
            f"The description is {size} bytes; YouTube takes at most {DESCRIPTION_LIMIT} and no < or >: "
            "edit the description.",
            "invalidDescription",
        )
    if publish_at and privacy != "private":
        raise permanent(
            f"A scheduled video stays private until its publish time, but the privacy asked is {privacy}: "
            "set the privacy to private or remove the publish time.",
            "invalidPublishAt",
        )


def tags_with_marker(tags: Sequence[str], marker: str) -> list[str]:
    """The tags without blanks or repeats, the marker always among them (last)."""
    cleaned = [t.strip() for t in tags if t.strip() and t.strip() != marker]
    return [*dict.fromkeys(cleaned), marker]


def tags_length(tags: Sequence[str]) -> int:
    """YouTube's count: a tag with a space is quoted, and a comma separates two tags."""
    return sum(len(t) + (2 if " " in t else 0) for t in tags) + max(0, len(tags) - 1)


def read_thumbnail(path: Path) -> tuple[bytes, str]:
    data = require_file(path, "thumbnail").read_bytes()
    if len(data) > THUMBNAIL_LIMIT:
        raise permanent(
            f"The thumbnail {path} is {len(data)} bytes; YouTube takes at most 2 MB. Make it smaller.",
            "mediaBodyTooLarge",
        )
    if data.startswith(b"\xff\xd8\xff"):
        return data, "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data, "image/png"
    raise permanent(f"The thumbnail {path} is neither JPEG nor PNG; make it again.", "invalidImage")


def read_captions(path: Path) -> bytes:
    data = require_file(path, "captions file").read_bytes()
    try:
        caption_format(data)
    except ValueError as exc:
        raise permanent(
            f"The captions file {path} {exc}; make the captions again.", "invalidCaptionFile"
        ) from exc
    return data


def caption_format(data: bytes) -> str:
    """'srt' or 'vtt' when the file has at least one cue YouTube can time, else ValueError."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError("is not UTF-8 text") from exc
    if not text.strip():
        raise ValueError("is empty")
    if text.lstrip().startswith("WEBVTT"):
        if VTT_TIMING.search(text):
            return "vtt"
        raise ValueError("is WebVTT without a single timed cue")
    if SRT_TIMING.search(text):
        return "srt"
    raise ValueError("is neither SRT nor WebVTT (no cue timing like 00:00:01,000 --> 00:00:03,500)")


def default_caption_name(args: argparse.Namespace) -> str:
    language = str(args.caption_language)
    return "English" if language.lower() == "en" or language.lower().startswith("en-") else language


def find_marked(videos: Sequence[dict[str, Any]], marker: str) -> dict[str, Any] | None:
    """The video whose tags hold the marker: an earlier run's upload of this item."""
    for video in videos:
        snippet = video.get("snippet")
        tags = snippet.get("tags") if isinstance(snippet, dict) else None
        if isinstance(tags, list) and marker in tags:
            return video
    return None


# The upload -------------------------------------------------------------------------------------------
def obtain(yt: youtube.YouTube, args: argparse.Namespace, inputs: Inputs) -> dict[str, Any]:
    """The uploaded video: the session resumed, or found by its marker, or uploaded now."""
    if args.resume_job and not at_youtube(args.resume_job, youtube.api_base_url()):
        # Not an error: the marker still finds a finished upload; an unfinished one starts again.
        emit(
            "warning",
            message=f"The upload session is not at YOUTUBE_BASE_URL's host, so the sign-in is not sent "
            f"there; looking for the video by its marker instead ({args.resume_job}).",
        )
    elif args.resume_job:
        try:
            state = yt.status(args.resume_job, inputs.size)
            if state.video is not None:
                return state.video
            return send_chunks(yt, args.resume_job, inputs, state.received, args.chunk_kib * 1024)
        except youtube.SessionGone as exc:
            emit(
                "warning", message=f"The upload session is gone ({exc}); looking for the video by its marker."
            )
    found = find_marked(yt.videos(yt.recent_uploads(yt.uploads_playlist())), args.marker)
    if found is not None:
        return found
    crash_point("youtube.before_session")
    session = yt.create_session(inputs.metadata, inputs.size, inputs.content_type)
    emit("submitted", job_id=session)
    crash_point("youtube.after_session")
    try:
        return send_chunks(yt, session, inputs, 0, args.chunk_kib * 1024)
    except youtube.SessionGone as exc:
        raise transient(
            f"YouTube dropped the upload session while it was sent ({exc}); it starts again.", "notFound"
        ) from exc


def send_chunks(
    yt: youtube.YouTube, session: str, inputs: Inputs, received: int, chunk: int
) -> dict[str, Any]:
    """PUTs the file from `received` on; each 308 says how much YouTube holds, the 200 is the video."""
    refusals = stalls = 0
    first = True
    with inputs.video.open("rb") as media:
        while True:
            if received >= inputs.size:
                raise transient(
                    "YouTube holds every byte but has not finished the video; run again to resume.", "stalled"
                )
            media.seek(received)
            data = media.read(min(chunk, inputs.size - received))
            try:
                state = yt.put_chunk(session, data, received, inputs.size)
            except youtube.ChunkRefused as exc:
                # YouTube holds other bytes than this run thought: ask what it has and go on from there.
                refusals += 1
                if refusals > MAX_RESYNCS:
                    raise permanent(
                        f"YouTube keeps refusing the upload's chunks ({exc}); requeue to upload it anew.",
                        "badContent",
                    ) from exc
                state = yt.status(session, inputs.size)
            else:
                if state.video is not None:
                    crash_point("youtube.after_last_chunk")
                stalls = stalls + 1 if state.received <= received else 0
                if stalls >= MAX_STALLS:
                    raise transient(
                        "YouTube takes no more of the upload's bytes; run again to resume.", "stalled"
                    )
            if state.video is not None:
                return state.video
            received = state.received
            emit("progress", uploaded=received, total=inputs.size)
            if first:
                first = False
                crash_point("youtube.mid_upload")


def check_video(video: dict[str, Any]) -> str:
    """The video's id, unless YouTube failed or rejected the upload."""
    status = video.get("status") if isinstance(video.get("status"), dict) else {}
    assert isinstance(status, dict)
    state = str(status.get("uploadStatus") or "")
    if state in ("failed", "rejected", "deleted"):
        why = status.get("failureReason") or status.get("rejectionReason") or state
        raise permanent(
            f"YouTube {state} the upload ({why}); see the video in YouTube Studio, delete it, then requeue.",
            str(why),
        )
    return str(video["id"])


def attach_captions(yt: youtube.YouTube, video_id: str, args: argparse.Namespace, inputs: Inputs) -> str:
    """The caption track's id; a track with this language and name already there is kept, not doubled."""
    assert inputs.captions is not None
    language = str(args.caption_language).lower()
    for track in yt.captions(video_id):
        snippet = track.get("snippet") if isinstance(track.get("snippet"), dict) else {}
        assert isinstance(snippet, dict)
        same = (
            str(snippet.get("language", "")).lower() == language
            and snippet.get("name") == inputs.caption_name
        )
        if same and track.get("id"):
            return str(track["id"])
    return yt.insert_caption(video_id, args.caption_language, inputs.caption_name, inputs.captions)


def watch_url(video_id: str) -> str:
    template = os.environ.get("YOUTUBE_WATCH_URL", "").strip()
    return template.replace("{id}", video_id) if template else f"https://youtu.be/{video_id}"


def body(args: argparse.Namespace) -> Result:
    inputs = check_args(args)
    with youtube.client_from_env() as yt:
        yt.refresh()
        video = obtain(yt, args, inputs)
        video_id = check_video(video)
        # The video is on YouTube from here on: a refused thumbnail or caption track is said in the
        # result, never a failure (a failed item's next pass would find the video by its marker,
        # but the page would show Error for a published video).
        refused: dict[str, str] = {}
        crash_point("youtube.before_thumbnail")
        if inputs.thumbnail is not None:
            image, kind = inputs.thumbnail
            _extra(refused, "thumbnail", lambda: yt.set_thumbnail(video_id, image, kind))
        crash_point("youtube.before_captions")
        caption_id = None
        if inputs.captions is not None:
            caption_id = _extra(refused, "captions", lambda: attach_captions(yt, video_id, args, inputs))
    status = video.get("status") if isinstance(video.get("status"), dict) else {}
    assert isinstance(status, dict)
    fields = {
        "video_id": video_id,
        "url": watch_url(video_id),
        "privacy_status": status.get("privacyStatus") or args.privacy,
        "publish_at": status.get("publishAt", inputs.metadata["status"].get("publishAt")),
        "thumbnail": inputs.thumbnail is not None and "thumbnail" not in refused,
        "caption_id": caption_id,
        **({"refused": refused} if refused else {}),
    }
    atomic_write_bytes(args.output, json.dumps(fields, indent=2).encode() + b"\n")
    return Result(str(args.output), 0.0, youtube.PROVIDER, {**fields, "quota": yt.quota.as_meta()})


def _extra(refused: dict[str, str], what: str, call: Callable[[], Any]) -> Any:
    """A call after the upload; YouTube refusing it for good is noted in `refused` (transient
    errors still end the run: the next attempt resumes the session and tries again)."""
    try:
        return call()
    except ScriptError as exc:
        if exc.kind != "permanent":
            raise
        refused[what] = exc.message
        emit("progress", refused=what, message=exc.message)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    return run(parser(), body, argv)


if __name__ == "__main__":
    sys.exit(main())
