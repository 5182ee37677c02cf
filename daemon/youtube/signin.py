"""`nvd youtube-auth --channel ID`: a channel's sign-in, stored encrypted."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.channels import Channel
from daemon.errors import ConfigError
from daemon.settings import Settings
from daemon.youtube import accounts, oauth


async def sign_in(
    engine: AsyncEngine,
    settings: Settings,
    channel: Channel,
    *,
    say: Callable[[str], None],
    read_line: Callable[[], str] | None,
    timeout_s: float = 600.0,
    port: int = 0,
) -> str | None:
    """Runs the consent, stores the refresh token encrypted; returns the YouTube channel's title."""
    if channel.youtube is None:
        raise ConfigError(
            f"channel {channel.id} has no youtube block in its file; add `youtube: {{}}` (and its settings) "
            "to publish its videos"
        )
    project = channel.youtube.project
    client = settings.youtube_client(project)
    if client is None:
        suffix = "" if project == "default" else f"_{project.upper().replace('-', '_')}"
        raise ConfigError(
            f"YOUTUBE_CLIENT_ID{suffix} and YOUTUBE_CLIENT_SECRET{suffix} are not set: create an OAuth "
            "client of type Desktop app in the Google Cloud project (APIs & Services, Credentials) with "
            "the YouTube Data API v3 enabled, and set both"
        )
    key = settings.token_key.get_secret_value() if settings.token_key else None
    accounts.cipher(key)  # a missing or bad key is said before the browser is asked anything
    loopback = oauth.Loopback(port)
    try:
        start = oauth.consent(settings.youtube_auth_url, client[0], loopback.redirect_uri)
        say(
            f"Open this address in a browser signed in to the Google account of channel {channel.id}'s "
            f"YouTube channel:\n\n  {start.url}\n\n"
            "On a server without a browser: open it on any computer; when the browser then fails to load "
            f"{loopback.redirect_uri}..., copy that address from its address bar and paste it here."
        )
        answer = await asyncio.to_thread(oauth.wait_for_answer, loopback, read_line, timeout_s)
    finally:
        loopback.close()
    code = oauth.code_of(answer, start.state)
    tokens = await asyncio.to_thread(
        oauth.exchange, f"{settings.youtube_oauth_base_url}/token", client, code, start
    )
    title = await asyncio.to_thread(oauth.youtube_channel, settings.youtube_base_url, tokens.access_token)
    await accounts.save(engine, key, channel.id, project, tokens.refresh_token, title, datetime.now(UTC))
    return title
