"""A page queued again after retention removed its video's intermediate files, through Notion with
the daemon's intake in-process and stand-in scripts that count their runs: unchanged, it is done at
once with nothing bought; when the new pass needs the removed files, the Status is put back with a
comment naming what would be bought and about what it would cost, and only the same Status set again
buys exactly that."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, update

from daemon.channels import Captions
from daemon.db.models import Outbox, PollCursor, Task
from daemon.notion.sync import sync_tasks
from daemon.retention import Policy, apply, scan
from tests.support.engine_kit import now
from tests.support.notion_kit import NotionKit
from tests.support.sandbox_proc import SandboxProcess

PAID_KINDS = {"asset", "clip", "narration", "sfx", "music"}


@pytest.fixture
async def kit(sandbox: SandboxProcess, db_url: str, tmp_path: Path) -> AsyncIterator[NotionKit]:
    k = NotionKit(sandbox, db_url, tmp_path)
    yield k
    await k.close()


def _runs(kit: NotionKit) -> dict[str, int]:
    assert kit.scripts
    return dict(json.loads((kit.scripts / "counts.json").read_text()))


async def _done(kit: NotionKit, page: str) -> bool:
    task = await kit.task(page)
    return task is not None and task.state == "done"


@pytest.mark.slow
async def test_a_requeue_after_retention_asks_before_buying_the_removed_files_again(kit: NotionKit) -> None:
    await kit.start(channel={"scenes": 2})
    assert kit.app
    page = kit.pages[0]
    await kit.set(page, Status="Queued")
    await kit.poll()
    await kit.work(lambda: _done(kit, page))
    await kit.flush()
    assert (await kit.page(page))["Status"] == "Ready"
    task = await kit.task(page)
    async with kit.app.engine.begin() as conn:
        await conn.execute(
            update(Task).where(Task.id == task.id).values(updated_at=now() - timedelta(days=31))
        )
    policy = Policy(30, kit.app.channels)
    await apply(
        kit.app.engine,
        kit.app.settings.workspace_dir,
        await scan(kit.app.engine, kit.app.settings.workspace_dir, policy, now()),
        now(),
    )
    runs = _runs(kit)

    # Unchanged: nothing needs the removed files; done at once, nothing bought.
    await kit.set(page, Status="Queued")
    await kit.poll()
    assert ((await kit.task(page)).state, (await kit.task(page)).pass_no) == ("done", 2)
    await kit.flush()
    assert (await kit.page(page))["Status"] == "Ready"
    assert _runs(kit) == runs

    # Other captions: a new cut, which needs them. Refused, the Status put back, one comment.
    channel = kit.app.channels[kit.channel]
    kit.app.channels[kit.channel] = channel.model_copy(update={"captions": Captions(size=0.06)})
    await kit.set(page, Status="Queued")
    await kit.poll()
    await kit.flush()
    assert (await kit.page(page))["Status"] == "Ready"
    task = await kit.task(page)
    assert (task.state, task.pass_no) == ("done", 2)
    [refusal] = [c for c in await kit.comments(page) if "removed by retention" in c]
    day = now().date().isoformat()
    assert refusal.startswith(
        f"Status Queued was not applied: the intermediate files of this video were removed by retention on "
        f"{day}, and this pass needs them again: it would buy again "
    )
    assert "video clips" in refusal and "narrations" in refusal and "(about $" in refusal
    assert refusal.endswith("Nothing was bought. Set Status to Queued again within 7 days to buy them.")
    assert task.rebuy_offer is not None and task.rebuy_offer["micros"] > 0
    assert _runs(kit) == runs

    # The same Status again confirms: exactly the removed paid files are bought once more.
    await kit.set(page, Status="Queued")
    await kit.poll()
    assert (await kit.task(page)).pass_no == 3
    await kit.work(lambda: _done(kit, page))
    items = await kit.items(task.id)
    again = {k: n - runs.get(k, 0) for k, n in _runs(kit).items() if n != runs.get(k, 0)}
    assert again == {k: 1 for k, i in items.items() if i.kind in PAID_KINDS | {"composite", "assembly"}}
    assert (await kit.task(page)).rebuy_offer is None
    await kit.flush()
    assert (await kit.page(page))["Status"] == "Ready"


async def _rewind_cursor(kit: NotionKit) -> None:
    """The polls made minutes ahead left intake's cursor there: the next poll reads every page."""
    assert kit.app
    async with kit.app.engine.begin() as conn:
        await conn.execute(delete(PollCursor))


