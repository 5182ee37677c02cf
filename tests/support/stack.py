"""The daemon wired to a running sandbox: settings, environment and channel files for tests."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from daemon.commands import SCRIPTS
from daemon.db.engine import make_engine
from daemon.settings import Settings
from daemon.youtube import accounts
from tests.support.sandbox_proc import SandboxProcess

CHANNEL = {
    "id": "nature",
    "name": "Nature Shorts",
    "voice": {"voice_id": "JBFqnCBsd6RMkjVDRZzb"},
    "atmosphere": "Misty river delta at dawn, photoreal nature documentary",
    "gates": {"storyboard": False, "assets": False, "final": False},
}

STORYBOARD = {
    "title": "The Heron's Patience",
    "atmosphere": "Misty river delta at dawn, low golden side light, photoreal nature documentary",
    "assets": [
        {"key": "heron", "kind": "character", "prompt": "Grey heron wading knee-deep, neck coiled"},
        {"key": "shallows", "kind": "environment", "prompt": "Reed-lined shallows, still water, mist"},
        {"key": "reeds", "kind": "environment", "prompt": "Dense golden reeds swaying at the water's edge"},
    ],
    "scenes": [
        {
            "key": "s01",
            "frame": {"environment": "shallows", "character": "heron"},
            "motion": "The heron lifts one foot slowly; ripples spread. Slow push in.",
            "narration": "At first light the delta belongs to the patient.",
            "sfx": "Dawn river ambience, gentle water lapping, distant birds",
        },
        {
            "key": "s02",
            "frame": {"environment": "reeds"},
            "motion": "Reeds sway in a light breeze. Slow pan right.",
            "narration": "Every reed hides a meal, and every meal hides from the heron.",
            "sfx": "Wind through reeds, soft rustling",
        },
        {
            "key": "s03",
            "frame": {"environment": "shallows", "character": "heron"},
            "motion": "The heron freezes, neck coiled, staring down. Slow push in.",
            "narration": "It waits.",
            "sfx": "Still water, a single drip, faint insects",
        },
        {
            "key": "s04",
            "frame": {"environment": "reeds", "character": "heron"},
            "motion": "The heron strikes, then rises with a fish. Camera holds.",
            "narration": "Then, in a blink, patience becomes breakfast, and the delta wakes around it.",
            "sfx": "Sudden splash, wing beats, birds calling",
        },
    ],
}


def credentials(sandbox: SandboxProcess) -> dict[str, str]:
    return dict(json.loads((sandbox.state_dir / "credentials.json").read_text()))


# A final cut at 320x180: for tests of scheduling and recovery against the sandbox's cheap media,
# where a 1080p encode would only spend the machine's cores (the 1080p cut has tests of its own).
SMALL_CUT = ["--width", "320", "--height", "180", "--preset", "ultrafast"]


def script_shims(folder: Path, extras: Mapping[str, Sequence[str]]) -> Path:
    """A SCRIPTS_DIR of the real scripts, each run through its main() with `extras[name]` appended
    to the arguments the daemon gives it (the last of a repeated option wins)."""
    folder.mkdir(parents=True, exist_ok=True)
    for file in SCRIPTS.values():
        name = file.removesuffix(".py")
        extra = f" + {list(extras[name])!r}" if name in extras else ""
        (folder / file).write_text(
            f"import sys\nfrom scripts.{name} import main\n\nsys.exit(main(sys.argv[1:]{extra}))\n"
        )
    return folder


def small_cut_scripts(folder: Path) -> Path:
    return script_shims(folder / "small-cut-scripts", {"assemble_video": SMALL_CUT})


def daemon_env(
    sandbox: SandboxProcess,
    workspace: Path,
    channels: Path,
    database_url: str | None,
    *,
    scripts_dir: Path | None = None,
) -> dict[str, str]:
    """Every setting a daemon needs against this sandbox, as environment variables."""
    creds = credentials(sandbox)
    env = {
        "WORKSPACE_DIR": str(workspace),
        "CHANNELS_DIR": str(channels),
        "NOTION_TOKEN": creds["notion_token"],
        "NOTION_BASE_URL": sandbox.base("notion"),
        "GEMINI_API_KEY": creds["gemini_api_key"],
        "GEMINI_BASE_URL": sandbox.base("gemini"),
        "KLING_ACCESS_KEY": creds["kling_access_key"],
        "KLING_SECRET_KEY": creds["kling_secret_key"],
        "KLING_BASE_URL": sandbox.base("kling"),
        "ELEVENLABS_API_KEY": creds["elevenlabs_api_key"],
        "ELEVENLABS_BASE_URL": sandbox.base("elevenlabs"),
        # The sandbox's clips take seconds, not minutes: ask Kling every second, not every ten.
        "KLING_POLL_S": "1",
        **youtube_env(sandbox),
    }
    if database_url:
        env["DATABASE_URL"] = database_url
    if scripts_dir:
        env["SCRIPTS_DIR"] = str(scripts_dir)
    return env


def youtube_env(sandbox: SandboxProcess) -> dict[str, str]:
    """The sandbox's Google Cloud project and YouTube, and the daemon's key for the sign-ins (one
    per sandbox, kept in its state folder: a restarted daemon reads the sign-ins it stored)."""
    creds = credentials(sandbox)
    key_file = sandbox.state_dir / "daemon-token-key"
    if not key_file.exists():
        key_file.write_text(base64.urlsafe_b64encode(os.urandom(32)).decode())
    return {
        "YOUTUBE_CLIENT_ID": creds["youtube_client_id"],
        "YOUTUBE_CLIENT_SECRET": creds["youtube_client_secret"],
        "YOUTUBE_BASE_URL": sandbox.base("youtube"),
        "YOUTUBE_OAUTH_BASE_URL": sandbox.base("google-oauth"),
        "YOUTUBE_AUTH_URL": sandbox.base("google-oauth") + "/o/oauth2/v2/auth",
        "YOUTUBE_WATCH_URL": sandbox.base("youtube") + "/watch?v={id}",
        "TOKEN_KEY": key_file.read_text(),
    }


async def sign_in_youtube(sandbox: SandboxProcess, env: dict[str, str], channel: str) -> str:
    """A channel signed in without the browser (the sandbox mints the refresh token; the consent
    flow itself has its own test), stored as `youtube-auth` stores it. Returns the token."""
    token = str(sandbox.post("/_sandbox/youtube/refresh-token", {})["refresh_token"])
    settings = Settings(**{k.lower(): v for k, v in env.items()})
    engine = make_engine(settings.sqlalchemy_url)
    try:
        key = settings.token_key.get_secret_value() if settings.token_key else None
        await accounts.save(engine, key, channel, "default", token, "Sandbox Channel", datetime.now(UTC))
    finally:
        await engine.dispose()
    return token


def settings_for(
    sandbox: SandboxProcess, workspace: Path, channels: Path, database_url: str, **extra: Any
) -> Settings:
    env = daemon_env(sandbox, workspace, channels, database_url)
    return Settings(**{k.lower(): v for k, v in env.items()}, **extra)


def write_channel(folder: Path, **overrides: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {**CHANNEL, **overrides}
    path = folder / f"{data['id']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
