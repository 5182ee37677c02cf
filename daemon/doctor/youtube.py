"""Publishing: each Google Cloud project's OAuth client is set, TOKEN_KEY opens the sign-ins, and
each publishing channel's refresh token still refreshes. A refresh costs no YouTube quota; no Data
API call is made (every one, even a refused one, costs a unit)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.channels import Channel
from daemon.doctor.report import Result, fail, failed, ok, skip
from daemon.errors import ConfigError
from daemon.settings import Settings
from daemon.youtube import accounts
from daemon.youtube.gate import sign_in_command
from daemon.youtube.oauth import SCOPES


def client_vars(project: str) -> str:
    suffix = "" if project == "default" else f"_{project.upper().replace('-', '_')}"
    return f"YOUTUBE_CLIENT_ID{suffix} and YOUTUBE_CLIENT_SECRET{suffix}"


def clients(settings: Settings, publishing: Sequence[Channel]) -> list[Result]:
    """One line per Google Cloud project the publishing channels use, and TOKEN_KEY's."""
    lines = []
    projects = sorted({c.youtube.project for c in publishing if c.youtube is not None})
    for project in projects:
        users = ", ".join(c.id for c in publishing if c.youtube and c.youtube.project == project)
        client = settings.youtube_client(project)
        if client is None:
            lines.append(
                fail(
                    f"youtube {project}",
                    f"{client_vars(project)} not set; channels {users} publish with project {project}",
                    "make an OAuth client of type Desktop app in that Google Cloud project (APIs & "
                    "Services, Credentials; YouTube Data API v3 enabled) and set both",
                )
            )
        else:
            lines.append(ok(f"youtube {project}", f"OAuth client {client[0]} set (channels {users})"))
    key = settings.token_key.get_secret_value() if settings.token_key else None
    try:
        accounts.cipher(key)
        lines.append(ok("token key", "TOKEN_KEY is a Fernet key"))
    except ConfigError as exc:
        lines.append(failed("token key", exc))
    return lines


async def sign_in(
    http: httpx.AsyncClient,
    settings: Settings,
    engine: AsyncEngine | None,
    channel: Channel,
    reveal: Callable[[Sequence[str]], None],
) -> Result:
    """The channel is signed in, Google did not refuse it, and its refresh token still refreshes.
    `reveal` is given the token once decrypted, so that nothing prints it."""
    name = f"youtube {channel.id}"
    assert channel.youtube is not None
    command = sign_in_command(channel.id)
    if engine is None:
        return skip(name, "the database is not ready (above): its sign-in cannot be read")
    key = settings.token_key.get_secret_value() if settings.token_key else None
    try:
        account = await accounts.load(engine, key, channel.id)
    except ConfigError as exc:
        return failed(name, exc)
    if account is None:
        return fail(name, "not signed in: its uploads will wait", f"run `{command}`")
    reveal([account.refresh_token])
    if account.revoked_reason:
        return fail(name, f"Google refused its sign-in: {account.revoked_reason}", f"run `{command}`")
    client = settings.youtube_client(channel.youtube.project)
    if client is None:
        return skip(name, f"{client_vars(channel.youtube.project)} not set (above)")
    return await _refresh(
        http, settings, client, account.refresh_token, name, command, account.youtube_channel
    )


async def _refresh(
    http: httpx.AsyncClient,
    settings: Settings,
    client: tuple[str, str],
    refresh_token: str,
    name: str,
    command: str,
    youtube_channel: str | None,
) -> Result:
    base = settings.youtube_oauth_base_url
    try:
        answer = await http.post(
            f"{base.rstrip('/')}/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": client[0],
                "client_secret": client[1],
            },
        )
    except httpx.HTTPError as exc:
        return fail(
            name,
            f"cannot reach Google's token endpoint at {base} ({type(exc).__name__}: {exc})",
            "check the network, or YOUTUBE_OAUTH_BASE_URL if it is set",
        )
    try:
        body = answer.json()
    except ValueError:
        body = {}
    error = str(body.get("error", "")) if isinstance(body, dict) else ""
    said = f"{error}: {body.get('error_description', '')}".strip(": ") if error else answer.reason_phrase
    if error == "invalid_grant":
        return fail(
            name,
            f"Google refused its refresh token ({said}): revoked, or expired (a project in Testing status "
            "gives tokens that last 7 days)",
            f"run `{command}`",
        )
    if error in ("invalid_client", "unauthorized_client"):
        return fail(
            name,
            f"Google refused the OAuth client ({said})",
            "check YOUTUBE_CLIENT_ID and YOUTUBE_CLIENT_SECRET",
        )
    if answer.status_code != 200 or not isinstance(body, dict):
        return fail(
            name,
            f"Google's token endpoint at {base} answered {answer.status_code} ({said})",
            "try again in a few minutes; if it stays, check YOUTUBE_OAUTH_BASE_URL",
        )
    granted = set(str(body.get("scope", "")).split())
    missing = [s.rsplit("/", 1)[-1] for s in SCOPES if granted and s not in granted]
    if missing:
        return fail(
            name,
            f"signed in without {', '.join(missing)}: uploads or captions will be refused",
            f"run `{command}`",
        )
    who = f" as {youtube_channel!r}" if youtube_channel else ""
    return ok(name, f"signed in{who}; its refresh token works")
