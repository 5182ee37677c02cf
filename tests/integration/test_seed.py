"""`python -m sandbox seed` against a running sandbox: the channel database with the canonical
properties and options, sample projects, `daemon.env` and the channel config."""

from __future__ import annotations

import base64
import json
import logging
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from notion_client import Client

from daemon.channels import load_channels
from tests.support.sandbox_proc import SandboxProcess

LOG = logging.getLogger("tests.seed")
STATUSES = [
    "Draft",
    "Queued",
    "Planning",
    "Storyboard Review",
    "Storyboard Approved",
    "Generating Assets",
    "Assets Review",
    "Assets Approved",
    "Generating Video",
    "Assembling",
    "Final Review",
    "Approved",
    "Uploading",
    "Published",
    "Scheduled",
    "Ready",
    "Error",
    "Cancelled",
    "Paused",
]
PROPERTY_TYPES = {
    "Title": "title",
    "Topic": "rich_text",
    "Story Direction": "rich_text",
    "Channel": "select",
    "Status": "select",
    "Priority": "select",
    "Progress": "rich_text",
    "Cost": "number",
    "Error Log": "rich_text",
    "Updated": "date",
    "Output": "url",
    "Video": "files",
    "YouTube URL": "url",
    "Visibility": "select",
    "Publish At": "date",
    "Tags": "multi_select",
    "Description": "rich_text",
}
ENV_KEYS = {
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
    "YOUTUBE_CLIENT_ID",
    "YOUTUBE_CLIENT_SECRET",
    "YOUTUBE_BASE_URL",
    "YOUTUBE_OAUTH_BASE_URL",
    "YOUTUBE_AUTH_URL",
    "YOUTUBE_WATCH_URL",
    "TOKEN_KEY",
}


def run_seed(proc: SandboxProcess, *args: str, use_url: bool = False) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "sandbox", "seed", "--state", str(proc.state_dir), *args]
    if use_url:
        cmd += ["--url", proc.url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout  # exactly one JSON line on stdout
    return dict(json.loads(lines[0]))


def creds(proc: SandboxProcess) -> dict[str, str]:
    return dict(json.loads((proc.state_dir / "credentials.json").read_text()))


@pytest.fixture
def seeded(fresh_sandbox: SandboxProcess) -> SandboxProcess:
    """A fresh sandbox without Notion's pace, so the seeding tests stay quick."""
    fresh_sandbox.configure(notion_rate=1000, notion_burst=100)
    return fresh_sandbox


@pytest.fixture
def notion(seeded: SandboxProcess) -> Iterator[Client]:
    with httpx.Client() as http:
        yield Client(
            client=http, auth=creds(seeded)["notion_token"], base_url=seeded.base("notion"), logger=LOG
        )


def read_env(path: Path) -> tuple[dict[str, str], list[str]]:
    lines = path.read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line and not line.startswith("#")]
    keys = [k for k, _ in pairs]
    return dict(pairs), keys


def plain(values: list[dict[str, Any]]) -> str:
    return "".join(v["plain_text"] for v in values)


def test_seed_builds_the_channel_database_projects_env_and_channel_file(
    seeded: SandboxProcess, notion: Client
) -> None:
    out = run_seed(seeded, "--channel", "nature", "--projects", "3", "--scenes", "5")
    assert out["database_created"] is True and len(out["page_ids"]) == 3

    db = notion.databases.retrieve(out["database_id"])
    assert plain(db["title"]) == "Nature videos"
    assert db["parent"] == {"type": "page_id", "page_id": creds(seeded)["notion_root_page_id"]}
    assert [s["id"] for s in db["data_sources"]] == [out["data_source_id"]]
    props = notion.data_sources.retrieve(out["data_source_id"])["properties"]
    assert {name: p["type"] for name, p in props.items()} == PROPERTY_TYPES
    assert [o["name"] for o in props["Status"]["select"]["options"]] == STATUSES
    assert [o["name"] for o in props["Priority"]["select"]["options"]] == ["High", "Normal", "Low"]
    assert [o["name"] for o in props["Channel"]["select"]["options"]] == ["Nature"]
    assert props["Cost"]["number"]["format"] == "dollar"

    pages = notion.data_sources.query(out["data_source_id"])["results"]
    assert {p["id"] for p in pages} == set(out["page_ids"])
    for page in pages:
        values = page["properties"]
        assert plain(values["Title"]["title"]) and plain(values["Topic"]["rich_text"])
        assert plain(values["Story Direction"]["rich_text"])
        assert values["Channel"]["select"]["name"] == "Nature"
        assert values["Priority"]["select"]["name"] == "Normal"
        assert values["Status"]["select"]["name"] == "Draft"
    assert len({plain(p["properties"]["Title"]["title"]) for p in pages}) == 3

    env_path = seeded.state_dir / "daemon.env"
    assert stat.S_IMODE(env_path.stat().st_mode) == 0o600
    env, keys = read_env(env_path)
    assert set(keys) == ENV_KEYS and len(keys) == len(ENV_KEYS)
    keys_of = creds(seeded)
    assert env["NOTION_TOKEN"] == keys_of["notion_token"]
    assert env["NOTION_OPERATOR_TOKEN"] == keys_of["notion_operator_token"]
    assert env["KLING_SECRET_KEY"] == keys_of["kling_secret_key"]
    assert env["NOTION_BASE_URL"] == f"{seeded.url}/notion"
    assert env["GEMINI_BASE_URL"] == f"{seeded.url}/gemini"
    assert env["KLING_BASE_URL"] == f"{seeded.url}/kling"
    assert env["ELEVENLABS_BASE_URL"] == f"{seeded.url}/elevenlabs"
    assert env["SANDBOX_URL"] == seeded.url
    assert env["YOUTUBE_CLIENT_SECRET"] == keys_of["youtube_client_secret"]
    assert env["YOUTUBE_OAUTH_BASE_URL"] == f"{seeded.url}/google-oauth"
    assert len(base64.urlsafe_b64decode(env["TOKEN_KEY"])) == 32  # a Fernet key
    assert Path(env["CHANNELS_DIR"]) == seeded.state_dir.resolve() / "channels"
    assert Path(env["WORKSPACE_DIR"]) == seeded.state_dir.resolve() / "workspace"
    text = env_path.read_text()
    note = text.split("NOTION_OPERATOR_TOKEN=")[0].rsplit("\n\n", 1)[-1]
    assert "tests" in note and "demo" in note  # the operator token says what it is for

    channel_file = seeded.state_dir / "channels" / "nature.yaml"
    assert yaml.safe_load(channel_file.read_text()) == {
        "id": "nature",
        "name": "Nature",
        "notion": {"data_source_id": out["data_source_id"], "channel_option": "Nature"},
        "voice": {
            "voice_id": "JBFqnCBsd6RMkjVDRZzb",
            "model_id": "eleven_multilingual_v2",
            "settings": {"stability": 0.5, "similarity_boost": 0.75, "style": 0.0, "speed": 1.0},
        },
        "atmosphere": yaml.safe_load(channel_file.read_text())["atmosphere"],
        "scenes": 5,
        "gates": {"storyboard": True, "assets": False, "final": True},
        "weight": 1,
        "budgets": {"per_video_usd": 12.0, "per_day_usd": 60.0},
        "music": {"source": "generated", "style": "warm low strings and a soft piano"},
        "bookends": {"title_card": True, "outro_text": "Thanks for watching", "min_length_s": 25},
    }
    # The daemon's own loader accepts it.
    loaded = load_channels(Path(env["CHANNELS_DIR"]))
    assert loaded["nature"].notion is not None
    assert loaded["nature"].notion.data_source_id == out["data_source_id"]


