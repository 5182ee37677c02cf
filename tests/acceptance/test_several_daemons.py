"""Three daemons on one PostgreSQL database: no item worked on by two at once, provider limits held,
one leader at a time for Notion, and a new leader within 30 s when the leader is killed."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from daemon.notion.gateway import NotionApi
from daemon.notion.props import option_name
from tests.support.chaos import audit
from tests.support.daemon_proc import DaemonProcess
from tests.support.db import ON_POSTGRES
from tests.support.notion_kit import seed
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import credentials, daemon_env, small_cut_scripts


def _overlaps(calls: list[dict[str, Any]]) -> list[str]:
    """Calls for the same item from two different daemons whose times overlap."""
    by_item: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for call in calls:
        by_item[str(call["item"])].append(call)
    found = []
    for item, item_calls in by_item.items():
        for i, one in enumerate(item_calls):
            for other in item_calls[i + 1 :]:
                same_time = one["started"] < (other["finished"] or 1e18) and other["started"] < (
                    one["finished"] or 1e18
                )
                if one["client"] != other["client"] and same_time:
                    found.append(f"{item}: {one['client']} and {other['client']}")
    return found


@ON_POSTGRES
async def test_three_daemons_share_the_work_safely_and_a_killed_leader_is_replaced(
    database: str, fresh_sandbox: SandboxProcess, tmp_path: Path
) -> None:
    fresh_sandbox.configure(cheap_media=True, kling_seconds=300)
    seeded = seed(fresh_sandbox, "nature", 3, "--scenes", "2")
    channels = tmp_path / "channels"
    channels.mkdir()
    config = yaml.safe_load(Path(seeded["channel_file"]).read_text())
    config["gates"] = {"storyboard": False, "assets": False, "final": False}
    (channels / "nature.yaml").write_text(yaml.safe_dump(config))
    limits = "max_concurrent: {gemini: 2, kling: 2, elevenlabs: 2, local: 2}\n"
    (tmp_path / "providers.yaml").write_text(limits)
    env = {
        **daemon_env(
            fresh_sandbox, tmp_path / "ws", channels, database, scripts_dir=small_cut_scripts(tmp_path)
        ),
        "NOTION_POLL_S": "1",
        "CLAIM_POLL_S": "0.2",
        "IDLE_POLL_MAX_S": "0.5",
        "LEASE_TTL_S": "6",
        # Two scripts at most per daemon, against 8 shared provider slots: no single daemon can carry
        # the whole load, so the daemons really compete for the same items.
        "MAX_RUNNING": "2",
        "PROVIDERS_FILE": str(tmp_path / "providers.yaml"),
    }
    operator = NotionApi(credentials(fresh_sandbox)["notion_operator_token"], fresh_sandbox.base("notion"))
    daemons = [DaemonProcess(env, tmp_path / f"d{i}.log", f"daemon-{i}").start() for i in range(3)]
    try:
        for page in seeded["page_ids"]:
            await operator.call(
                "PATCH", f"pages/{page}", body={"properties": {"Status": {"select": {"name": "Queued"}}}}
            )
        leader = await _leader(daemons, 30)
        await _wait_for_clips(fresh_sandbox, 2)
        daemons[leader].signal(signal.SIGKILL)
        killed_at = time.monotonic()
        killed_wall = time.time()
        survivors = [d for i, d in enumerate(daemons) if i != leader]
        new_leader = await _leader(survivors, 30)
        assert time.monotonic() - killed_at <= 30
        assert survivors[new_leader] is not daemons[leader]

        async def all_ready() -> bool:
            for page in seeded["page_ids"]:
                got = await operator.call("GET", f"pages/{page}")
                if option_name(got["properties"]["Status"]) != "Ready":
                    return False
            return True

        deadline = time.monotonic() + 300
        while not await all_ready():
            assert time.monotonic() < deadline, "the projects did not all reach Ready"
            await asyncio.sleep(1)
    finally:
        await operator.close()
        # From here the survivors stop one after another, and a stopping leader hands over at once:
        # takes after this moment are the shutdown's, not the failover's.
        stopping = datetime.now(UTC)
        running = [d for d in daemons if d.proc and d.proc.poll() is None]
        for d in running:
            d.signal(signal.SIGTERM)
        for d in running:
            d.wait(timeout=30)
    calls = [c for c in fresh_sandbox.calls() if c["item"]]
    assert _overlaps(calls) == []
    workers = {c["client"] for c in calls}
    assert len(workers) >= 2, f"only {workers} worked; the daemons did not share the work"
    survivors_names = {f"daemon-{i}" for i in range(3)} - {f"daemon-{leader}"}
    # A request sent just before the kill may be logged a moment after it: 2 s of grace.
    after_kill = {c["client"] for c in calls if c["started"] > killed_wall + 2}
    assert after_kill and after_kill <= survivors_names, "the survivors did not carry the work on"
    stats = fresh_sandbox.stats()
    assert stats["kling"]["max_task_concurrency"] <= 2
    assert stats["elevenlabs"]["max_concurrency"] <= 2
    assert stats["gemini"]["max_concurrency"] <= 2
    result = await audit(database, fresh_sandbox, tmp_path / "ws")
    assert result.problems == []
    assert all(n == 1 for n in result.kling_creates_per_clip().values())
    takes = [
        e["daemon"]
        for d in daemons
        for e in d.events()
        if e.get("event") == "leadership_taken" and datetime.fromisoformat(e["timestamp"]) < stopping
    ]
    assert len(takes) == 2, takes  # the first leader, then exactly one successor


async def _leader(daemons: list[DaemonProcess], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leaders = [
            i for i, d in enumerate(daemons) if any(e.get("event") == "leadership_taken" for e in d.events())
        ]
        if leaders:
            assert len(leaders) == 1, "two daemons lead at once"
            return leaders[0]
        await asyncio.sleep(0.3)
    raise AssertionError("no daemon took the lead")


async def _wait_for_clips(sandbox: SandboxProcess, n: int) -> None:
    deadline = time.monotonic() + 120
    while len(sandbox.calls("kling")) < n:
        assert time.monotonic() < deadline, "no clips were submitted"
        await asyncio.sleep(0.3)
