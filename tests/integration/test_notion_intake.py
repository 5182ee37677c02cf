"""Intake and write-back against the sandbox's Notion, on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from daemon.notion.body import block_text, write_storyboard_block
from daemon.notion.intake import Intake
from tests.support.engine_kit import now
from tests.support.notion_kit import NotionKit
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import credentials

STORYBOARD_YAML = """title: Heron
atmosphere: Misty river delta at dawn
assets:
  - {key: shallows, kind: environment, prompt: "Reed-lined shallows"}
scenes:
  - key: s01
    frame: {environment: shallows}
    motion: Slow push in
    narration: At first light the delta belongs to the patient.
    sfx: Dawn river ambience
"""


@pytest.fixture
async def kit(sandbox: SandboxProcess, db_url: str, tmp_path: Path) -> AsyncIterator[NotionKit]:
    k = NotionKit(sandbox, db_url, tmp_path)
    yield k
    await k.close()


async def _done(kit: NotionKit, page: str) -> bool:
    task = await kit.task(page)
    return task is not None and task.state in ("done", "error")


async def test_a_queued_page_becomes_one_task_and_ends_ready_on_the_page(kit: NotionKit) -> None:
    await kit.start(projects=2)
    page, draft = kit.pages
    await kit.set(page, Status="Queued")
    assert await kit.poll() == 1
    assert await kit.poll() == 0  # seen: a page Queued and polled twice makes one task
    assert len(await kit.tasks()) == 1
    await kit.flush()
    assert (await kit.page(page))["Status"] in ("Planning", "Generating Video", "Generating Assets")
    assert (await kit.page(draft))["Status"] == "Draft"

    async def done() -> bool:
        return await _done(kit, page)

    await kit.work(done)
    await kit.flush()
    shown = await kit.page(page)
    assert shown["Status"] == "Ready"
    assert shown["Progress"].startswith("Images ")
    assert "video clips 4/4" in shown["Progress"]
    assert shown["Cost"] > 0
    assert shown["Output"].startswith("file://")
    assert shown["Output"].endswith(".mp4")
    assert shown["Error Log"] == ""
    assert shown["Updated"] is not None
    # The daemon's own writes trigger nothing.
    assert await kit.poll() == 0
    comments = await kit.comments(page)
    assert sum("The video is ready" in c for c in comments) == 1


async def test_a_generated_storyboard_is_written_into_the_page_once_and_replaced_in_place(
    kit: NotionKit,
) -> None:
    await kit.start()
    page = kit.pages[0]
    await kit.set(page, Status="Queued")
    await kit.poll()

    async def planned() -> bool:
        task = await kit.task(page)
        return task is not None and task.storyboard is not None

    await kit.work(planned)
    await kit.flush()
    await kit.flush()
    blocks = await kit.blocks(page)
    kinds = [b["type"] for b in blocks]
    assert kinds.count("code") == 1
    headings = [block_text(b) for b in blocks if b["type"] == "heading_2"]
    assert headings.count("Storyboard") == 1  # (the scene board's sections follow it)
    code = next(b for b in blocks if b["type"] == "code")
    assert code["code"]["language"] == "yaml"
    assert "scenes:" in "".join(p["plain_text"] for p in code["code"]["rich_text"])


async def test_the_pages_own_storyboard_is_used_instead_of_generating_one(kit: NotionKit) -> None:
    await kit.start()
    page = kit.pages[0]
    assert kit.operator
    await kit.operator.call(
        "PATCH",
        f"blocks/{page}/children",
        body={
            "children": [
                {
                    "type": "heading_2",
                    "heading_2": {"rich_text": [{"type": "text", "text": {"content": "Storyboard"}}]},
                },
                {
                    "type": "code",
                    "code": {
                        "language": "yaml",
                        "rich_text": [{"type": "text", "text": {"content": STORYBOARD_YAML}}],
                    },
                },
            ]
        },
    )
    await kit.set(page, Status="Queued")
    await kit.poll()
    task = await kit.task(page)
    items = await kit.items(task.id)
    assert items["storyboard"].state == "succeeded"
    assert set(items) >= {"asset_shallows", "clip_s01", "narration_s01", "sfx_s01", "assembly"}
    assert task.storyboard["title"] == "Heron"


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        ({"Topic": ""}, "Topic is empty: write what the video is about in Topic"),
        ({"Channel": "Nope"}, "Channel 'Nope' is not a channel of this daemon"),
    ],
)
async def test_a_bad_page_gets_error_and_says_what_to_fix_and_the_daemon_goes_on(
    kit: NotionKit, edit: dict[str, str], problem: str
) -> None:
    await kit.start(projects=2)
    bad, good = kit.pages
    await kit.set(bad, Status="Queued", **edit)
    await kit.set(good, Status="Queued")
    assert await kit.poll() == 2
    await kit.flush()
    shown = await kit.page(bad)
    assert shown["Status"] == "Error"
    assert problem in shown["Error Log"]
    assert any(problem in c for c in await kit.comments(bad))
    assert await kit.task(bad) is None
    assert await kit.task(good) is not None


async def test_an_invalid_storyboard_block_names_the_field(kit: NotionKit) -> None:
    await kit.start()
    page = kit.pages[0]
    assert kit.operator
    broken = STORYBOARD_YAML.replace("environment: shallows}", "environment: shalows}")
    await kit.operator.call(
        "PATCH",
        f"blocks/{page}/children",
        body={
            "children": [
                {
                    "type": "heading_2",
                    "heading_2": {"rich_text": [{"type": "text", "text": {"content": "Storyboard"}}]},
                },
                {
                    "type": "code",
                    "code": {
                        "language": "yaml",
                        "rich_text": [{"type": "text", "text": {"content": broken}}],
                    },
                },
            ]
        },
    )
    await kit.set(page, Status="Queued")
    await kit.poll()
    await kit.flush()
    shown = await kit.page(page)
    assert shown["Status"] == "Error"
    assert "scenes[0].frame.environment" in shown["Error Log"]
    assert "shallows" in shown["Error Log"]


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (
            {"Topic": "herons\x00 at dawn"},
            "Topic contains the control character U+0000 at character 7: remove it (only line breaks and "
            "tabs are allowed).",
        ),
        (
            {"Story_Direction": "鷺" * 50_000},
            "Story Direction is 50,000 characters, over the limit of 10,000: shorten it by "
            "40,000 characters.",
        ),
        (
            {"Title": "x" * 101},
            "Title is 101 characters, over YouTube's limit of 100: shorten it by 1 character.",
        ),
        (
            {"Priority": "Urgent"},
            "Priority 'Urgent' is not a priority: pick High, Normal or Low (or leave it empty for Normal).",
        ),
    ],
)
async def test_page_text_that_no_script_can_take_is_refused_at_intake_with_the_fix(
    kit: NotionKit, edit: dict[str, str], problem: str
) -> None:
    """Regression: a NUL in Topic, or a Story Direction over Linux's 128 KiB per argument (50,000
    CJK characters), was accepted and reached the storyboard script's command line, where spawning
    failed ('embedded null byte', E2BIG) and the item was retried every 30 s for ever. A title over
    YouTube's 100 characters failed only after the storyboard was paid for; an unknown Priority was
    silently Normal."""
    await kit.start()
    page = kit.pages[0]
    await kit.set(page, Status="Queued", **edit)
    assert await kit.poll() == 1
    await kit.flush()
    shown = await kit.page(page)
    assert shown["Status"] == "Error"
    assert shown["Error Log"] == f"{problem}\nFix this, then set Status to Queued again."
    assert await kit.task(page) is None


async def test_every_problem_of_a_page_is_listed_at_once(kit: NotionKit) -> None:
    await kit.start()
    page = kit.pages[0]
    await kit.set(page, Status="Queued", Channel="Nope", Topic=" ", Priority="Urgent")
    await kit.poll()
    await kit.flush()
    log = (await kit.page(page))["Error Log"]
    assert kit.app
    notion = next(iter(kit.app.channels.values())).notion
    assert notion
    assert log.splitlines() == [
        f"Channel 'Nope' is not a channel of this daemon: pick one of {notion.channel_option}.",
        "Priority 'Urgent' is not a priority: pick High, Normal or Low (or leave it empty for Normal).",
        "Topic is empty: write what the video is about in Topic (or put a storyboard in a Storyboard block).",
        "Fix this, then set Status to Queued again.",
    ]


async def test_a_nul_in_an_option_name_is_shown_escaped_and_the_poll_goes_on(kit: NotionKit) -> None:
    """Regression: on PostgreSQL the Error Log echoing Channel 'nature\\x00' could not be stored (no
    NUL in JSONB), so every poll raised at that page and no later page was taken in."""
    await kit.start(projects=2)
    bad, good = kit.pages
    await kit.set(bad, Status="Queued", Channel="nature\x00", Title="Herons\x00")
    await kit.set(good, Status="Queued")
    assert await kit.poll() == 2
    await kit.flush()
    log = (await kit.page(bad))["Error Log"]
    assert "Channel 'nature\\x00' is not a channel of this daemon" in log
    assert "Title contains the control character U+0000 at character 7" in log
    assert "\x00" not in log
    assert await kit.task(good) is not None


def _intake(kit: NotionKit) -> Intake:
    """A fresh Intake, as after a restart: what it knows comes from the DB."""
    assert kit.app
    jobs = kit.app.notion_jobs()
    assert jobs is not None
    return jobs.intake


async def test_a_queued_page_whose_blocks_cannot_be_read_is_read_again_after_the_window_moved_on(
    kit: NotionKit, sandbox: SandboxProcess
) -> None:
    """Notion's block reads fail for minutes while its queries answer: the page is kept and read
    again at later polls, across a restart, after the poll window has left it behind."""
    await kit.start()
    assert kit.app and kit.app.notion
    kit.app.notion.attempts = 1  # each failing read fails at once (not after the retry budget)
    page = kit.pages[0]
    t0 = now()
    intake = _intake(kit)
    await intake.poll(t0)
    token = credentials(sandbox)["notion_token"]
    sandbox.fault(provider="notion", status=503, seconds=600, endpoint="/blocks/", token=token)
    try:
        await kit.set(page, Status="Queued")
        await intake.poll(t0 + timedelta(seconds=6))
        assert await kit.unread() == [page]
        intake = _intake(kit)  # a restart: its first poll also reconciles, and fails the same way
        for minutes in (4, 8):  # at 8 minutes the window starts after the edit
            await intake.poll(t0 + timedelta(minutes=minutes))
            assert await kit.task(page) is None
    finally:
        sandbox.clear_faults()
    await intake.poll(t0 + timedelta(minutes=9))  # not a reconciling poll (that was at 4)
    task = await kit.task(page)
    assert task is not None and task.state == "active"
    assert await kit.unread() == []


async def test_a_queued_page_with_no_production_is_found_by_the_reconciling_pass(kit: NotionKit) -> None:
    """A Queued page the polls skip (seen, never acted on: a crash between) is acted on by the
    pass that looks at every Queued page every ten minutes."""
    await kit.start()
    page = kit.pages[0]
    t0 = now()
    intake = _intake(kit)
    await intake.poll(t0)
    await kit.set(page, Status="Queued")
    await kit.seen_as_is(page)
    await intake.poll(t0 + timedelta(minutes=3))
    assert await kit.task(page) is None  # the window's poll takes it for handled
    await intake.poll(t0 + timedelta(minutes=11))
    task = await kit.task(page)
    assert task is not None and task.state == "active"


async def test_a_storyboard_block_over_the_limit_is_refused_with_its_size(kit: NotionKit) -> None:
    await kit.start()
    page = kit.pages[0]
    assert kit.operator
    padding = "".join(f"# note {n:05d}: {'x' * 80}\n" for n in range(1_200))  # ~110,000 characters
    await write_storyboard_block(kit.operator, page, STORYBOARD_YAML + padding)
    await kit.set(page, Status="Queued")
    await kit.poll()
    await kit.flush()
    shown = await kit.page(page)
    assert shown["Status"] == "Error"
    assert "The Storyboard block is 1" in shown["Error Log"]
    assert "over the limit of 100,000: shorten it by" in shown["Error Log"]
    assert await kit.task(page) is None
