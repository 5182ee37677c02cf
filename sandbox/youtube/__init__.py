"""YouTube Data API v3 and Google OAuth stand-ins.

`/google-oauth` (provider `google_oauth`): the installed-app consent with a loopback redirect and
PKCE, and the token endpoint. `/youtube` (provider `youtube`): resumable videos.insert, videos.list,
channels.list, playlistItems.list, thumbnails.set, captions.insert and captions.list, with Google's
error envelope and the per-project daily quota; and `/youtube/watch?v=ID`, a public page per video.
Control: `/_sandbox/youtube/{videos,quota,revoke,refresh-token}`. Everything lives in the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sandbox.app import Provider
from sandbox.youtube import api, control
from sandbox.youtube.errors import oauth_error
from sandbox.youtube.grants import Grants
from sandbox.youtube.oauth import OAuth
from sandbox.youtube.quota import Quota
from sandbox.youtube.state import YouTube

if TYPE_CHECKING:
    from sandbox.app import Sandbox

OAUTH_PREFIX = "/google-oauth"


def register(app: Sandbox) -> None:
    youtube = YouTube(app)
    grants = Grants(app.store)
    quota = Quota(youtube)
    oauth = OAuth(app, youtube, grants)
    app.add_provider(Provider("google_oauth", OAUTH_PREFIX, error=oauth_error))
    app.route(
        "GET",
        OAUTH_PREFIX + "/o/oauth2/v2/auth",
        oauth.consent,
        provider="google_oauth",
        name="oauth.consent",
    )
    app.route("POST", OAUTH_PREFIX + "/token", oauth.token, provider="google_oauth", name="oauth.token")
    api.register(app, youtube, grants, quota)
    control.register(app, youtube, grants, quota)
