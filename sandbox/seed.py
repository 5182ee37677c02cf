"""`python -m sandbox seed`: a channel's Notion database with sample projects, made through the
Notion API of a running sandbox, plus everything a daemon needs to run against that sandbox:
`STATE/daemon.env` and `STATE/channels/<channel>.yaml`.

Seeding is idempotent per channel: a second run finds the channel's database (by the marker file
`STATE/seed-<channel>.json`, else by searching its title) and adds projects to it.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import re
import secrets
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import notion_client
import yaml
from notion_client.client import RetryOptions
from notion_client.errors import APIResponseError, HTTPResponseError, RequestTimeoutError

LOG = logging.getLogger("sandbox.seed")

# The canonical Status vocabulary (docs/ARCHITECTURE.md, "Notion database"), with colours that
# make the board readable: waiting grey, working blue, reviews orange, done green, trouble red.
STATUSES: tuple[tuple[str, str], ...] = (
    ("Draft", "gray"),
    ("Queued", "blue"),
    ("Planning", "blue"),
    ("Storyboard Review", "orange"),
    ("Storyboard Approved", "purple"),
    ("Generating Assets", "blue"),
    ("Assets Review", "orange"),
    ("Assets Approved", "purple"),
    ("Generating Video", "blue"),
    ("Assembling", "blue"),
    ("Final Review", "orange"),
    ("Approved", "purple"),
    ("Uploading", "blue"),
    ("Published", "green"),
    ("Scheduled", "green"),
    ("Ready", "green"),
    ("Error", "red"),
    ("Cancelled", "default"),
    ("Paused", "yellow"),
)
PRIORITIES = (("High", "red"), ("Normal", "blue"), ("Low", "gray"))

# Sample nature-documentary projects: (title, topic, story direction).
SAMPLES: tuple[tuple[str, str, str], ...] = (
    (
        "The Heron's Patience",
        "How a grey heron hunts in the shallows of a river delta at dawn",
        "Slow and meditative; long stillness, then the strike in the last scene.",
    ),
    (
        "Salmon Run",
        "Sockeye salmon returning upstream to the stream where they hatched",
        "Build tension towards the waterfall leap; end on the quiet spawning gravel.",
    ),
    (
        "Night of the Fireflies",
        "Synchronous fireflies lighting up a forest clearing in early summer",
        "Wonder and hush; narration sparse, let the light pulses carry it.",
    ),
    (
        "Beavers at Work",
        "A beaver family building and repairing its dam through one autumn night",
        "Playful; finish with a reveal of the whole pond at sunrise.",
    ),
    (
        "Monarch Migration",
        "Monarch butterflies crossing a continent to their wintering forest",
        "Epic scale alternating with intimate close-ups of single wings.",
    ),
    (
        "Tide Pool Secrets",
        "Life in a rocky tide pool during the few hours between tides",
        "Curious and discovery-driven; each scene reveals a new creature.",
    ),
    (
        "The Owl's Silent Flight",
        "Why a barn owl's feathers make no sound as it hunts over a meadow",
        "Suspenseful night hunt; explain the feathers before the dive.",
    ),
    (
        "Coral Spawning",
        "The one night a year a coral reef releases its spawn",
        "Slow build through dusk to a blizzard of colour.",
    ),
)

VOICE = {
    "voice_id": "JBFqnCBsd6RMkjVDRZzb",
    "model_id": "eleven_multilingual_v2",
    "settings": {"stability": 0.5, "similarity_boost": 0.75, "style": 0.0, "speed": 1.0},
}
ATMOSPHERE = "Misty river delta at dawn, low golden side light, photoreal nature documentary"
_CHANNEL_ID = re.compile(r"^[a-z0-9_-]+$")


class SeedError(Exception):
    """A problem the person running the seed can fix; the message says how."""


@dataclass
class Source:
    database_id: str
    data_source_id: str
    status_type: str  # "select" or "status"
    created: bool


def seed_command(args: argparse.Namespace) -> int:
    try:
        result = seed(
            state=Path(args.state),
            channel=str(args.channel),
            projects=int(args.projects),
            scenes=int(args.scenes),
            url=args.url,
            queued=bool(getattr(args, "queued", False)),
            status_type=str(getattr(args, "status_type", "select")),
            youtube=bool(getattr(args, "youtube", False)),
            webhook_url=getattr(args, "webhook_url", None),
        )
    except SeedError as exc:
        print(f"seed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result), flush=True)
    return 0


def seed(
    state: Path,
    channel: str,
    projects: int,
    scenes: int,
    url: str | None = None,
    queued: bool = False,
    status_type: str = "select",
    youtube: bool = False,
    webhook_url: str | None = None,
) -> dict[str, Any]:
    if not _CHANNEL_ID.match(channel):
        raise SeedError(f"channel id {channel!r} must match ^[a-z0-9_-]+$ (it names folders and files)")
    if projects < 0 or not 1 <= scenes <= 60:
        raise SeedError("--projects must be >= 0 and --scenes between 1 and 60")
    if webhook_url and not webhook_url.startswith(("http://", "https://")):
        raise SeedError(
            f"--webhook-url {webhook_url!r}: give an http(s) URL, e.g. http://127.0.0.1:8080/notion/webhook"
        )
    state = state.resolve()
    base = (url or _server_url(state)).rstrip("/")
    creds = _credentials(state)
    name = channel_name(channel)
    try:
        # One httpx client each: notion-client sets its token on the httpx client's headers.
        with httpx.Client() as bot_http, httpx.Client() as operator_http:
            bot = _client(bot_http, base, creds["notion_token"])
            operator = _client(operator_http, base, creds["notion_operator_token"])
            source = find_or_create_source(state, channel, name, bot, operator, creds, status_type)
            page_ids = [
                create_project(bot, source, name, sample, "Queued" if queued else "Draft")
                for sample in samples(projects)
            ]
            if webhook_url:
                subscribe(bot_http, base, webhook_url)
    except (httpx.HTTPError, HTTPResponseError, RequestTimeoutError) as exc:
        raise SeedError(f"the sandbox at {base} did not answer as expected: {exc}") from exc
    env_file = write_env(state, base, creds, webhooks=bool(webhook_url))
    channel_file = write_channel(state, channel, name, source.data_source_id, scenes, youtube=youtube)
    return {
        "event": "seeded",
        "channel": channel,
        "database_id": source.database_id,
        "data_source_id": source.data_source_id,
        "database_created": source.created,
        "status_type": source.status_type,
        "page_ids": page_ids,
        "env_file": str(env_file),
        "channel_file": str(channel_file),
    }


def channel_name(channel: str) -> str:
    return " ".join(part.capitalize() for part in re.split(r"[-_]+", channel) if part)


def _server_url(state: Path) -> str:
    info = state / "server.json"
    if not info.exists():
        raise SeedError(
            f"no {info}: start the sandbox first (python -m sandbox serve --state {state}) or pass --url"
        )
    return str(json.loads(info.read_text())["url"])


def _credentials(state: Path) -> dict[str, str]:
    path = state / "credentials.json"
    if not path.exists():
        raise SeedError(f"no {path}: --state must be the folder the sandbox serves from")
    return dict(json.loads(path.read_text()))


def _client(http: httpx.Client, base: str, token: str) -> notion_client.Client:
    # Patient retries: the sandbox enforces Notion's ~3 requests/s, and seeding many projects
    # runs into it; notion-client waits Retry-After between attempts.
    return notion_client.Client(
        client=http, auth=token, base_url=f"{base}/notion", logger=LOG, retry=RetryOptions(max_retries=20)
    )


def _answer(value: object) -> dict[str, Any]:
    """notion-client's sync calls return the parsed JSON object (typed as sync-or-async)."""
    assert isinstance(value, dict)
    return value


