"""A Notion outage (ten minutes, scaled to ten seconds): the daemon keeps working, every write lands
afterwards with the newest value, no comment is written twice, and what the operator changed
during the outage wins."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from daemon.notion.gateway import NotionError
from services.paths import project_slug
from tests.support import fake_scripts
from tests.support.notion_kit import NotionKit
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import credentials

pytestmark = pytest.mark.slow  # waits out a Notion outage


@pytest.fixture
async def kit(sandbox: SandboxProcess, db_url: str, tmp_path: Path) -> AsyncIterator[NotionKit]:
    k = NotionKit(sandbox, db_url, tmp_path)
    yield k
    await k.close()


async def test_an_outage_delays_writes_but_loses_none_and_the_operator_wins(
    kit: NotionKit, sandbox: SandboxProcess
) -> None:
    await kit.start(projects=2)
    assert kit.scripts
    cancelled, finished = kit.pages
    # The page cancelled during the outage cannot finish before the cancel is seen: its clip hangs.
    behaviour = {f"{project_slug(cancelled)}:clip_s01": ["hang"], "generate_video.py": ["sleep:4"]}
    fake_scripts.set_behaviour(kit.scripts, behaviour)
    await kit.set(cancelled, Status="Queued")
    await kit.set(finished, Status="Queued")
    await kit.poll()
    await kit.flush()
    # Ten minutes without Notion for the daemon (the operator's own edits still reach Notion).
    token = credentials(sandbox)["notion_token"]
    sandbox.fault(provider="notion", kind="outage", status=503, seconds=600, scaled=True, token=token)
    outage_ends = time.monotonic() + 10

    async def done() -> bool:
        task = await kit.task(finished)
        return task is not None and task.state == "done"

    work = asyncio.create_task(kit.work(done, timeout=90))
    await kit.set(cancelled, Status="Cancelled")
    while time.monotonic() < outage_ends:
        with contextlib.suppress(NotionError):
            await kit.poll()
        await kit.flush()  # fails inside: the writes wait in the outbox
        await asyncio.sleep(1)
    await work  # the daemon kept making the video through the outage
    await kit.db_time_travel_comments()  # deferred writes are due now rather than after their backoff
    await kit.flush()
    await kit.poll()  # the operator's Cancelled, made during the outage
    await kit.flush()
    assert (await kit.task(cancelled)).state == "cancelled"
    shown = await kit.page(cancelled)
    assert shown["Status"] == "Cancelled"
    final = await kit.page(finished)
    assert final["Status"] == "Ready"
    assert "final cut 1/1" in final["Progress"]
    assert final["Output"].endswith(".mp4")
    ready = [c for c in await kit.comments(finished) if "The video is ready" in c]
    assert len(ready) == 1