def test_seeding_again_reuses_the_database(seeded: SandboxProcess, notion: Client) -> None:
    first = run_seed(seeded, "--projects", "2")
    second = run_seed(seeded, "--projects", "1", use_url=True)
    assert second["database_created"] is False
    assert (second["database_id"], second["data_source_id"]) == (
        first["database_id"],
        first["data_source_id"],
    )
    # Without the marker file the database is found by its title.
    (seeded.state_dir / "seed-nature.json").unlink()
    third = run_seed(seeded, "--projects", "0")
    assert third["database_id"] == first["database_id"] and third["page_ids"] == []
    found = notion.search(query="Nature videos", filter={"property": "object", "value": "data_source"})[
        "results"
    ]
    assert len(found) == 1
    assert len(notion.data_sources.query(first["data_source_id"])["results"]) == 3


def test_two_channels_get_their_own_database_and_share_one_env_file(seeded: SandboxProcess) -> None:
    nature = run_seed(seeded, "--channel", "nature")
    env_path = seeded.state_dir / "daemon.env"
    env_path.write_text(env_path.read_text() + "DATABASE_URL=sqlite:///custom.db\n")
    ocean = run_seed(seeded, "--channel", "ocean_life", "--scenes", "3")
    assert ocean["data_source_id"] != nature["data_source_id"]
    env, keys = read_env(env_path)
    assert len(keys) == len(set(keys)) == len(ENV_KEYS) + 1
    assert env["DATABASE_URL"] == "sqlite:///custom.db"  # a person's own setting is kept
    assert stat.S_IMODE(env_path.stat().st_mode) == 0o600
    channels = load_channels(seeded.state_dir / "channels")
    assert set(channels) == {"nature", "ocean_life"}
    assert channels["ocean_life"].name == "Ocean Life" and channels["ocean_life"].scenes == 3
    assert channels["ocean_life"].notion is not None
    assert channels["ocean_life"].notion.data_source_id == ocean["data_source_id"]


def test_queued_projects_in_a_status_type_database(seeded: SandboxProcess, notion: Client) -> None:
    out = run_seed(seeded, "--channel", "birds", "--projects", "2", "--queued", "--status-type", "status")
    ds = notion.data_sources.retrieve(out["data_source_id"])
    status = ds["properties"]["Status"]
    assert status["type"] == "status"
    assert [o["name"] for o in status["status"]["options"]] == STATUSES
    # Status options cannot be made through the API: the operator made this database.
    assert ds["created_by"]["id"] == creds(seeded)["notion_operator_id"]
    queued = notion.data_sources.query(
        out["data_source_id"], filter={"property": "Status", "status": {"equals": "Queued"}}
    )["results"]
    assert {p["id"] for p in queued} == set(out["page_ids"])
    assert all(p["created_by"]["id"] == creds(seeded)["notion_bot_id"] for p in queued)


def test_seed_keeps_to_notions_rate_limit(fresh_sandbox: SandboxProcess) -> None:
    """At the default 3 requests/s (burst 10) a larger seed runs into 429s and waits them out."""
    out = run_seed(fresh_sandbox, "--projects", "14")
    assert len(out["page_ids"]) == 14
    assert fresh_sandbox.stats()["notion"]["rate_limited"] >= 1


def test_seed_without_a_sandbox_says_how_to_start_one(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "seed", "--state", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "python -m sandbox serve" in done.stderr
