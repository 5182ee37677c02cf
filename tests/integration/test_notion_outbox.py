"""The outbox under Notion's faults: 429 storms, 409s, writes that land but answer an error, and
an operator's change racing the daemon's write."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from daemon.db.models import Comment, Outbox
from daemon.notion.outbox import add_comment
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


def _daemon_token(kit: NotionKit) -> str:
    assert kit.app and kit.app.notion
    return kit.app.notion.token


def _slow(kit: NotionKit, sandbox: SandboxProcess, endpoint: str, ms: int) -> None:
    """The daemon's next call to `endpoint` takes `ms` (Notion applies it at the end)."""
    sandbox.fault(
        provider="notion", kind="latency", latency_ms=ms, count=1, endpoint=endpoint, token=_daemon_token(kit)
    )


async def _in_flight(kit: NotionKit) -> None:
    """Waits until the daemon's delayed call is out (the sandbox took its one-shot fault)."""
    deadline = time.monotonic() + 10
    while kit.sandbox.get("/_sandbox/faults")["faults"]:
        assert time.monotonic() < deadline, "the daemon never made the delayed call"
        await asyncio.sleep(0.05)


REVIEW_GATE = {"storyboard": True, "assets": False, "final": False}


async def _queued(kit: NotionKit) -> str:
    """A page queued and taken; with REVIEW_GATE, its storyboard is all that runs."""
    page = kit.pages[0]
    await kit.set(page, Status="Queued")
    await kit.poll()
    return page


async def _storyboard_done(kit: NotionKit, page: str) -> None:
    async def done() -> bool:
        task = await kit.task(page)
        return task is not None and (await kit.items(task.id))["storyboard_gate"].state == "ready"

    await kit.work(done)


@pytest.mark.slow
async def test_an_operators_cancel_crossing_a_status_write_in_flight_is_put_back_at_once(
    kit: NotionKit, sandbox: SandboxProcess
) -> None:
    """Finding 2 of the reliability issue: the daemon read the page, the operator set Cancelled, and
    the daemon's Status write (slow to land) replaced it. Intake took the Cancelled meanwhile, so the
    video stops; the page must say Cancelled again without waiting for anyone, and say what happened."""
    await kit.start(gates=REVIEW_GATE)
    page = await _queued(kit)
    await kit.flush()
    await _storyboard_done(kit, page)  # the daemon now has "Storyboard Review" to write
    _slow(kit, sandbox, "^PATCH /notion/v1/pages/", 2500)
    flushing = asyncio.create_task(kit.flush())
    await _in_flight(kit)
    await kit.set(page, Status="Cancelled")
    await kit.poll()
    assert (await kit.task(page)).state == "cancelled"
    await flushing
    assert (await kit.page(page))["Status"] == "Storyboard Review"  # ours landed after theirs
    await kit.flush()
    assert (await kit.page(page))["Status"] == "Cancelled"
    await kit.poll()  # the page as the daemon left it is not taken for a hand edit
    await kit.flush()
    assert (await kit.page(page))["Status"] == "Cancelled"
    comments = await kit.comments(page)
    assert [c for c in comments if "while the daemon was updating this page" in c] == [
        "Status Cancelled was set while the daemon was updating this page to Storyboard Review, and for "
        "a moment the page showed Storyboard Review. Cancelled has been applied and is back on the page."
    ]
    assert not [c for c in comments if "the daemon's to show" in c]


async def test_an_operators_cancel_during_the_storyboard_block_write_is_not_overwritten(
    kit: NotionKit, sandbox: SandboxProcess
) -> None:
    """Found in an operator trial: the page's Status was read, then the Storyboard block written (a
    slow call), then the Status PATCHed: a Cancelled set during the block write was overwritten with
    Storyboard Review before any poll saw it, and the video was made. The Status is read last."""
    await kit.start(gates=REVIEW_GATE)
    page = await _queued(kit)
    await kit.flush()
    await _storyboard_done(kit, page)  # "Storyboard Review" and the Storyboard block to write
    _slow(kit, sandbox, "^PATCH /notion/v1/blocks/", 1500)
    flushing = asyncio.create_task(kit.flush())
    await _in_flight(kit)
    await kit.set(page, Status="Cancelled")
    await flushing
    assert (await kit.page(page))["Status"] == "Cancelled"
    await kit.poll()
    assert (await kit.task(page)).state == "cancelled"


