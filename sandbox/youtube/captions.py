"""captions.insert (multipart/related: the snippet as JSON, then an SRT or WebVTT file) and
captions.list. Each insert adds a track, as YouTube does: a client that retries checks the list
first."""

from __future__ import annotations

import hashlib
import json
import re
from email import policy
from email.message import EmailMessage, MIMEPart
from email.parser import BytesParser
from typing import Any

from sandbox.app import IDENTITY_HEADER
from sandbox.http import Request, Response, json_response
from sandbox.youtube import clock
from sandbox.youtube.errors import YouTubeError
from sandbox.youtube.grants import Grant
from sandbox.youtube.resources import caption_resource, etag, parts
from sandbox.youtube.state import CAPTION, YouTube, new_id
from sandbox.youtube.thumbnails import owned_video

CAPTION_PARTS = frozenset({"id", "snippet"})
NAME_MAX_CHARS = 150
_SRT_TIMING = re.compile(r"^\d{1,2}:\d{2}:\d{2}[,.]\d{3}\s*-->\s*\d{1,2}:\d{2}:\d{2}[,.]\d{3}")
_VTT_TIMING = re.compile(r"^(?:\d{1,2}:)?\d{2}:\d{2}\.\d{3}\s+-->\s+(?:\d{1,2}:)?\d{2}:\d{2}\.\d{3}")


def insert(youtube: YouTube, request: Request, grant: Grant) -> Response:
    parts(request.arg("part"), CAPTION_PARTS)
    if request.arg("uploadType") != "multipart":
        raise YouTubeError(
            400, "badRequest", "The sandbox takes captions.insert as uploadType=multipart only."
        )
    snippet, content = _multipart(request)
    video = owned_video(youtube, str(snippet.get("videoId") or ""), grant)
    language, name = snippet.get("language"), snippet.get("name", "")
    if not isinstance(language, str) or not language:
        raise YouTubeError(400, "invalidMetadata", "snippet.language is required.")
    if not isinstance(name, str):
        raise YouTubeError(400, "invalidMetadata", "snippet.name must be a string.")
    if len(name) > NAME_MAX_CHARS:
        raise YouTubeError(400, "nameTooLong", f"snippet.name must be at most {NAME_MAX_CHARS} characters.")
    caption_format = _caption_format(content)
    caption = {
        "id": "AUieDa" + new_id(38),
        "video_id": video["id"],
        "language": language,
        "name": name,
        "is_draft": bool(snippet.get("isDraft", False)),
        "format": caption_format,
        "sha256": hashlib.sha256(content).hexdigest(),
        "created": clock.rfc3339(youtube.now()),
    }
    youtube.caption_file(caption["id"]).write_bytes(content)
    youtube.store.put(CAPTION, caption["id"], caption)
    return json_response(200, caption_resource(caption), {IDENTITY_HEADER: video["id"]})


def list_captions(youtube: YouTube, request: Request, grant: Grant) -> Response:
    parts(request.arg("part"), CAPTION_PARTS)
    video = owned_video(youtube, request.arg("videoId") or "", grant)
    items = [caption_resource(c) for c in tracks(youtube, video["id"])]
    body = {"kind": "youtube#captionListResponse", "etag": etag([i["etag"] for i in items]), "items": items}
    return json_response(200, body)


def tracks(youtube: YouTube, video_id: str) -> list[dict[str, Any]]:
    with youtube.store.lock:
        return [dict(c) for c in youtube.store.iter_raw(CAPTION) if c["video_id"] == video_id]


def _multipart(request: Request) -> tuple[dict[str, Any], bytes]:
    """(snippet, caption file) from a multipart/related body, read by the stdlib's MIME parser."""
    content_type = request.header("content-type")
    if not content_type.lower().startswith("multipart/related"):
        raise YouTubeError(
            400, "badRequest", f"captions.insert needs multipart/related, not {content_type!r}."
        )
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=policy.HTTP).parsebytes(head + request.body)
    pieces = list(message.iter_parts()) if isinstance(message, EmailMessage) else []
    if len(pieces) != 2:
        raise YouTubeError(
            400, "badRequest", f"A multipart body has two parts (metadata, then the file), not {len(pieces)}."
        )
    try:
        resource = json.loads(_payload(pieces[0]) or b"{}")
    except ValueError as exc:
        raise YouTubeError(400, "parseError", f"The metadata part is not JSON: {exc}") from exc
    snippet = resource.get("snippet") if isinstance(resource, dict) else None
    if not isinstance(snippet, dict):
        raise YouTubeError(
            400, "invalidMetadata", "The metadata part must hold a caption resource with a snippet."
        )
    return snippet, _payload(pieces[1])


def _payload(part: MIMEPart) -> bytes:
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _caption_format(content: bytes) -> str:
    """ "srt" or "vtt"; 400 for an empty file or one that is neither."""
    if not content.strip():
        raise YouTubeError(400, "contentRequired", "The caption track does not contain any content.")
    try:
        text = content.decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError as exc:
        raise YouTubeError(400, "invalidCaptionFile", "The caption file is not UTF-8 text.") from exc
    lines = [line.strip() for line in text.split("\n")]
    if lines[0].startswith("WEBVTT"):
        if any(_VTT_TIMING.match(line) for line in lines[1:]):
            return "vtt"
        raise YouTubeError(400, "invalidCaptionFile", "The WebVTT file has no cues.")
    if _srt_cues(lines):
        return "srt"
    raise YouTubeError(400, "invalidCaptionFile", "The caption file is neither SRT nor WebVTT.")


def _srt_cues(lines: list[str]) -> int:
    """The number of SRT cues (a number, a timing line, text), 0 when a block breaks the form."""
    blocks: list[list[str]] = [[]]
    for line in lines:
        if line:
            blocks[-1].append(line)
        elif blocks[-1]:
            blocks.append([])
    cues = [b for b in blocks if b]
    for block in cues:
        if len(block) < 2 or not block[0].isdigit() or not _SRT_TIMING.match(block[1]):
            return 0
    return len(cues)
