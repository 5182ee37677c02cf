"""Result files (Kling videos and the like) served under `/media/...`, like a provider's CDN.

Files live under the state folder's `media/`. A file being (re)made has a `.pending` marker next
to it; a download of such a file waits for it a while instead of answering 404 at once.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sandbox.http import Request, Response, json_response

if TYPE_CHECKING:
    from sandbox.app import Sandbox

CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".json": "application/json",
}
PENDING_SUFFIX = ".pending"
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_PENDING_WAIT_SECONDS = 60.0


def media_path(app: Sandbox, *parts: str) -> Path:
    return app.media_dir.joinpath(*parts)


def media_url(app: Sandbox, *parts: str) -> str:
    return f"{app.base_url}/media/{'/'.join(parts)}"


def pending_marker(path: Path) -> Path:
    return path.with_name(path.name + PENDING_SUFFIX)


def register(app: Sandbox) -> None:
    def serve(request: Request) -> Response:
        parts = [request.params[k] for k in ("folder", "name") if k in request.params]
        if not all(_SAFE.match(p) for p in parts) or parts[-1].endswith(PENDING_SUFFIX):
            return json_response(404, {"error": "not found"})
        path = media_path(app, *parts)
        deadline = time.monotonic() + _PENDING_WAIT_SECONDS
        while not path.is_file() and pending_marker(path).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not path.is_file():
            return json_response(404, {"error": "not found"})
        content_type = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
        return Response(200, path.read_bytes(), {"Content-Type": content_type})

    for method in ("GET", "HEAD"):
        app.route(method, "/media/{name}", serve, provider="media")
        app.route(method, "/media/{folder}/{name}", serve, provider="media")