@pytest.mark.slow
async def test_a_write_notion_applies_after_the_timeout_cannot_leave_the_page_older(
    kit: NotionKit, sandbox: SandboxProcess
) -> None:
    """Finding 3: a PATCH unanswered within the client's timeout landed later, over the newer values
    written since, and the page stayed behind the DB for good. And no newer Status (nor the review
    comment asking the operator to act on it) shows before that write can no longer land: an operator
    acting on it would have their edit overwritten by the late write (found by the outage chaos run)."""
    # Notion applies the late write 5 s after it came; the daemon writes the page again 8 s after
    # its 1 s timeout. The room between them holds a loaded machine's delays (CI's).
    await kit.start(gates=REVIEW_GATE, notion_timeout_s=1.0, notion_late_write_s=8.0)
    page = await _queued(kit)
    _slow(kit, sandbox, "^PATCH /notion/v1/pages/", 5000)
    started = time.monotonic()
    await kit.flush()  # "Planning" goes out and times out; Notion applies it at 5 s
    await _storyboard_done(kit, page)
    await kit.flush()  # the newer values but Status land at once
    assert time.monotonic() - started < 4.5, "too slow to test the late write"
    early = await kit.page(page)
    assert early["Status"] == "Queued"  # "Planning" is still out; the newer one waits for it
    assert not [c for c in await kit.comments(page) if "ready for review" in c]
    late = await kit.page(page)
    while late["Status"] != "Planning":  # the late write puts the older values back
        assert time.monotonic() < started + 8, f"Notion never applied the late write: {late['Status']}"
        await asyncio.sleep(0.1)
        late = await kit.page(page)
    await kit.poll()  # not taken for a hand edit of the operator's
    while time.monotonic() < started + 10.5:  # past the daemon's write again (1 + 8 s)
        await kit.flush()
        await asyncio.sleep(0.3)
    shown = await kit.page(page)
    assert shown["Status"] == "Storyboard Review"
    assert shown["Progress"] != late["Progress"]
    comments = await kit.comments(page)
    assert not [c for c in comments if "the daemon's to show" in c]
    assert len([c for c in comments if "ready for review" in c]) == 1


@pytest.mark.slow
async def test_a_ready_page_queued_again_while_ready_was_unanswered_is_taken(
    kit: NotionKit, sandbox: SandboxProcess
) -> None:
    """Found by the outage chaos run: the daemon's Ready went unanswered and Notion applied it late;
    the operator, seeing Ready, queued the video again at once. Intake knew the page only as the
    Queued it had taken at the start, so this Queued looked old and was never taken, and the recheck
    of the unanswered write put Ready back over it: the operator's edit was lost."""
    await kit.start(notion_timeout_s=1.0, notion_late_write_s=6.0)
    page = await _queued(kit)

    async def finished() -> bool:
        task = await kit.task(page)
        return task is not None and task.state == "done"

    await kit.work(finished)
    _slow(kit, sandbox, "^PATCH /notion/v1/pages/", 2000)
    started = time.monotonic()
    await kit.flush()  # Ready goes out, unanswered; Notion applies it 2 s after it came
    while (await kit.page(page))["Status"] != "Ready":  # (the recheck is 6 s after the timeout)
        assert time.monotonic() < started + 5, "Notion never applied the late Ready"
        await asyncio.sleep(0.1)
    await kit.poll()
    await kit.set(page, Status="Queued")  # the operator queues it again on seeing Ready
    while time.monotonic() < started + 9:  # past the recheck
        await kit.poll()
        await kit.flush()
        await asyncio.sleep(0.3)
    task = await kit.task(page)
    assert task.pass_no == 2, "the operator's Queued was never taken"
    await kit.work(finished)
    await kit.poll()
    await kit.flush()
    assert (await kit.page(page))["Status"] == "Ready"


@pytest.mark.slow
async def test_a_comment_unanswered_late_in_a_slow_flush_is_not_posted_again(
    kit: NotionKit, sandbox: SandboxProcess
) -> None:
    """Found by the outage chaos run: the recheck of an unanswered comment was counted from the start
    of its flush, seconds before the POST went out, so it came before Notion applied the POST late,
    found no comment, and posted it again."""
    await kit.start(gates=REVIEW_GATE, notion_timeout_s=2.5, notion_late_write_s=4.0)
    page = await _queued(kit)
    await _storyboard_done(kit, page)
    _slow(kit, sandbox, "^PATCH /notion/v1/pages/", 2000)
    _slow(kit, sandbox, "^POST /notion/v1/comments", 4500)
    started = time.monotonic()
    while time.monotonic() < started + 11:  # the status write is slow; the comment lands 9 s in
        await kit.flush()
        await asyncio.sleep(0.3)
    assert len([c for c in await kit.comments(page) if "ready for review" in c]) == 1


