"""YouTube's part of the control API: what was uploaded, quota used, and the OAuth shortcuts."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from sandbox.http import Request, Response, json_response
from sandbox.youtube.captions import tracks
from sandbox.youtube.grants import FORCE_SSL_SCOPE, UPLOAD_SCOPE, Grants
from sandbox.youtube.quota import Quota
from sandbox.youtube.state import SESSION, YouTube
from sandbox.youtube.uploads import session_view

if TYPE_CHECKING:
    from sandbox.app import Sandbox


def register(app: Sandbox, youtube: YouTube, grants: Grants, quota: Quota) -> None:
    def videos(request: Request) -> Response:
        """Every video, complete or not, with its bytes' size and digest, and every upload session."""
        listed = [_video_view(youtube, v) for v in youtube.videos()]
        sessions = [session_view(youtube, s) for s in youtube.store.all(SESSION)]
        return json_response(200, {"videos": listed, "sessions": sessions})

    def quota_used(request: Request) -> Response:
        return json_response(200, quota.listing())

    def revoke(request: Request) -> Response:
        try:
            body = request.json()
        except ValueError as exc:
            return json_response(400, {"error": f"the body is not JSON: {exc}"})
        token = body.get("refresh_token") if isinstance(body, dict) else None
        return json_response(200, {"revoked": grants.revoke(str(token) if token else None)})

    def refresh_token(request: Request) -> Response:
        """A refresh token minted without the browser flow: tests' shortcut to a signed-in channel."""
        try:
            body = request.json()
        except ValueError as exc:
            return json_response(400, {"error": f"the body is not JSON: {exc}"})
        body = body if isinstance(body, dict) else {}
        title = str(body.get("channel_title") or youtube.config.youtube_channel_title)
        scopes = body.get("scopes") or [UPLOAD_SCOPE, FORCE_SSL_SCOPE]
        channel = youtube.channel_for(title)
        token = grants.mint_refresh(
            app.credentials["youtube_client_id"], channel["id"], [str(s) for s in scopes]
        )
        return json_response(
            200, {"refresh_token": token, "channel_id": channel["id"], "channel_title": title}
        )

    app.route("GET", "/_sandbox/youtube/videos", videos, provider="_sandbox")
    app.route("GET", "/_sandbox/youtube/quota", quota_used, provider="_sandbox")
    app.route("POST", "/_sandbox/youtube/revoke", revoke, provider="_sandbox")
    app.route("POST", "/_sandbox/youtube/refresh-token", refresh_token, provider="_sandbox")


def _video_view(youtube: YouTube, video: dict[str, Any]) -> dict[str, Any]:
    channel = youtube.channel(video["channel_id"]) or {"id": video["channel_id"], "title": ""}
    path = youtube.video_file(video["id"])
    digest = video["sha256"]
    if digest is None and path.exists():  # an upload under way: what has arrived so far
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {
        "id": video["id"],
        "channel": {"id": channel["id"], "title": channel["title"]},
        "project": video["project"],
        "snippet": video["snippet"],
        "status": video["status"],
        "complete": video["complete"],
        "size": path.stat().st_size if path.exists() else 0,
        "total": video["size"],
        "sha256": digest,
        "published_at": video["published_at"],
        "thumbnail": video["thumbnail"]["sha256"] if video["thumbnail"] else None,
        "captions": [
            {"id": c["id"], "language": c["language"], "name": c["name"], "sha256": c["sha256"]}
            for c in tracks(youtube, video["id"])
        ],
        "url": youtube.watch_url(video["id"]),
    }
