"""The operator's loop through Notion, as an operator drives it: Queued, Storyboard Review, approve,
Cancelled while the clips render, Queued again, approve, Ready. The sandbox's call log shows one
Kling task per scene (the cancelled pass's clips collected, not bought again) and no paid call made
while a review gate waited."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon.notion.body import read_storyboard_block, write_storyboard_block
from daemon.notion.gateway import NotionApi
from daemon.notion.props import option_name
from tests.support.chaos import audit
from tests.support.daemon_proc import DaemonProcess
from tests.support.db import ON_SQLITE
from tests.support.notion_kit import seed
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import credentials, daemon_env, small_cut_scripts

PAID = {"gemini", "kling", "elevenlabs"}


class Operator:
    """Edits the page and notes what it saw, with the wall-clock spans a gate waited."""

    def __init__(self, api: NotionApi, page: str) -> None:
        self.api, self.page = api, page
        self.waited: list[tuple[float, float]] = []  # (first seen waiting, approved)

    async def status(self) -> str | None:
        return option_name((await self.api.call("GET", f"pages/{self.page}"))["properties"]["Status"])

    async def set(self, status: str) -> None:
        body = {"properties": {"Status": {"select": {"name": status}}}}
        await self.api.call("PATCH", f"pages/{self.page}", body=body)

    async def until(self, wanted: set[str], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            seen = await self.status()
            if seen in wanted:
                return seen
            await asyncio.sleep(0.3)
        raise AssertionError(f"the page never showed {sorted(wanted)} (last: {seen})")

    async def approve_storyboard(self) -> None:
        seen_at = time.time()
        await self.set("Storyboard Approved")
        self.waited.append((seen_at, time.time()))


@ON_SQLITE
async def test_cancel_while_clips_render_then_queue_again_pays_each_clip_once_and_no_gate_is_skipped(
    fresh_sandbox: SandboxProcess, database: str, tmp_path: Path
) -> None:
    fresh_sandbox.configure(cheap_media=True, kling_seconds=900)  # 15 s clips: cancelled mid-render
    config, env = _two_scene_channel(fresh_sandbox, database, tmp_path, storyboard_gate=True)
    api = NotionApi(credentials(fresh_sandbox)["notion_operator_token"], fresh_sandbox.base("notion"))
    operator = Operator(api, config["page"])
    daemon = DaemonProcess(env, tmp_path / "daemon.log", "operator-loop").start()
    try:
        await operator.set("Queued")
        await operator.until({"Storyboard Review"}, 120)
        await operator.approve_storyboard()
        deadline = time.monotonic() + 120
        while len(fresh_sandbox.calls("kling")) < 2:  # both clips submitted and rendering
            assert time.monotonic() < deadline, "the clips were not submitted"
            await asyncio.sleep(0.3)
        await operator.set("Cancelled")
        # Seen at the next poll (1 s here while at work), and the scripts killed at once.
        await _until_nothing_runs(database, fresh_sandbox, tmp_path, 5)
        await operator.set("Queued")
        # The daemon's Storyboard block is read back as the operator's: the gate asks again.
        if await operator.until({"Storyboard Review", "Generating Video", "Assembling", "Ready"}, 60) == (
            "Storyboard Review"
        ):
            await operator.approve_storyboard()
        await operator.until({"Ready"}, 180)
    finally:
        daemon.signal()
        daemon.wait(timeout=30)
        await api.close()
    result = await audit(database, fresh_sandbox, tmp_path / "ws")
    assert result.problems == []
    assert sorted(result.kling_creates_per_clip().values()) == [1, 1]  # collected, not bought again
    paid_while_waiting = [
        (c["provider"], c["item"])
        for c in result.calls
        if c["provider"] in PAID
        and not c["item"].endswith(":storyboard")
        and any(start < c["started"] < end for start, end in _gate_spans(operator))
    ]
    assert paid_while_waiting == []


def _two_scene_channel(
    sandbox: SandboxProcess,
    database: str,
    tmp_path: Path,
    *,
    storyboard_gate: bool = False,
    final_gate: bool = False,
) -> tuple[dict[str, Any], dict[str, str]]:
    """A seeded channel of one 2-scene page with these gates: its config (and its page, "page"),
    and the daemon's environment (the small-cut scripts, 1 s Notion polls)."""
    seeded = seed(sandbox, "nature", 1, "--scenes", "2")
    channels = tmp_path / "channels"
    channels.mkdir()
    config = yaml.safe_load(Path(seeded["channel_file"]).read_text())
    config["gates"] = {"storyboard": storyboard_gate, "assets": False, "final": final_gate}
    (channels / "nature.yaml").write_text(yaml.safe_dump(config))
    env = {
        **daemon_env(sandbox, tmp_path / "ws", channels, database, scripts_dir=small_cut_scripts(tmp_path)),
        "NOTION_POLL_S": "1",
        "CLAIM_POLL_S": "0.2",
    }
    return {**config, "page": seeded["page_ids"][0]}, env