# The database ------------------------------------------------------------------------------------
def database_properties(name: str, status_type: str) -> dict[str, Any]:
    statuses = [{"name": s, "color": c} for s, c in STATUSES]
    return {
        "Title": {"title": {}},
        "Topic": {"rich_text": {}},
        "Story Direction": {"rich_text": {}},
        "Channel": {"select": {"options": [{"name": name, "color": "green"}]}},
        "Status": {status_type: {"options": statuses}},
        "Priority": {"select": {"options": [{"name": p, "color": c} for p, c in PRIORITIES]}},
        "Progress": {"rich_text": {}},
        "Cost": {"number": {"format": "dollar"}},
        "Error Log": {"rich_text": {}},
        "Updated": {"date": {}},
        "Output": {"url": {}},
        "Video": {"files": {}},
        "YouTube URL": {"url": {}},
        "Visibility": {"select": {"options": [{"name": v} for v in ("Private", "Unlisted", "Public")]}},
        "Publish At": {"date": {}},
        "Tags": {"multi_select": {}},
        "Description": {"rich_text": {}},
    }


def find_or_create_source(
    state: Path,
    channel: str,
    name: str,
    bot: notion_client.Client,
    operator: notion_client.Client,
    creds: dict[str, str],
    status_type: str,
) -> Source:
    title = f"{name} videos"
    marker = state / f"seed-{channel}.json"
    found = _from_marker(bot, marker) or _from_search(bot, title)
    if found is None:
        # Status options cannot be made through the API: with a status-type Status the operator
        # builds the database (in the sandbox, the operator's token stands for Notion's UI).
        maker = operator if status_type == "status" else bot
        db = _answer(
            maker.databases.create(
                parent={"type": "page_id", "page_id": creds["notion_root_page_id"]},
                title=[{"type": "text", "text": {"content": title}}],
                initial_data_source={"properties": database_properties(name, status_type)},
            )
        )
        found = Source(db["id"], db["data_sources"][0]["id"], status_type, True)
    marker.write_text(json.dumps({"database_id": found.database_id, "data_source_id": found.data_source_id}))
    return found


