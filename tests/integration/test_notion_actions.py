"""Operator actions through Notion: gates, new passes, cancel, pause, trash, refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import update

from daemon.budget import dollars
from daemon.db.models import Task
from daemon.notion.body import read_storyboard_block, write_storyboard_block
from daemon.notion.props import option_name
from tests.support import fake_scripts
from tests.support.engine_kit import now
from tests.support.notion_kit import NotionKit
from tests.support.sandbox_proc import SandboxProcess


@pytest.fixture
async def kit(sandbox: SandboxProcess, db_url: str, tmp_path: Path) -> AsyncIterator[NotionKit]:
    k = NotionKit(sandbox, db_url, tmp_path)
    yield k
    await k.close()


async def _state(kit: NotionKit, page: str) -> str | None:
    task = await kit.task(page)
    return None if task is None else str(task.state)


async def _stopped_in_error(kit: NotionKit, page: str) -> bool:
    task = await kit.task(page)
    return (
        task is not None
        and task.state == "error"
        and not any(i.state == "running" for i in (await kit.items(task.id)).values())
    )


async def _gate_waiting(kit: NotionKit, page: str, gate: str) -> bool:
    task = await kit.task(page)
    return task is not None and (await kit.items(task.id))[gate].state == "ready"


async def test_review_gates_wait_for_the_operator_and_say_so(kit: NotionKit) -> None:
    await kit.start(gates={"storyboard": True, "assets": False, "final": True})
    page = kit.pages[0]
    await kit.set(page, Status="Queued")
    await kit.poll()

    async def at_storyboard() -> bool:
        return await _gate_waiting(kit, page, "storyboard_gate")

    await kit.work(at_storyboard)
    await kit.flush()
    assert (await kit.page(page))["Status"] == "Storyboard Review"
    assert any("set Status to Storyboard Approved" in c for c in await kit.comments(page))
    # Approving the wrong gate is refused with a comment, and the status is put back.
    await kit.set(page, Status="Approved")
    await kit.poll()
    await kit.flush()
    assert (await kit.page(page))["Status"] == "Storyboard Review"
    assert any(
        "Status Approved was not applied: there is nothing to approve for Final Review" in c
        for c in await kit.comments(page)
    )
    # An option the daemon does not know (typed into the Status list) is put back too, naming the
    # options; found by an operator trial, where such a page sat showing it, unanswered.
    await kit.set(page, Status="Final Approved")
    await kit.poll()
    await kit.flush()
    assert (await kit.page(page))["Status"] == "Storyboard Review"
    assert any(
        "Status Final Approved is not one the daemon knows" in c and "Storyboard Approved" in c
        for c in await kit.comments(page)
    )
    await kit.set(page, Status="Storyboard Approved")
    await kit.poll()

    async def at_final() -> bool:
        return await _gate_waiting(kit, page, "final_gate")

    await kit.work(at_final)
    await kit.flush()
    assert (await kit.page(page))["Status"] == "Final Review"
    await kit.set(page, Status="Approved")
    await kit.poll()
    await kit.flush()
    assert await _state(kit, page) == "done"
    assert (await kit.page(page))["Status"] == "Ready"
    comments = await kit.comments(page)
    assert sum("The storyboard is ready for review" in c for c in comments) == 1
    assert sum("The video is assembled" in c for c in comments) == 1
    # The gate shows what the assembly measured on the file.
    assembled = next(c for c in comments if "The video is assembled" in c)
    assert (
        "Measured on the file: 21.2 s, 1920x1080, loudness -14.1 LUFS, true peak -1.6 dBTP, 9 captions"
        in assembled
    )


async def test_queued_on_an_error_page_starts_a_new_pass_that_reuses_finished_items(kit: NotionKit) -> None:
    await kit.start()
    assert kit.scripts
    fake_scripts.set_behaviour(kit.scripts, {"clip_s02": ["1", "ok"]})
    page = kit.pages[0]
    await kit.set(page, Status="Queued")
    await kit.poll()

    await kit.work(lambda: _stopped_in_error(kit, page))
    await kit.flush()
    shown = await kit.page(page)
    assert shown["Status"] == "Error"
    assert "clip_s02: clip_s02: content blocked; reword the prompt" in shown["Error Log"]
    assert "set Status to Queued" in shown["Error Log"]
    first_runs = {r["item"] for r in fake_scripts.runs(kit.scripts) if r["outcome"] == "ok"}

    await kit.set(page, Status="Queued")
    await kit.poll()

    async def done() -> bool:
        return await _state(kit, page) == "done"

    await kit.work(done)
    second = [r["item"] for r in fake_scripts.runs(kit.scripts) if r["outcome"] == "started"][
        len(first_runs) + 1 :
    ]
    assert "clip_s02" in second
    assert not set(second) & first_runs  # nothing finished is made (or paid for) again
    assert (await kit.task(page)).pass_no == 2


@pytest.mark.slow
async def test_cancelled_kills_running_scripts_and_starts_nothing_more(kit: NotionKit) -> None:
    await kit.start()
    assert kit.scripts
    fake_scripts.set_behaviour(kit.scripts, {"generate_video.py": ["hang"]})
    page = kit.pages[0]
    await kit.set(page, Status="Queued")
    await kit.poll()

    async def clips_running() -> bool:
        return len([r for r in fake_scripts.runs(kit.scripts) if r["item"].startswith("clip_")]) >= 2

    await kit.work(clips_running)
    await kit.set(page, Status="Cancelled")
    await kit.poll()
    hung = [int(r["pid"]) for r in fake_scripts.runs(kit.scripts) if r["item"].startswith("clip_")]

    async def killed() -> bool:
        return not any(Path(f"/proc/{pid}").exists() for pid in hung)

    await kit.work(killed, timeout=15)
    task = await kit.task(page)
    assert task.state == "cancelled"
    assert {i.state for i in (await kit.items(task.id)).values()} <= {"succeeded", "cancelled"}
    started_after = [r for r in fake_scripts.runs(kit.scripts) if r["item"] == "assembly"]
    assert started_after == []
    await kit.flush()
    assert (await kit.page(page))["Status"] == "Cancelled"


@pytest.mark.slow
async def test_paused_lets_running_items_finish_and_starts_nothing_new(kit: NotionKit) -> None:
    await kit.start()
    assert kit.scripts
    fake_scripts.set_behaviour(kit.scripts, {"generate_video.py": ["sleep:3"]})
    page = kit.pages[0]
    await kit.set(page, Status="Queued")
    await kit.poll()

    async def clip_running() -> bool:
        return any(r["item"].startswith("clip_") for r in fake_scripts.runs(kit.scripts))

    await kit.work(clip_running)
    await kit.set(page, Status="Paused")
    await kit.poll()

    async def settled() -> bool:
        task = await kit.task(page)
        return not any(i.state == "running" for i in (await kit.items(task.id)).values())

    await kit.work(settled)
    task = await kit.task(page)
    items = await kit.items(task.id)
    assert task.state == "paused"
    assert any(i.state == "succeeded" for k, i in items.items() if k.startswith("clip_"))
    assert items["assembly"].state in ("blocked", "ready")
    assert not [r for r in fake_scripts.runs(kit.scripts) if r["item"] == "assembly"]
    await kit.flush()
    assert (await kit.page(page))["Status"] == "Paused"
    # Queued again resumes it.
    await kit.set(page, Status="Queued")
    await kit.poll()

    async def done() -> bool:
        return await _state(kit, page) == "done"

    await kit.work(done)


async def test_a_trashed_page_pauses_its_task(kit: NotionKit) -> None:
    await kit.start()
    assert kit.scripts and kit.operator
    fake_scripts.set_behaviour(kit.scripts, {"generate_video.py": ["sleep:5"]})
    page = kit.pages[0]
    await kit.set(page, Status="Queued")
    await kit.poll()
    await kit.operator.call("PATCH", f"pages/{page}", body={"in_trash": True})

    async def paused() -> bool:
        await kit.flush()
        return await _state(kit, page) == "paused"

    await kit.work(paused, timeout=30)
    assert "trashed or unshared" in (await kit.task(page)).error


async def test_two_edits_in_the_same_minute_are_both_seen(kit: NotionKit) -> None:
    await kit.start()
    assert kit.scripts
    fake_scripts.set_behaviour(kit.scripts, {"*": ["hang"]})
    page = kit.pages[0]
    await kit.set(page, Status="Queued")
    await kit.poll()
    assert await _state(kit, page) == "active"
    await kit.set(page, Status="Cancelled")  # same minute: last_edited_time does not move
    await kit.poll()
    assert await _state(kit, page) == "cancelled"


def _no_internal_marks(comments: list[str], page: str) -> None:
    for comment in comments:
        assert "nvd:" not in comment and page not in comment, comment


async def test_a_daemon_status_set_by_hand_is_put_back_at_the_next_poll_with_one_comment(
    kit: NotionKit,
) -> None:
    await kit.start(gates={"storyboard": True, "assets": False, "final": True})
    page = kit.pages[0]
    await kit.set(page, Status="Queued")
    await kit.poll()

    async def at_storyboard() -> bool:
        return await _gate_waiting(kit, page, "storyboard_gate")

    await kit.work(at_storyboard)
    await kit.flush()
    assert kit.operator
    edits = set()  # (status, last_edited_time): Notion's time is to the minute
    for hand in ("Generating Video", "Final Review", "Generating Video"):
        await kit.set(page, Status=hand)
        edits.add((hand, (await kit.operator.call("GET", f"pages/{page}"))["last_edited_time"]))
        assert await kit.poll() == 1
        await kit.flush()
        assert (await kit.page(page))["Status"] == "Storyboard Review"
        await kit.poll()  # seen again: nothing more to say
        await kit.flush()
    comments = await kit.comments(page)
    put_back = [c for c in comments if "it is back to Storyboard Review" in c]
    # One comment per edit as Notion tells edits apart: two Generating Video edits in the same
    # minute are one edit to Notion (a poll seeing it again must not comment again).
    assert len(put_back) == len(edits), (comments, edits)
    assert any(c.startswith("Status Generating Video is the daemon's to show") for c in put_back)
    assert any(c.startswith("Status Final Review is the daemon's to show") for c in put_back)
    assert all("set Storyboard Approved" in c for c in put_back)
    _no_internal_marks(comments, page)
    # The gate still holds: nothing behind it was started by the hand edits.
    task = await kit.task(page)
    assert task.state == "active"
    assert all(i.state == "blocked" for k, i in (await kit.items(task.id)).items() if k.startswith("clip"))


async def test_paused_on_an_error_page_is_refused_and_the_page_shows_error_again(kit: NotionKit) -> None:
    await kit.start()
    assert kit.scripts
    fake_scripts.set_behaviour(kit.scripts, {"clip_s01": ["1"]})
    page = kit.pages[0]
    await kit.set(page, Status="Queued")
    await kit.poll()

    await kit.work(lambda: _stopped_in_error(kit, page))
    await kit.flush()
    assert (await kit.page(page))["Status"] == "Error"
    await kit.set(page, Status="Paused")
    assert await kit.poll() == 1
    await kit.flush()
    assert (await kit.page(page))["Status"] == "Error"
    await kit.poll()
    await kit.flush()
    comments = await kit.comments(page)
    assert (
        sum("Status Paused was not applied: only a video in production can be paused" in c for c in comments)
        == 1
    )
    _no_internal_marks(comments, page)


async def test_a_page_back_from_the_trash_shows_its_paused_video_and_goes_on_when_queued(
    kit: NotionKit,
) -> None:
    await kit.start(channel={"scenes": 2})
    assert kit.scripts and kit.operator
    # One clip ends while the page is in the trash (a write to it fails: the daemon sees it gone);
    # the other holds the video unfinished until the test lets it go.
    fake_scripts.set_behaviour(kit.scripts, {"clip_s01": ["wait:first"], "clip_s02": ["wait:second"]})
    page = kit.pages[0]
    await kit.set(page, Status="Queued")
    await kit.poll()

    async def clips_running() -> bool:
        task = await kit.task(page)
        clips = [i for k, i in (await kit.items(task.id)).items() if k.startswith("clip")] if task else []
        return len(clips) == 2 and all(i.state == "running" for i in clips)

    await kit.work(clips_running)
    await kit.flush()
    assert (await kit.page(page))["Status"] == "Generating Video"
    await kit.operator.call("PATCH", f"pages/{page}", body={"in_trash": True})
    fake_scripts.release(kit.scripts, "first")

    async def paused() -> bool:
        await kit.flush()
        return await _state(kit, page) == "paused"

    await kit.work(paused, timeout=30)
    await kit.operator.call("PATCH", f"pages/{page}", body={"in_trash": False})
    fake_scripts.release(kit.scripts, "second")
    await kit.poll()
    await kit.flush()
    shown = await kit.page(page)
    assert shown["Status"] == "Paused"  # not the stale Generating Video it had when trashed
    comments = await kit.comments(page)
    assert sum("went to the trash" in c for c in comments) == 1
    _no_internal_marks(comments, page)
    await kit.set(page, Status="Queued")
    await kit.poll()

    async def done() -> bool:
        return await _state(kit, page) == "done"

    await kit.work(done)
    await kit.flush()
    assert (await kit.page(page))["Status"] == "Ready"


async def test_cost_on_the_page_counts_clips_bought_before_a_cancel_and_never_drops(kit: NotionKit) -> None:
    await kit.start(channel={"scenes": 2})
    assert kit.scripts and kit.operator and kit.app
    fake_scripts.set_behaviour(kit.scripts, {"generate_video.py": ["submit-sleep:60"]})
    page = kit.pages[0]
    await kit.set(page, Status="Queued")
    await kit.poll()

    async def clips_bought() -> bool:
        task = await kit.task(page)
        clips = [i for k, i in (await kit.items(task.id)).items() if k.startswith("clip")] if task else []
        return len(clips) == 2 and all(i.provider_job_id for i in clips)

    await kit.work(clips_bought)
    await kit.set(page, Status="Cancelled")
    await kit.poll()
    await kit.flush()
    task = await kit.task(page)
    items = await kit.items(task.id)
    paid = sum(i.cost_micros for i in items.values())
    bought = sum(i.estimate_micros for k, i in items.items() if k.startswith("clip"))
    assert bought > 0
    shown = await kit.page(page)
    assert shown["Status"] == "Cancelled"
    assert shown["Cost"] == float(dollars(paid + bought))
    assert "clips bought before the video stopped" in shown["Progress"]

    # Scene 1 edited, then Queued: its old clip is never collected (booked as spent), scene 2's is.
    block = await read_storyboard_block(kit.operator, page)
    assert block.text
    board = yaml.safe_load(block.text)
    board["scenes"][0]["motion"] = "Slow pan left instead"
    await write_storyboard_block(kit.operator, page, yaml.safe_dump(board, sort_keys=False))
    fake_scripts.set_behaviour(kit.scripts, {})
    await kit.set(page, Status="Queued")
    await kit.poll()
    await kit.flush()
    assert (await kit.page(page))["Cost"] >= shown["Cost"]  # the abandoned job still counts

    async def done() -> bool:
        return await _state(kit, page) == "done"

    await kit.work(done)
    await kit.flush()
    final = await kit.page(page)
    items = await kit.items(task.id)
    resumed = [
        r for r in fake_scripts.runs(kit.scripts) if r["item"] == "clip_s02" and r["outcome"] == "started"
    ]
    assert "--resume-job" in resumed[-1]["argv"]  # collected, not bought again
    # Everything paid: each item's actuals (the fake scripts report $0.01 a run) and scene 1's first
    # clip, bought, never collected, booked at its price.
    abandoned = items["clip_s01"].estimate_micros
    now_paid = sum(i.cost_micros for i in items.values())
    assert final["Cost"] == float(dollars(now_paid + abandoned))
    assert "bought before the video stopped" not in final["Progress"]


async def test_a_stale_look_at_the_page_never_makes_the_daemons_own_paused_an_operator_pause(
    kit: NotionKit,
) -> None:
    """A poll's snapshot older than the daemon's last Status write (Generating..., read just before
    the daemon wrote Paused for a budget wait) must not become intake's memory of the page: the next
    poll then took the daemon's own Paused for the operator's, and paused the video for good."""
    await kit.start(channel={"scenes": 2})
    assert kit.scripts and kit.app and kit.operator
    fake_scripts.set_behaviour(kit.scripts, {"*": ["hang"]})
    page = kit.pages[0]
    await kit.set(page, Status="Queued")
    await kit.poll()

    async def at_work() -> bool:
        task = await kit.task(page)
        return task is not None and any(i.state == "running" for i in (await kit.items(task.id)).values())

    await kit.work(at_work)
    await kit.flush()
    stale = await kit.operator.call("GET", f"pages/{page}")
    assert option_name(stale["properties"]["Status"]) == "Planning"
    task = await kit.task(page)
    async with kit.app.engine.begin() as conn:  # the budget is reached: the video waits
        await conn.execute(
            update(Task).where(Task.id == task.id).values(state="budget", error="Budget reached")
        )
    await kit.flush()
    assert (await kit.page(page))["Status"] == "Paused"
    jobs = kit.app.notion_jobs()
    assert jobs is not None
    source = jobs.intake.sources[0]
    await jobs.intake._handle(source, stale, now())  # a poll whose query ran before that write
    async with kit.app.engine.begin() as conn:  # the budget is raised: the video goes on
        await conn.execute(update(Task).where(Task.id == task.id).values(state="active", error=None))
    await kit.poll()  # the page still shows the daemon's Paused
    assert (await kit.task(page)).state == "active"
    assert not any("Paused was not applied" in c for c in await kit.comments(page))