def _gate_spans(operator: Operator) -> list[tuple[float, float]]:
    """When the storyboard gate waited: from a moment before the page could show it (the daemon
    writes Status a little after the gate opens) to the approval."""
    return [(start - 2.0, end) for start, end in operator.waited]


async def _until_nothing_runs(database: str, sandbox: SandboxProcess, tmp_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await audit(database, sandbox, tmp_path / "ws")
        states: dict[str, Any] = {i.key: i.state for i in result.items}
        cancelled = bool(result.tasks) and result.tasks[0].state == "cancelled"
        scripts = list((tmp_path / "ws" / "run").glob("*.json"))  # a script's pidfile: it still runs
        if cancelled and "running" not in states.values() and not scripts:
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"the cancel did not stop the running scripts within {timeout} s")


@ON_SQLITE
@pytest.mark.timeout(480)  # two passes of real scripts: about 40 s alone, minutes beside the suite
async def test_new_words_at_final_review_buy_one_narration_and_a_new_cut_never_a_clip_or_music_again(
    fresh_sandbox: SandboxProcess, database: str, tmp_path: Path
) -> None:
    """At Final Review the operator rewrites scene 2's narration in the Storyboard block, cancels
    and queues the page again: the daemon buys that narration again, and nothing else (each clip waited for
    its narration but does not take its hash; the music is the video's, not the scene's), makes a
    new cut, and asks for the final review again before Ready."""
    fresh_sandbox.configure(cheap_media=True)
    config, env = _two_scene_channel(fresh_sandbox, database, tmp_path, final_gate=True)
    assert config["music"]["source"] == "generated"
    api = NotionApi(credentials(fresh_sandbox)["notion_operator_token"], fresh_sandbox.base("notion"))
    page = config["page"]
    operator = Operator(api, page)
    daemon = DaemonProcess(env, tmp_path / "daemon.log", "operator-words").start()
    try:
        await operator.set("Queued")
        await operator.until({"Final Review"}, 180)
        first_cut = await _assemblies(database, fresh_sandbox, tmp_path)
        block = await read_storyboard_block(api, page)
        assert block.text
        board = yaml.safe_load(block.text)
        board["scenes"][1]["narration"] = (
            "Then, without a sound, the heron strikes and the water closes again."
        )
        await write_storyboard_block(api, page, yaml.safe_dump(board, sort_keys=False))
        # A video at a review is still in production: Cancelled, then Queued starts a new pass.
        await operator.set("Cancelled")
        # Seen by the daemon before the next edit (a page read once per poll shows only its last
        # Status: Queued over an unseen Cancelled would be refused as "already in production").
        await _until_nothing_runs(database, fresh_sandbox, tmp_path, 120)
        await operator.set("Queued")
        deadline = time.monotonic() + 180
        while await _assemblies(database, fresh_sandbox, tmp_path) == first_cut:
            assert time.monotonic() < deadline, "no new cut was made"
            await asyncio.sleep(0.5)
        await operator.until({"Final Review"}, 180)
        await operator.set("Approved")
        await operator.until({"Ready"}, 60)
    finally:
        daemon.signal()
        daemon.wait(timeout=30)
        await api.close()
    result = await audit(database, fresh_sandbox, tmp_path / "ws")
    assert result.problems == []
    assert sorted(result.kling_creates_per_clip().values()) == [1, 1]  # no clip bought again
    bought = Counter(
        str(c["item"]).rsplit(":", 1)[1]
        for c in result.calls
        if c["provider"] == "elevenlabs" and c["status"] == 200
    )
    assert bought == {"narration_s01": 1, "narration_s02": 2, "sfx_s01": 1, "sfx_s02": 1, "music_bed": 1}


async def _assemblies(database: str, sandbox: SandboxProcess, tmp_path: Path) -> int:
    result = await audit(database, sandbox, tmp_path / "ws")
    return sum(i.attempts for i in result.items if i.kind == "assembly")
