"""The real daemon process on a seeded sandbox: Queued in Notion to Ready in Notion, and a clean
exit on SIGTERM in the middle of a clip."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import yaml

from daemon.notion.gateway import NotionApi
from daemon.notion.props import option_name, plain_text
from tests.support.daemon_proc import DaemonProcess
from tests.support.db import ON_SQLITE
from tests.support.media import video_info
from tests.support.notion_kit import seed
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import credentials, daemon_env


@ON_SQLITE
async def test_queued_in_notion_becomes_a_ready_page_with_a_video_and_sigterm_exits_cleanly(
    fresh_sandbox: SandboxProcess, database: str, tmp_path: Path
) -> None:
    fresh_sandbox.configure(kling_seconds=600)  # ~10 s per clip: the daemon is mid-clip when stopped
    seeded = seed(fresh_sandbox, "nature", 1, "--scenes", "2")
    page = seeded["page_ids"][0]
    channels = tmp_path / "channels"
    channels.mkdir()
    config = yaml.safe_load(Path(seeded["channel_file"]).read_text())
    config["gates"] = {"storyboard": False, "assets": False, "final": False}
    (channels / "nature.yaml").write_text(yaml.safe_dump(config))
    env = {
        **daemon_env(fresh_sandbox, tmp_path / "ws", channels, database),
        "NOTION_POLL_S": "1",
        "CLAIM_POLL_S": "0.3",
        "SIGTERM_GRACE_S": "1",
    }
    operator = NotionApi(credentials(fresh_sandbox)["notion_operator_token"], fresh_sandbox.base("notion"))
    try:
        await operator.call(
            "PATCH", f"pages/{page}", body={"properties": {"Status": {"select": {"name": "Queued"}}}}
        )

        async def status() -> str | None:
            got = await operator.call("GET", f"pages/{page}")
            return option_name(got["properties"]["Status"])

        first = DaemonProcess(env, tmp_path / "first.log", "first").start()
        try:
            await _until(lambda: _clip_submitted(fresh_sandbox), 120, "a clip submitted to Kling")

            async def in_production() -> bool:
                return await status() in ("Generating Video", "Generating Assets")

            # The page follows within seconds (the outbox paces its writes; against an instant
            # sandbox the first clip can be out 2 s after Queued, before the page left Planning).
            await _until(in_production, 15, "the page to show the video in production")
            first.signal(signal.SIGTERM)
            assert first.wait(timeout=30) == 0
        finally:
            first.stop()
        events = [e.get("event") for e in first.events()]
        assert "lease_handed_back" in events
        assert "leadership_released" in events

        second = DaemonProcess(env, tmp_path / "second.log", "second").start()
        try:

            async def ready() -> bool:
                return await status() == "Ready"

            await _until(ready, 240, "the page to show Ready")
            second.signal(signal.SIGTERM)
            assert second.wait(timeout=30) == 0
        finally:
            second.stop()
        final = (await operator.call("GET", f"pages/{page}"))["properties"]
        assert plain_text(final["Progress"]).endswith(f"${final['Cost']['number']:.2f}")
        assert final["Cost"]["number"] > 0
        video = Path(final["Output"]["url"].removeprefix("file://"))
        info = video_info(video)
        assert (info.width, info.height, info.video_codec, info.audio_codec) == (1920, 1080, "h264", "aac")
        creates = {c["identity"] for c in fresh_sandbox.calls("kling")}
        assert len(fresh_sandbox.calls("kling")) == len(creates) == 2  # one create per clip, none repeated
    finally:
        await operator.close()


async def _clip_submitted(sandbox: SandboxProcess) -> bool:
    return bool(sandbox.calls("kling"))


async def _until(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")
