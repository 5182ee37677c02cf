"""The Data API's wiring: provider `youtube` under `/youtube`, every call signed in with a Bearer
access token, each method with its scopes and quota cost."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sandbox.app import USAGE_HEADER, Provider
from sandbox.http import Request, Response
from sandbox.youtube import captions, listing, quota, thumbnails, uploads, watch
from sandbox.youtube.errors import YouTubeError, auth_error, error_response
from sandbox.youtube.grants import FORCE_SSL_SCOPE, UPLOAD_SCOPE, Grant, Grants
from sandbox.youtube.quota import Cost, Quota
from sandbox.youtube.state import YouTube

if TYPE_CHECKING:
    from sandbox.app import Sandbox

PREFIX = "/youtube"
Method = Callable[[YouTube, Request, Grant], Response]

_YOUTUBE = "https://www.googleapis.com/auth/youtube"
_PARTNER = "https://www.googleapis.com/auth/youtubepartner"
_READONLY = "https://www.googleapis.com/auth/youtube.readonly"
# The scopes any one of which lets a method through (the API reference's Authorization tables).
WRITE = frozenset({UPLOAD_SCOPE, _YOUTUBE, FORCE_SSL_SCOPE, _PARTNER})
READ = frozenset({_READONLY, _YOUTUBE, FORCE_SSL_SCOPE, _PARTNER})
CAPTIONS = frozenset({FORCE_SSL_SCOPE, _PARTNER})


@dataclass(frozen=True)
class Endpoint:
    http: str
    path: str
    name: str
    method: Method
    scopes: frozenset[str] | None  # None: the upload session's URL is its own credential
    cost: Cost | None  # None: free (a chunk or a status query)
    billable: bool = False


ENDPOINTS = (
    Endpoint("POST", "/upload/youtube/v3/videos", "videos.insert", uploads.create_session, WRITE,
             quota.INSERT, billable=True),
    Endpoint("PUT", "/upload/youtube/v3/videos", "videos.insert.chunk", uploads.put_bytes, None, None),
    Endpoint("GET", "/youtube/v3/videos", "videos.list", listing.videos_list, READ, quota.LIST),
    Endpoint("GET", "/youtube/v3/channels", "channels.list", listing.channels_list, READ, quota.LIST),
    Endpoint("GET", "/youtube/v3/playlistItems", "playlistItems.list", listing.playlist_items_list, READ,
             quota.LIST),
    Endpoint("POST", "/upload/youtube/v3/thumbnails/set", "thumbnails.set", thumbnails.set_thumbnail, WRITE,
             quota.THUMBNAILS_SET, billable=True),
    Endpoint("POST", "/upload/youtube/v3/captions", "captions.insert", captions.insert, CAPTIONS,
             quota.CAPTIONS_INSERT, billable=True),
    Endpoint("GET", "/youtube/v3/captions", "captions.list", captions.list_captions, CAPTIONS,
             quota.CAPTIONS_LIST),
)  # fmt: skip


def register(app: Sandbox, youtube: YouTube, grants: Grants, charges: Quota) -> None:
    def gate(request: Request) -> Response | None:
        return None if _grant(grants, request) is not None else auth_error()

    def handler(endpoint: Endpoint) -> Callable[[Request], Response]:
        def run(request: Request) -> Response:
            grant = _grant(grants, request)
            if grant is None:  # revoked between the gate and here
                return auth_error()
            usage: dict[str, str] = {}
            try:
                if endpoint.scopes is not None and not endpoint.scopes & grant.scopes:
                    raise YouTubeError(
                        403, "insufficientPermissions", "Request had insufficient authentication scopes."
                    )
                if endpoint.cost is not None:
                    charges.charge(grant.project, endpoint.cost)
                    usage = {USAGE_HEADER: json.dumps(endpoint.cost.usage())} if endpoint.billable else {}
                response = endpoint.method(youtube, request, grant)
            except YouTubeError as exc:
                response = exc.response()
            response.headers.update(usage)
            return response

        return run

    app.add_provider(Provider("youtube", PREFIX, error=error_response, gate=gate))
    for endpoint in ENDPOINTS:
        app.route(
            endpoint.http,
            PREFIX + endpoint.path,
            handler(endpoint),
            provider="youtube",
            billable=endpoint.billable,
            name=endpoint.name,
        )
    # The public side has no provider of its own: no sign-in, no faults, like result files.
    public = "youtube_public"
    app.route("GET", PREFIX + "/watch", lambda r: watch.watch_page(youtube, r), provider=public)
    app.route(
        "GET", PREFIX + "/videoplayback/{video_id}", lambda r: watch.video_bytes(youtube, r), provider=public
    )
    app.route(
        "GET", PREFIX + "/vi/{video_id}/{name}", lambda r: watch.thumbnail_bytes(youtube, r), provider=public
    )
    app.route(
        "GET", PREFIX + "/timedtext/{caption_id}", lambda r: watch.caption_track(youtube, r), provider=public
    )


def _grant(grants: Grants, request: Request) -> Grant | None:
    scheme, _, token = request.header("authorization").partition(" ")
    return grants.access(token.strip()) if scheme.lower() == "bearer" else None
