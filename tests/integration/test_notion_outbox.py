"""The outbox under Notion's faults: 429 storms, 409s, writes that land but answer an error, and
an operator's change racing the daemon's write."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from daemon.db.models import Comment, Outbox
from tests.support import fake_scripts
from tests.support.notion_kit import NotionKit
from tests.support.sandbox_proc import SandboxProcess


@pytest.fixture
async def kit(sandbox: SandboxProcess, db_url: str, tmp_path: Path) -> AsyncIterator[NotionKit]:
    k = NotionKit(sandbox, db_url, tmp_path)
    yield k
    await k.close()


async def _queued_and_planned(kit: NotionKit) -> str:
    assert kit.scripts
    fake_scripts.set_behaviour(kit.scripts, {"*": ["hang"], "generate_storyboard.py": ["ok"]})
    page = kit.pages[0]
    await kit.set(page, Status="Queued")
    await kit.poll()
    return page


@pytest.mark.slow
async def test_a_429_storm_is_waited_out_with_retry_after_and_every_write_lands(
    kit: NotionKit, sandbox: SandboxProcess
) -> None:
    await kit.start()
    page = await _queued_and_planned(kit)
    sandbox.fault(provider="notion", status=429, count=4, retry_after=1, endpoint="PATCH /notion/v1/pages")
    started = time.monotonic()
    await kit.flush()
    assert time.monotonic() - started >= 3.5  # four Retry-After: 1 answers, each waited out
    assert (await kit.page(page))["Status"] == "Planning"


async def test_conflicts_and_server_errors_are_retried_until_the_write_lands(
    kit: NotionKit, sandbox: SandboxProcess
) -> None:
    await kit.start()
    page = await _queued_and_planned(kit)
    sandbox.fault(provider="notion", status=409, count=2, endpoint="PATCH /notion/v1/pages")
    sandbox.fault(provider="notion", status=503, count=2, endpoint="GET /notion/v1/pages")
    await kit.flush()
    shown = await kit.page(page)
    assert shown["Status"] == "Planning"
    assert shown["Progress"] != ""


async def test_a_property_write_that_lands_but_answers_500_is_repeated_harmlessly(
    kit: NotionKit, sandbox: SandboxProcess
) -> None:
    await kit.start()
    page = await _queued_and_planned(kit)
    sandbox.fault(
        provider="notion", kind="apply_then_fail", status=500, count=1, endpoint="PATCH /notion/v1/pages"
    )
    await kit.flush()
    await kit.flush()
    assert (await kit.page(page))["Status"] == "Planning"


async def test_a_comment_that_lands_but_loses_its_answer_is_written_once(
    kit: NotionKit, sandbox: SandboxProcess
) -> None:
    await kit.start(gates={"storyboard": True, "assets": False, "final": False})
    assert kit.scripts
    page = kit.pages[0]
    await kit.set(page, Status="Queued")
    await kit.poll()

    async def at_review() -> bool:
        task = await kit.task(page)
        return task is not None and (await kit.items(task.id))["storyboard_gate"].state == "ready"

    await kit.work(at_review)
    sandbox.fault(
        provider="notion", kind="apply_then_fail", drop=True, count=1, endpoint="POST /notion/v1/comments"
    )
    await kit.flush()  # the comment lands, the answer is lost
    assert kit.app
    async with kit.app.engine.connect() as conn:
        pending = (await conn.execute(select(Comment.state, Comment.attempts))).all()
    assert [tuple(p) for p in pending] == [("pending", 1)]
    await kit.db_time_travel_comments()
    await kit.flush()
    reviews = [c for c in await kit.comments(page) if "ready for review" in c]
    assert len(reviews) == 1


@pytest.mark.slow
async def test_an_operators_cancel_racing_a_daemon_write_wins(kit: NotionKit) -> None:
    await kit.start()
    page = await _queued_and_planned(kit)
    await kit.flush()
    assert (await kit.page(page))["Status"] == "Planning"

    async def clips_started() -> bool:
        assert kit.scripts
        return any(r["item"].startswith("narration_") for r in fake_scripts.runs(kit.scripts))

    await kit.work(clips_started)
    # The daemon has "Generating Video" to write; the operator cancels first.
    await kit.set(page, Status="Cancelled")
    await kit.flush()
    assert (await kit.page(page))["Status"] == "Cancelled"
    await kit.poll()
    assert (await kit.task(page)).state == "cancelled"
    await kit.flush()
    assert (await kit.page(page))["Status"] == "Cancelled"


async def test_notions_error_quoting_the_token_is_kept_without_it(kit: NotionKit) -> None:
    """Regression: a rejected write's error text, Notion's own words, went into the outbox's last
    error (the DB) and the log as it was, so a message quoting the token stored the token."""
    await kit.start()
    page = kit.pages[0]
    assert kit.app and kit.app.notion
    token = kit.app.notion.token
    await kit.set(page, Status="Queued")
    await kit.poll()
    kit.sandbox.fault(
        provider="notion",
        status=400,
        code="validation_error",
        endpoint="^PATCH /notion/v1/pages/",
        message=f"body failed validation for the integration {token}",
        count=1,
    )
    await kit.flush()
    async with kit.app.engine.connect() as conn:
        errors = [e for e in await conn.scalars(select(Outbox.last_error).where(Outbox.page_id == page)) if e]
    assert errors and all("body failed validation for the integration [redacted]" in e for e in errors)
    assert not any(token in e for e in errors)


async def test_status_is_written_as_each_data_source_types_it(kit: NotionKit) -> None:
    """Regression: the first data source's Status type was used for every page, so a page in a data
    source whose Status is a status property (not a select) was never written."""
    await kit.start(more={"kanban": ["--status-type", "status"]})
    assert kit.operator and kit.scripts
    fake_scripts.set_behaviour(kit.scripts, {"*": ["hang"], "generate_storyboard.py": ["ok"]})
    select_page, status_page = kit.pages[0], kit.more["kanban"]["page_ids"][0]
    await kit.set(select_page, Status="Queued")
    await kit.operator.call(
        "PATCH", f"pages/{status_page}", body={"properties": {"Status": {"status": {"name": "Queued"}}}}
    )
    assert await kit.poll() == 2
    await kit.flush()
    for page in (select_page, status_page):
        shown = await kit.page(page)
        assert shown["Status"] == "Planning", (page, shown)
    assert kit.app
    async with kit.app.engine.connect() as conn:
        errors = [r for r in await conn.scalars(select(Outbox.last_error)) if r]
    assert errors == []