async def test_a_refused_requeue_is_confirmed_only_by_a_queued_set_over_the_put_back(kit: NotionKit) -> None:
    """Regression: the refusal's put-back not on the page yet (Notion slow or down, a restart), the
    page still shows the refused Queued: a new leader's reconcile, or an edit of another property,
    once started the paid pass with no second Queued from the operator."""
    await kit.start(channel={"scenes": 1})
    assert kit.app
    page = kit.pages[0]
    await kit.set(page, Status="Queued")
    await kit.poll()
    await kit.work(lambda: _done(kit, page))
    await kit.flush()
    task = await kit.task(page)
    async with kit.app.engine.begin() as conn:
        await conn.execute(
            update(Task).where(Task.id == task.id).values(updated_at=now() - timedelta(days=31))
        )
    workspace = kit.app.settings.workspace_dir
    policy = Policy(30, kit.app.channels)
    await apply(kit.app.engine, workspace, await scan(kit.app.engine, workspace, policy, now()), now())
    channel = kit.app.channels[kit.channel]
    kit.app.channels[kit.channel] = channel.model_copy(update={"captions": Captions(size=0.06)})
    runs = _runs(kit)

    # Queued once: refused, and the put-back waits in the outbox (no flush).
    await kit.set(page, Status="Queued")
    await kit.poll()
    assert (await kit.task(page)).rebuy_offer is not None
    # A new leader (a fresh intake reconciles at its first poll) minutes later, the page still Queued.
    for minutes in (3, 6):
        jobs = kit.app.notion_jobs()
        assert jobs is not None
        await jobs.intake.poll(now() + timedelta(minutes=minutes))
    task = await kit.task(page)
    assert (task.state, task.pass_no) == ("done", 1)
    # The operator edits another property of the page, still showing Queued.
    await _rewind_cursor(kit)
    await kit.set(page, Priority="High")
    await kit.poll()
    task = await kit.task(page)
    assert (task.state, task.pass_no) == ("done", 1)
    assert task.rebuy_offer is not None
    assert _runs(kit) == runs

    # The put-back reaches the page; the operator sets Queued over it: that confirms.
    await kit.db_time_travel_comments()  # the last refusal was queued at the polls' future time
    await kit.flush()
    assert (await kit.page(page))["Status"] == "Ready"
    assert any("removed by retention" in c for c in await kit.comments(page))
    await kit.set(page, Status="Queued")
    await kit.poll()
    task = await kit.task(page)
    assert (task.state, task.pass_no, task.rebuy_offer) == ("active", 2, None)


def _media_captions(blocks: list[dict[str, Any]]) -> set[str]:
    return {
        "".join(r["plain_text"] for r in b[b["type"]]["caption"])
        for b in blocks
        if b["type"] in ("image", "video")
    }


async def test_retention_keeps_a_videos_files_until_its_page_shows_them(kit: NotionKit) -> None:
    """Regression: with RETENTION_DAYS=0 and Notion slow when a video finished, retention removed its
    clips and images before the board had uploaded them, and the page showed them missing for ever."""
    await kit.start(channel={"scenes": 1})
    assert kit.app
    page = kit.pages[0]
    await kit.set(page, Status="Queued")
    await kit.poll()
    await kit.work(lambda: _done(kit, page))
    workspace = kit.app.settings.workspace_dir
    project = workspace / f"channels/{kit.channel}/projects" / page.replace("-", "")
    policy = Policy(0, kit.app.channels)

    async def retention() -> None:
        assert kit.app
        await apply(kit.app.engine, workspace, await scan(kit.app.engine, workspace, policy, now()), now())

    # Done, and nothing written to the page yet (the sync has not run): everything stays.
    await retention()
    assert (project / "clips").is_dir() and (project / "assets").is_dir()
    # The board queued, its files not uploaded yet: still everything.
    await sync_tasks(kit.app.engine, workspace, now(), None)
    await retention()
    assert (project / "clips").is_dir() and (project / "assets").is_dir()

    # The page written, its files in Notion: now they go, and the page keeps showing them.
    await kit.flush()
    await retention()
    assert not (project / "clips").exists() and not (project / "assets").exists()
    await kit.flush()
    blocks = await kit.blocks(page)
    assert {"Scene 1 frame", "Scene 1 clip", "Final cut"} <= _media_captions(blocks)
    assert not any("not shown here" in str(b) for b in blocks)

    # A write of the page goes unanswered: at its recheck every value of ours is written again, the
    # board too, whose images and clip are gone from the workspace. The page keeps them, untouched.
    media = {b["id"] for b in blocks if b.get("type") in ("image", "video")}
    async with kit.app.engine.begin() as conn:
        await conn.execute(
            update(Outbox).where(Outbox.page_id == page).values(sent_version=Outbox.version - 1)
        )
    await kit.flush()
    blocks = await kit.blocks(page)
    assert not any("not shown here" in str(b) for b in blocks)
    assert {b["id"] for b in blocks if b.get("type") in ("image", "video")} == media

    # The operator deleted the clip's block meanwhile: with its file gone, a line says why it is not
    # shown, and the other blocks stay as they are.
    assert kit.operator
    [clip] = [b for b in blocks if b.get("type") == "video" and "Scene 1 clip" in str(b)]
    await kit.operator.call("DELETE", f"blocks/{clip['id']}")
    async with kit.app.engine.begin() as conn:
        await conn.execute(
            update(Outbox).where(Outbox.page_id == page).values(sent_version=Outbox.version - 1)
        )
    await kit.flush()
    blocks = await kit.blocks(page)
    assert "Scene 1 clip: not shown here (retention removed it from the workspace)" in str(blocks)
    assert {b["id"] for b in blocks if b.get("type") in ("image", "video")} == media - {clip["id"]}