def _from_marker(bot: notion_client.Client, marker: Path) -> Source | None:
    if not marker.exists():
        return None
    ds_id = json.loads(marker.read_text()).get("data_source_id")
    try:
        ds = _answer(bot.data_sources.retrieve(ds_id))
    except APIResponseError as exc:
        if exc.status in (400, 404):
            return None
        raise
    return None if ds.get("in_trash") else _source(ds)


def _from_search(bot: notion_client.Client, title: str) -> Source | None:
    hits = _answer(bot.search(query=title, filter={"property": "object", "value": "data_source"}))["results"]
    exact = [
        ds for ds in hits if "".join(t["plain_text"] for t in ds["title"]) == title and not ds["in_trash"]
    ]
    return _source(exact[0]) if exact else None


def _source(ds: dict[str, Any]) -> Source:
    status = ds["properties"].get("Status", {}).get("type", "select")
    return Source(ds["parent"]["database_id"], ds["id"], status, False)


# Projects ----------------------------------------------------------------------------------------
def samples(count: int) -> list[tuple[str, str, str]]:
    """`count` sample projects; past the list, titles get a number so each page is distinct."""
    out = []
    for i in range(count):
        title, topic, direction = SAMPLES[i % len(SAMPLES)]
        round_ = i // len(SAMPLES)
        out.append((f"{title} ({round_ + 1})" if round_ else title, topic, direction))
    return out


