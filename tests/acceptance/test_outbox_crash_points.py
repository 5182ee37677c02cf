"""The outbox's crash points: the daemon dies between a Notion write and its bookkeeping; after
the restart every property is right and no comment is written twice."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon.notion.board import find_section
from daemon.notion.body import block_text
from daemon.notion.gateway import NotionApi
from daemon.notion.props import option_name
from tests.support.daemon_proc import DaemonProcess
from tests.support.db import ON_SQLITE
from tests.support.notion_kit import seed
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import credentials, daemon_env, small_cut_scripts


def _daemon_env(sandbox: SandboxProcess, database: str, tmp_path: Path) -> tuple[dict[str, str], str]:
    """A one-scene channel with a storyboard gate, and its page; the daemon's environment."""
    sandbox.configure(cheap_media=True, kling_seconds=120)
    seeded = seed(sandbox, "nature", 1, "--scenes", "1")
    channels = tmp_path / "channels"
    channels.mkdir()
    config = yaml.safe_load(Path(seeded["channel_file"]).read_text())
    config["gates"] = {"storyboard": True, "assets": False, "final": False}
    (channels / "nature.yaml").write_text(yaml.safe_dump(config))
    env = {
        **daemon_env(sandbox, tmp_path / "ws", channels, database, scripts_dir=small_cut_scripts(tmp_path)),
        "NOTION_POLL_S": "1",
        "CLAIM_POLL_S": "0.2",
        "IDLE_POLL_MAX_S": "0.5",
        "LEASE_TTL_S": "5",
        # A write cut by the crash may still land: the page's Status waits this long after a restart.
        "NOTION_LATE_WRITE_S": "6",
    }
    return env, seeded["page_ids"][0]


@ON_SQLITE
@pytest.mark.parametrize("point", ["outbox_after_property_write", "outbox_after_comment"])
async def test_a_crash_between_a_notion_write_and_its_bookkeeping_writes_nothing_twice(
    point: str, fresh_sandbox: SandboxProcess, database: str, tmp_path: Path
) -> None:
    env, page = _daemon_env(fresh_sandbox, database, tmp_path)
    operator = NotionApi(credentials(fresh_sandbox)["notion_operator_token"], fresh_sandbox.base("notion"))
    try:
        await _set_status(operator, page, "Queued")
        crashing = DaemonProcess({**env, "CRASH_AT": point}, tmp_path / "crash.log", "nv-host").start()
        try:
            assert crashing.wait(timeout=120) in (9, -9), f"the daemon did not crash at {point}"
        finally:
            crashing.stop()
        await _approve_and_finish(env, operator, page, tmp_path)
    finally:
        await operator.close()


@ON_SQLITE
async def test_a_daemon_killed_while_notion_is_slow_to_post_its_comment_posts_it_once(
    fresh_sandbox: SandboxProcess, database: str, tmp_path: Path
) -> None:
    """Finding 3 of the reliability issue: SIGKILL while a comment POST is out, Notion applies it late,
    and the restarted daemon, finding no comment yet, posted it again."""
    env, page = _daemon_env(fresh_sandbox, database, tmp_path)
    token = credentials(fresh_sandbox)["notion_token"]
    operator = NotionApi(credentials(fresh_sandbox)["notion_operator_token"], fresh_sandbox.base("notion"))
    fresh_sandbox.fault(
        provider="notion",
        kind="latency",
        latency_ms=4000,
        count=1,
        endpoint="^POST /notion/v1/comments",
        token=token,
    )
    try:
        await _set_status(operator, page, "Queued")
        first = DaemonProcess(env, tmp_path / "first.log", "nv-host").start()
        try:
            deadline = time.monotonic() + 90
            while fresh_sandbox.get("/_sandbox/faults")["faults"]:  # until the review comment is out
                assert time.monotonic() < deadline, "the daemon never posted its review comment"
                await asyncio.sleep(0.05)
            first.signal(signal.SIGKILL)
            first.wait(timeout=30)
        finally:
            first.stop()
        await _approve_and_finish(env, operator, page, tmp_path)
    finally:
        await operator.close()