async def test_two_comments_of_one_text_in_one_minute_are_both_posted(
    kit: NotionKit, sandbox: SandboxProcess
) -> None:
    """Found by the outage chaos run: two passes of a video finished in one minute, each with its
    "The video is ready" comment; the second's POST went unanswered, and its retry took the first's
    comment (same text, same minute: Notion gives comment times to the minute) for its own earlier
    try, so it was booked as sent and never posted."""
    await kit.start(notion_late_write_s=1.0)
    page = kit.pages[0]
    body = "The video is ready: file:///videos/one.mp4"
    assert kit.app
    queued = datetime.now(UTC)
    async with kit.app.engine.begin() as conn:
        await add_comment(conn, page, f"{page}:ready:1", body, queued)
    await kit.flush()
    async with kit.app.engine.begin() as conn:
        await add_comment(conn, page, f"{page}:ready:2", body, queued)
    sandbox.fault(provider="notion", status=503, count=1, endpoint="^POST /notion/v1/comments")
    await kit.flush()  # a 503 to a POST: it may have been applied, so it is looked for first
    await asyncio.sleep(1.2)
    await kit.flush()
    assert (await kit.comments(page)).count(body) == 2
    async with kit.app.engine.connect() as conn:
        ids = list(await conn.scalars(select(Comment.notion_id)))
    assert len(set(ids)) == 2 and None not in ids


async def test_an_idle_daemon_writes_what_waited_as_soon_as_it_falls_due(
    kit: NotionKit, sandbox: SandboxProcess
) -> None:
    """Found by the outage chaos run: with no video at work the outbox ran only at its full sync
    (every 30 s), so a comment held for a recheck waited up to 30 s longer than it had to."""
    await kit.start(notion_late_write_s=1.0)
    page = kit.pages[0]
    jobs = kit.app.notion_jobs() if kit.app else None
    assert jobs is not None
    jobs.token, jobs.valid_until = "lease", datetime.now(UTC) + timedelta(hours=1)  # as the leader
    await kit.set(page, Status="Assets Approved")  # refused: there is no video to approve
    await kit.poll()
    sandbox.fault(provider="notion", status=503, count=1, endpoint="^POST /notion/v1/comments")
    await jobs.outbox()  # its full sync: the refusal goes out and is not answered
    assert not [c for c in await kit.comments(page) if "was not applied" in c]
    await asyncio.sleep(1.5)
    await jobs.outbox()  # no video at work, no full sync due: the recheck is
    assert len([c for c in await kit.comments(page) if "was not applied" in c]) == 1


@pytest.mark.slow
async def test_a_comment_notion_posts_after_the_timeout_is_not_posted_again(
    kit: NotionKit, sandbox: SandboxProcess
) -> None:
    """Finding 3: a comment POST unanswered within the timeout was tried again before Notion applied
    the first one late, and the page got the comment twice."""
    await kit.start(notion_timeout_s=1.0, notion_late_write_s=5.0)
    page = kit.pages[0]
    _slow(kit, sandbox, "^POST /notion/v1/comments", 4000)
    await kit.set(page, Status="Assets Approved")  # refused: there is no video to approve
    await kit.poll()
    started = time.monotonic()
    while time.monotonic() < started + 7:
        await kit.flush()
        await asyncio.sleep(0.3)
    refusals = [c for c in await kit.comments(page) if "was not applied" in c]
    assert len(refusals) == 1
    assert kit.app
    async with kit.app.engine.connect() as conn:
        assert (await conn.scalar(select(Comment.state))) == "sent"


async def test_intake_polls_on_while_a_slow_flush_holds_the_outbox(kit: NotionKit) -> None:
    """Regression (found in an operator trial): each poll that acted then waited for the outbox's
    lock, so while Notion took 3 s per write no poll ran for the whole flush, and an operator's
    Cancelled set meanwhile was overwritten by the daemon's write in flight before any poll saw it."""
    await kit.start()
    assert kit.app
    jobs = kit.app.notion_jobs()
    assert jobs is not None
    jobs.token, jobs.valid_until = "lease", datetime.now(UTC) + timedelta(minutes=1)
    page = kit.pages[0]
    await kit.set(page, Status="Queued")
    async with jobs.outbox_lock:  # a flush is out, slow
        await asyncio.wait_for(jobs.poll(), timeout=10)
        assert (await kit.task(page)) is not None  # the poll acted without waiting for the flush
    assert jobs.intake_acted  # and the outbox's next run writes what it changed