def _text(content: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": {"content": content}}]


def create_project(
    bot: notion_client.Client, source: Source, name: str, sample: tuple[str, str, str], status: str
) -> str:
    title, topic, direction = sample
    page = _answer(
        bot.pages.create(
            parent={"type": "data_source_id", "data_source_id": source.data_source_id},
            properties={
                "Title": {"title": _text(title)},
                "Topic": {"rich_text": _text(topic)},
                "Story Direction": {"rich_text": _text(direction)},
                "Channel": {"select": {"name": name}},
                "Priority": {"select": {"name": "Normal"}},
                "Status": {source.status_type: {"name": status}},
            },
        )
    )
    return str(page["id"])


# Files for the daemon ----------------------------------------------------------------------------
ENV_ORDER = (
    "NOTION_TOKEN",
    "NOTION_BASE_URL",
    "GEMINI_API_KEY",
    "GEMINI_BASE_URL",
    "KLING_ACCESS_KEY",
    "KLING_SECRET_KEY",
    "KLING_BASE_URL",
    "ELEVENLABS_API_KEY",
    "ELEVENLABS_BASE_URL",
    "CHANNELS_DIR",
    "WORKSPACE_DIR",
    "NOTION_OPERATOR_TOKEN",
    "SANDBOX_URL",
)
OPERATOR_NOTE = (
    "# NOTION_OPERATOR_TOKEN acts as the operator (a person) in the sandbox's Notion. For tests and the\n"
    "# demo only (they make the operator's edits with it); the daemon never needs it."
)


def env_values(state: Path, base: str, creds: dict[str, str]) -> dict[str, str]:
    return {
        "NOTION_TOKEN": creds["notion_token"],
        "NOTION_BASE_URL": f"{base}/notion",
        "GEMINI_API_KEY": creds["gemini_api_key"],
        "GEMINI_BASE_URL": f"{base}/gemini",
        "KLING_ACCESS_KEY": creds["kling_access_key"],
        "KLING_SECRET_KEY": creds["kling_secret_key"],
        "KLING_BASE_URL": f"{base}/kling",
        "ELEVENLABS_API_KEY": creds["elevenlabs_api_key"],
        "ELEVENLABS_BASE_URL": f"{base}/elevenlabs",
        "CHANNELS_DIR": str(state / "channels"),
        "WORKSPACE_DIR": str(state / "workspace"),
        "NOTION_OPERATOR_TOKEN": creds["notion_operator_token"],
        "SANDBOX_URL": base,
        # YouTube: the project's OAuth client; a channel signs in with `nvd youtube-auth`.
        "YOUTUBE_CLIENT_ID": creds["youtube_client_id"],
        "YOUTUBE_CLIENT_SECRET": creds["youtube_client_secret"],
        "YOUTUBE_BASE_URL": f"{base}/youtube",
        "YOUTUBE_OAUTH_BASE_URL": f"{base}/google-oauth",
        "YOUTUBE_AUTH_URL": f"{base}/google-oauth/o/oauth2/v2/auth",
        "YOUTUBE_WATCH_URL": f"{base}/youtube/watch?v={{id}}",
    }


def read_env(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not line.lstrip().startswith("#"):
                values[key.strip()] = value.strip()
    return values


def subscribe(http: httpx.Client, base: str, url: str) -> None:
    """The sandbox's Notion sends webhooks to `url` (its verification request first)."""
    http.post(f"{base}/_sandbox/config", json={"notion_webhook_url": url}, timeout=30).raise_for_status()


def write_env(state: Path, base: str, creds: dict[str, str], *, webhooks: bool = False) -> Path:
    """One file for every channel seeded into this state: settings a person added are kept, ours
    are refreshed (the sandbox's URL may have changed). Secrets inside: mode 0600. With `webhooks`,
    the daemon's webhooks are on and NOTION_WEBHOOK_SECRET is the sandbox's subscription token: the
    adoption an operator makes by hand (a daemon never adopts a verification request's token)."""
    path = state / "daemon.env"
    values = {**read_env(path), **env_values(state, base, creds)}
    if webhooks:
        values["NOTION_WEBHOOKS"] = "true"
        values["NOTION_WEBHOOK_SECRET"] = creds["notion_webhook_token"]
    # The daemon's key for the sign-ins it stores (a Fernet key): made once, kept after.
    values.setdefault("TOKEN_KEY", base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
    keys = [k for k in ENV_ORDER if k in values] + [k for k in values if k not in ENV_ORDER]
    lines = ["# Written by `python -m sandbox seed`: a daemon's settings for this sandbox."]
    for key in keys:
        if key == "NOTION_OPERATOR_TOKEN":
            lines.append(OPERATOR_NOTE)
        lines.append(f"{key}={values[key]}")
    _write_private(path, "\n".join(lines) + "\n")
    return path


def _write_private(path: Path, content: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_channel(
    state: Path, channel: str, name: str, data_source_id: str, scenes: int, *, youtube: bool = False
) -> Path:
    """The channel config in the shape of docs/ARCHITECTURE.md, "Channel config"."""
    config = {
        "id": channel,
        "name": name,
        "notion": {"data_source_id": data_source_id, "channel_option": name},
        "voice": VOICE,
        "atmosphere": ATMOSPHERE,
        "scenes": scenes,
        "gates": {"storyboard": True, "assets": False, "final": True},
        "weight": 1,
        "budgets": {"per_video_usd": 12.0, "per_day_usd": 60.0},
        # Music composed for each video (a paid ElevenLabs step), ducked under the narration.
        "music": {"source": "generated", "style": "warm low strings and a soft piano"},
        # The title over the opening; an end card so the video lasts the 25 s end screens need.
        "bookends": {"title_card": True, "outro_text": "Thanks for watching", "min_length_s": 25},
    }
    if youtube:
        # Published to the sandbox's YouTube after the final review (seed --youtube; the demo).
        config["youtube"] = {"privacy": "public", "tags": ["nature", "documentary"]}
    folder = state / "channels"
    folder.mkdir(parents=True, exist_ok=True)
    (state / "workspace").mkdir(parents=True, exist_ok=True)
    path = folder / f"{channel}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return path
