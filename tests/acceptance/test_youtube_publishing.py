"""Publishing as an operator drives it through Notion: three videos approved on a project whose quota
is two uploads a day. Two are published (one scheduled: private until its Publish At), the third
waits and its page says until when. After the reset the channel's sign-in turns out revoked: the
page names the command, the operator runs `nvd youtube-auth` (the sandbox's Google
consents in place of a browser), and the third video is published, once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml

from daemon.notion.gateway import NotionApi
from daemon.notion.props import option_name, plain_text
from daemon.paths import DEFAULT_PROVIDERS_FILE
from tests.support.daemon_proc import DaemonProcess
from tests.support.db import ON_SQLITE
from tests.support.notion_kit import seed
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import credentials, daemon_env, sign_in_youtube, small_cut_scripts

PACIFIC = ZoneInfo("America/Los_Angeles")


class Pages:
    def __init__(self, api: NotionApi) -> None:
        self.api = api

    async def props(self, page: str) -> dict[str, Any]:
        return dict((await self.api.call("GET", f"pages/{page}"))["properties"])

    async def status(self, page: str) -> str | None:
        return option_name((await self.props(page))["Status"])

    async def set(self, page: str, **props: Any) -> None:
        await self.api.call("PATCH", f"pages/{page}", body={"properties": props})

    async def comments(self, page: str) -> list[str]:
        answer = await self.api.call("GET", "comments", query={"block_id": page, "page_size": 100})
        return ["".join(r["plain_text"] for r in c["rich_text"]) for c in answer["results"]]

    async def until(self, page: str, wanted: set[str], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = await self.status(page)
            if seen in wanted:
                return seen
            await asyncio.sleep(0.4)
        raise AssertionError(f"page {page} never showed {sorted(wanted)} (last: {seen})")

    async def until_comment(self, page: str, words: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while time.monotonic() < deadline:
            seen = await self.comments(page)
            for comment in seen:
                if words in comment:
                    return comment
            await asyncio.sleep(0.4)
        raise AssertionError(f"page {page} never had a comment saying {words!r} (comments: {seen})")

    async def until_progress(self, page: str, words: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        progress = ""
        while time.monotonic() < deadline:
            progress = plain_text((await self.props(page))["Progress"])
            if words in progress:
                return progress
            await asyncio.sleep(0.4)
        raise AssertionError(f"page {page}'s Progress never said {words!r} (last: {progress!r})")


@ON_SQLITE
@pytest.mark.timeout(600)
async def test_two_uploads_a_day_schedule_and_a_revoked_sign_in_each_reach_the_page(
    fresh_sandbox: SandboxProcess, database: str, tmp_path: Path
) -> None:
    fresh_sandbox.configure(cheap_media=True, kling_seconds=120, youtube_uploads_per_day=2)
    providers = yaml.safe_load(DEFAULT_PROVIDERS_FILE.read_text())
    providers["youtube_quota"] = {"default": {"uploads_per_day": 2, "units_per_day": 10_000}}
    (tmp_path / "providers.yaml").write_text(yaml.safe_dump(providers))
    seeded, env = await _publishing_channel(
        fresh_sandbox, database, tmp_path, 3, PROVIDERS_FILE=str(tmp_path / "providers.yaml")
    )
    api = NotionApi(credentials(fresh_sandbox)["notion_operator_token"], fresh_sandbox.base("notion"))
    pages = Pages(api)
    scheduled, first, last = seeded["page_ids"]
    publish_at = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    await pages.set(
        scheduled,
        **{
            "Publish At": {"date": {"start": publish_at.isoformat().replace("+00:00", "Z")}},
            "Visibility": {"select": {"name": "Private"}},
            "Tags": {"multi_select": [{"name": "herons"}]},
        },
    )
    daemon = DaemonProcess(env, tmp_path / "daemon.log", "publisher").start()
    try:
        for page in (scheduled, first, last):
            await pages.set(page, Status={"select": {"name": "Queued"}})
        for page in (scheduled, first):
            await pages.until(page, {"Final Review"}, 240)
            await pages.set(page, Status={"select": {"name": "Approved"}})
        assert await pages.until(scheduled, {"Scheduled"}, 120) == "Scheduled"
        assert await pages.until(first, {"Published"}, 120) == "Published"
        await pages.until(last, {"Final Review"}, 240)
        await pages.set(last, Status={"select": {"name": "Approved"}})
        # The day's two uploads are used: the third waits, and its page says until when.
        reset = _next_pacific_midnight(datetime.now(UTC))
        progress = await pages.until_progress(last, "daily quota", 60)
        assert f"{reset:%Y-%m-%d %H:%M} UTC" in progress
        assert await pages.status(last) == "Uploading"
        assert f"{reset:%H:%M} UTC" in await pages.until_comment(last, "daily quota", 30)
        assert len(_complete(fresh_sandbox)) == 2
    finally:
        daemon.signal()
        daemon.wait(timeout=30)

    # The next Pacific day, on both clocks; meanwhile Google revoked the channel's sign-in.
    offset = str((reset - datetime.now(UTC)).total_seconds() + 120)
    fresh_sandbox.configure(youtube_clock_offset_s=float(offset))
    fresh_sandbox.post("/_sandbox/youtube/revoke", {})
    daemon = DaemonProcess({**env, "YOUTUBE_CLOCK_OFFSET_S": offset}, tmp_path / "daemon2.log", "publisher")
    daemon.start()
    try:
        await pages.until_progress(last, "youtube-auth --channel nature", 90)
        await pages.until_comment(last, "nvd youtube-auth --channel nature", 30)
        signed = await asyncio.to_thread(_youtube_auth, env)
        assert "Signed in: channel nature" in signed
        assert await pages.until(last, {"Published"}, 120) == "Published"
    finally:
        daemon.signal()
        daemon.wait(timeout=30)
        await api.close()

    videos = _complete(fresh_sandbox)
    assert len(videos) == 3
    assert len({v["snippet"]["title"] for v in videos}) == 3  # each page once
    for video in videos:
        assert video["thumbnail"] is not None and len(video["captions"]) == 1
    by_id = {v["id"]: v for v in videos}
    props = {page: await _props(fresh_sandbox, page) for page in (scheduled, first, last)}
    for page, shown in props.items():
        url = shown["YouTube URL"]["url"]
        assert url and url.rsplit("=", 1)[1] in by_id, f"page {page} has no URL of a published video"
    held = by_id[props[scheduled]["YouTube URL"]["url"].rsplit("=", 1)[1]]
    assert held["status"]["privacyStatus"] == "private"
    assert held["status"]["publishAt"].startswith(publish_at.strftime("%Y-%m-%dT%H:%M:%S"))
    assert "herons" in held["snippet"]["tags"]
    public = by_id[props[first]["YouTube URL"]["url"].rsplit("=", 1)[1]]
    assert public["status"]["privacyStatus"] == "public"  # the channel's default
    # The page's Description was empty: the storyboard's generated one went up.
    assert public["snippet"]["description"]


async def _publishing_channel(
    sandbox: SandboxProcess, database: str, tmp_path: Path, projects: int, **settings: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """Seeded pages of 1 scene on a channel that publishes after the final review (no music or
    bookends: short cuts), signed in; the seed's answer and the daemon's environment."""
    seeded = seed(sandbox, "nature", projects, "--scenes", "1", "--youtube")
    channels = tmp_path / "channels"
    channels.mkdir()
    config = yaml.safe_load(Path(seeded["channel_file"]).read_text())
    config |= {"gates": {"storyboard": False, "assets": False, "final": True}, "music": {"source": "none"}}
    config.pop("bookends")
    (channels / "nature.yaml").write_text(yaml.safe_dump(config))
    env = {
        **daemon_env(sandbox, tmp_path / "ws", channels, database, scripts_dir=small_cut_scripts(tmp_path)),
        "NOTION_POLL_S": "1",
        "CLAIM_POLL_S": "0.2",
        "YOUTUBE_RECHECK_S": "1",
        **settings,
    }
    await sign_in_youtube(sandbox, env, "nature")
    return seeded, env


def _complete(sandbox: SandboxProcess) -> list[dict[str, Any]]:
    return [v for v in sandbox.get("/_sandbox/youtube/videos")["videos"] if v["complete"]]


async def _props(sandbox: SandboxProcess, page: str) -> dict[str, Any]:
    api = NotionApi(credentials(sandbox)["notion_operator_token"], sandbox.base("notion"))
    try:
        return dict((await api.call("GET", f"pages/{page}"))["properties"])
    finally:
        await api.close()


def _next_pacific_midnight(now: datetime) -> datetime:
    local = now.astimezone(PACIFIC)
    return datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), PACIFIC).astimezone(UTC)


def _youtube_auth(env: dict[str, str]) -> str:
    """`python -m daemon youtube-auth` as an operator runs it; the test opens the address it prints
    (the sandbox's Google consents at once and sends the browser to the command's loopback)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "youtube-auth", "--channel", "nature"],
        env={**os.environ, **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.strip().startswith("http"):
            httpx.get(line.strip(), follow_redirects=True, timeout=30)
            break
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return "".join(lines) + out


@ON_SQLITE
@pytest.mark.timeout(600)
async def test_bad_choices_are_refused_with_the_fix_and_a_cancel_mid_upload_resumes_the_same_upload(
    fresh_sandbox: SandboxProcess, database: str, tmp_path: Path
) -> None:
    """In odd orders: Queued with a Publish At that has no time (Error, naming the fix); fixed and
    queued again; Approved with Publish At on a public video (refused, back to Final Review); fixed
    and approved; Cancelled while the video uploads, then Queued: the upload session is resumed, and
    the video is on the channel once."""
    # The last chunk's answer takes 15 s (YouTube processing): time to cancel mid-upload.
    fresh_sandbox.configure(cheap_media=True, kling_seconds=120, youtube_seconds=900)
    seeded, env = await _publishing_channel(fresh_sandbox, database, tmp_path, 1)
    api = NotionApi(credentials(fresh_sandbox)["notion_operator_token"], fresh_sandbox.base("notion"))
    pages = Pages(api)
    page = seeded["page_ids"][0]
    later = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    daemon = DaemonProcess(env, tmp_path / "daemon.log", "odd-orders").start()
    try:
        await pages.set(page, **{"Publish At": {"date": {"start": later.date().isoformat()}}})
        await pages.set(page, Status={"select": {"name": "Queued"}})
        await pages.until(page, {"Error"}, 60)
        error_log = plain_text((await pages.props(page))["Error Log"])
        assert "Publish At" in error_log and "Include time" in error_log

        stamp = later.isoformat().replace("+00:00", "Z")
        await pages.set(page, **{"Publish At": {"date": {"start": stamp}}})
        await pages.set(page, Status={"select": {"name": "Queued"}})
        await pages.until(page, {"Final Review"}, 240)
        await pages.set(page, Visibility={"select": {"name": "Public"}})
        await pages.set(page, Status={"select": {"name": "Approved"}})
        refusal = await pages.until_comment(page, "Status Approved was not applied", 60)
        assert "set Visibility to Private" in refusal and "Then set Approved again" in refusal
        await pages.until(page, {"Final Review"}, 30)
        assert _complete(fresh_sandbox) == []

        await pages.set(page, **{"Publish At": {"date": None}})
        await pages.set(page, Status={"select": {"name": "Approved"}})
        await pages.until(page, {"Uploading"}, 60)
        deadline = time.monotonic() + 60
        while not fresh_sandbox.get("/_sandbox/youtube/videos")["sessions"]:
            assert time.monotonic() < deadline, "the upload never started"
            await asyncio.sleep(0.2)
        await pages.set(page, Status={"select": {"name": "Cancelled"}})
        await pages.until(page, {"Cancelled"}, 30)
        # YouTube refuses the custom thumbnail (an unverified channel): the video is published all
        # the same, and the comment says so.
        fresh_sandbox.fault(
            provider="youtube",
            status=403,
            code="forbidden",
            message="The authenticated user doesn't have permissions to upload and set custom thumbnails.",
            endpoint="thumbnails/set",
            count=5,
        )
        await pages.set(page, Status={"select": {"name": "Queued"}})
        assert await pages.until(page, {"Published"}, 180) == "Published"
        published = await pages.until_comment(page, "The video is on YouTube", 30)
        assert "It is public." in published and "YouTube refused its thumbnail" in published
        sessions = fresh_sandbox.get("/_sandbox/youtube/videos")["sessions"]
        assert len(sessions) == 1  # the cancelled upload's session was resumed, not started again

        # A new pass that changes what is published (a new upload generation, a new input): the
        # video is found on the channel by its marker, not published a second time.
        await pages.set(page, Description={"rich_text": [{"text": {"content": "Herons at dawn, again."}}]})
        await pages.set(page, Status={"select": {"name": "Queued"}})
        deadline = time.monotonic() + 120
        while sum("The video is on YouTube" in c for c in await pages.comments(page)) < 2:
            assert time.monotonic() < deadline, "the second pass never ended Published"
            await asyncio.sleep(0.5)
        assert await pages.status(page) == "Published"
    finally:
        daemon.signal()
        daemon.wait(timeout=30)
        await api.close()

    videos = _complete(fresh_sandbox)
    assert len(videos) == 1
    assert videos[0]["status"]["privacyStatus"] == "public"
    assert "publishAt" not in videos[0]["status"]
