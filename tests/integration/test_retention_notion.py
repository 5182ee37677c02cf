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

import pytest
from sqlalchemy import update

from daemon.channels import Captions
from daemon.db.models import Task
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