@ON_SQLITE
@pytest.mark.parametrize("point", ["upload_after_create", "upload_after_send"])
async def test_a_crash_in_the_middle_of_an_upload_sends_each_file_once(
    point: str, fresh_sandbox: SandboxProcess, database: str, tmp_path: Path
) -> None:
    """The daemon dies right after Notion made an upload (its id not yet stored), or right after
    the bytes went in (not yet marked): the next daemon finds the upload instead of sending again."""
    env, page = _daemon_env(fresh_sandbox, database, tmp_path)
    operator = NotionApi(credentials(fresh_sandbox)["notion_operator_token"], fresh_sandbox.base("notion"))
    try:
        await _set_status(operator, page, "Queued")
        crashing = DaemonProcess({**env, "CRASH_AT": point}, tmp_path / "crash.log", "nv-host").start()
        try:
            await _until_status(operator, page, "Storyboard Review")
            await _set_status(operator, page, "Storyboard Approved")
            assert crashing.wait(timeout=120) in (9, -9), f"the daemon did not crash at {point}"
        finally:
            crashing.stop()
        daemon = DaemonProcess(env, tmp_path / "after.log", "nv-host").start()
        try:
            await _until_status(operator, page, "Ready")
            await _until_board_shows_video(operator, page)
        finally:
            daemon.signal()
            daemon.wait(timeout=30)
    finally:
        await operator.close()
    per_upload = fresh_sandbox.file_sends()
    assert per_upload and max(per_upload.values()) == 1, per_upload
    bot = NotionApi(credentials(fresh_sandbox)["notion_token"], fresh_sandbox.base("notion"))
    try:
        uploads = await bot.call("GET", "file_uploads", query={"page_size": 100})
    finally:
        await bot.close()
    names = Counter(u["filename"] for u in uploads["results"])
    assert max(names.values()) == 1, names  # one upload made per file, the crashed one found again
    assert all(u["status"] == "uploaded" for u in uploads["results"])


async def _until_board_shows_video(operator: NotionApi, page: str) -> list[dict[str, Any]]:
    """The page body once its Video section holds the final cut; each section once."""
    deadline = time.monotonic() + 60
    while True:
        blocks = (await operator.call("GET", f"blocks/{page}/children", query={"page_size": 100}))["results"]
        _, video = find_section(blocks, "Video")
        if any(b["type"] == "video" for b in video):
            headings = Counter(block_text(b) for b in blocks if b["type"] == "heading_2")
            assert all(headings[name] == 1 for name in ("Storyboard", "Assets", "Scenes", "Video")), headings
            return list(blocks)
        assert time.monotonic() < deadline, "the page never showed the final cut"
        await asyncio.sleep(0.5)


async def _set_status(operator: NotionApi, page: str, status: str) -> None:
    await operator.call(
        "PATCH", f"pages/{page}", body={"properties": {"Status": {"select": {"name": status}}}}
    )


async def _approve_and_finish(env: dict[str, str], operator: NotionApi, page: str, tmp_path: Path) -> None:
    """A new daemon takes the page to its review, is approved, finishes: every comment once."""
    daemon = DaemonProcess(env, tmp_path / "after.log", "nv-host").start()
    try:
        await _until_status(operator, page, "Storyboard Review")
        await _set_status(operator, page, "Storyboard Approved")
        await _until_status(operator, page, "Ready")
        await _until_board_shows_video(operator, page)
    finally:
        daemon.signal()
        daemon.wait(timeout=30)
    listing = await operator.call("GET", "comments", query={"block_id": page, "page_size": 100})
    texts = ["".join(p["plain_text"] for p in c["rich_text"]) for c in listing["results"]]
    assert sum("The storyboard is ready for review" in t for t in texts) == 1
    assert sum("The video is ready" in t for t in texts) == 1
    final = (await operator.call("GET", f"pages/{page}"))["properties"]
    assert final["Cost"]["number"] > 0
    assert final["Output"]["url"].endswith(".mp4")


async def _until_status(operator: NotionApi, page: str, status: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        got = option_name((await operator.call("GET", f"pages/{page}"))["properties"]["Status"])
        if got == status:
            return
        assert time.monotonic() < deadline, f"the page never showed {status} (last: {got})"
        await asyncio.sleep(0.5)
