"""The operator's loop as a property: random sequences of what an operator does to a page (Queued,
Cancelled, Paused, approvals right and wrong, a scene edited in the Storyboard block, a daemon status
set by hand, trash and restore), each followed by the daemon's own steps (poll, work, sync, flush)
with the real intake, outbox, planner and worker against the sandbox's Notion, and fake scripts.

After every step:
- nothing behind a review gate that waited all step long was started, or is running;
- no Kling job was bought twice for the same clip input (a later pass resumes the job it paid for);
- the page shows the Status the database says and the Cost of everything paid;
- no comment carries an internal marker.
At the end the operator queues the page and approves what it asks: the video is finished, and still
no clip was bought twice.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from daemon.budget import dollars, task_spend
from daemon.db.models import Attempt, Item, ItemEdge
from daemon.notion.body import read_storyboard_block, write_storyboard_block
from services.paths import project_slug
from services.status import ItemView, shown_status
from tests.support import fake_scripts
from tests.support.engine_kit import now, run_workers
from tests.support.notion_kit import NotionKit
from tests.support.profiles import examples
from tests.support.sandbox_proc import SandboxProcess

GATES = ("storyboard_gate", "assets_gate", "final_gate")
REVIEWS = {"Storyboard Review": "Storyboard Approved", "Assets Review": "Assets Approved"}
REVIEWS |= {"Final Review": "Approved"}
# "approve" approves what the page asks for; the other approvals may be the wrong ones. Weighted
# toward an operator who moves the video along, so sequences reach the clips and beyond.
ACTIONS = (
    *["approve"] * 4,
    *["Queued"] * 2,
    *["Cancelled"] * 2,
    "Paused",
    "Storyboard Approved",
    "Assets Approved",
    "Approved",
    "edit",
    "Generating Video",
    "trash",
    "restore",
)
SUBMITTED = -1.0  # work until a clip has bought its Kling job, then stop mid-render
STEPS = st.lists(
    st.tuples(st.sampled_from(ACTIONS), st.sampled_from([0.0, 0.3, 0.8, 2.0, SUBMITTED])),
    min_size=4,
    max_size=14,
)
# The case the issue saw: clips cancelled mid-render, the page queued again and approved.
CANCELLED_MID_RENDER = [
    ("Queued", 2.0),
    ("approve", 2.0),
    ("approve", SUBMITTED),
    ("Cancelled", 0.0),
    ("Queued", 2.0),
    ("approve", 2.0),
    ("approve", 0.3),
]
# Paused with the images ready to start, then Queued: the Storyboard block is read back as the
# operator's, the storyboard gate waits again, and the ready images must wait with it.
PAUSED_WHILE_READY = [
    ("Queued", 2.0),
    ("approve", 0.0),
    ("Paused", 0.0),
    ("Queued", 0.8),
    ("approve", 0.8),
]

# Trashed while the daemon writes the page: the write that met the trash is answered (404), so the
# page back from the trash shows the video paused at once, not the Status written before.
TRASHED_WHILE_WRITING = [
    ("Queued", 2.0),
    ("Storyboard Approved", 0.0),
    ("trash", 0.8),
    ("trash", SUBMITTED),
    ("Queued", 2.0),
    ("restore", 2.0),
]


@dataclass
class Trial:
    kit: NotionKit
    page: str
    trashed: bool = False
    edits: int = 0
    log: list[str] = field(default_factory=list)

    async def act(self, action: str) -> None:
        kit = self.kit
        assert kit.operator
        self.log.append(action)
        if action in ("trash", "restore"):
            if self.trashed == (action == "trash"):
                self.log[-1] += " (already: nothing)"
                return
            self.trashed = action == "trash"
            await kit.operator.call("PATCH", f"pages/{self.page}", body={"in_trash": self.trashed})
        elif self.trashed:
            self.log[-1] += " (page in the trash: nothing)"
        elif action == "edit":
            await self.edit_scene()
        elif action == "approve":
            shown = (await kit.page(self.page))["Status"]
            if shown in REVIEWS:
                self.log[-1] = REVIEWS[shown]
                await kit.set(self.page, Status=REVIEWS[shown])
        else:
            await kit.set(self.page, Status=action)

    async def edit_scene(self) -> None:
        """Rewrites one scene's motion in the Storyboard block, as an operator would before Queued."""
        assert self.kit.operator
        block = await read_storyboard_block(self.kit.operator, self.page)
        if not block.text:
            self.log[-1] += " (no storyboard yet: nothing)"
            return
        board = yaml.safe_load(block.text)
        self.edits += 1
        scene = board["scenes"][self.edits % len(board["scenes"])]
        scene["motion"] = f"Slow pan left, edit {self.edits}"
        await write_storyboard_block(self.kit.operator, self.page, yaml.safe_dump(board, sort_keys=False))

    async def work(self, seconds: float) -> None:
        """The worker runs for `seconds` (or until nothing is left to do). It stops with no grace
        (SIGTERM_GRACE_S=0): scripts still running are killed and their items handed back, a clip
        mid-render with its Kling job recorded, as a daemon restarted at that moment would."""
        assert self.kit.app
        started = time.monotonic()

        async def until() -> bool:
            if seconds == SUBMITTED:
                if await self.clip_submitted() or time.monotonic() - started >= 10:
                    return True
            elif time.monotonic() - started >= seconds:
                return True
            return not await self.busy()

        if seconds:
            await run_workers([self.kit.app.worker()], until, timeout=abs(seconds) + 30)

    async def clip_submitted(self) -> bool:
        task = await self.kit.task(self.page)
        if task is None:
            return False
        return any(
            i.kind == "clip" and i.state == "running" and i.provider_job_id for i in await self.items(task.id)
        )

    async def busy(self) -> bool:
        task = await self.kit.task(self.page)
        if task is None or task.state != "active":
            return False
        return any(i.state in ("ready", "running") and i.kind not in GATES for i in await self.items(task.id))

    async def items(self, task_id: int) -> list[Any]:
        return list((await self.kit.items(task_id)).values())

    async def gates_waiting(self) -> set[str]:
        task = await self.kit.task(self.page)
        if task is None:
            return set()
        return {i.key for i in await self.items(task.id) if i.kind in GATES and i.state != "succeeded"}


async def _behind(kit: NotionKit, task_id: int, gate: str) -> set[int]:
    """Every item downstream of the gate, through any path: what the gate holds."""
    assert kit.app
    async with kit.app.engine.connect() as conn:
        items = {
            r.id: r.key for r in await conn.execute(select(Item.id, Item.key).where(Item.task_id == task_id))
        }
        edges = (
            await conn.execute(
                select(ItemEdge.item_id, ItemEdge.depends_on).where(ItemEdge.item_id.in_(list(items)))
            )
        ).all()
    behind: set[int] = set()
    frontier = {i for i, key in items.items() if key == gate}
    while frontier:
        frontier = {item for item, dep in edges if dep in frontier} - behind
        behind |= frontier
    return behind


async def _started_since(kit: NotionKit, item_ids: set[int], since: Any) -> list[int]:
    assert kit.app
    async with kit.app.engine.connect() as conn:
        rows = await conn.execute(
            select(Attempt.item_id).where(Attempt.item_id.in_(item_ids), Attempt.started_at >= since)
        )
        return [r[0] for r in rows]


def _clip_purchases(scripts: Path, page: str) -> Counter[tuple[str, str]]:
    """The page's Kling jobs created, by (clip, prompt): runs that submitted without resuming a
    recorded job."""
    bought: Counter[tuple[str, str]] = Counter()
    for run in fake_scripts.runs(scripts):
        argv = [str(a) for a in run["argv"]]  # type: ignore[attr-defined]
        if run["project"] != project_slug(page):
            continue
        if run["outcome"] == "submitted" and "--resume-job" not in argv:
            prompt = next(a for a in argv if a.startswith("--prompt="))
            bought[(str(run["item"]), prompt)] += 1
    return bought


async def _check(trial: Trial, before: set[str], step_start: Any) -> None:
    kit = trial.kit
    assert kit.app and kit.scripts
    where = " -> ".join(trial.log)
    task = await kit.task(trial.page)
    if task is not None:
        # Gates: a gate that waited all step long held everything behind it.
        for gate in before & await trial.gates_waiting():
            behind = await _behind(kit, task.id, gate)
            running = [i.key for i in await trial.items(task.id) if i.id in behind and i.state == "running"]
            assert running == [], f"{running} run while {gate} waits, after {where}"
            started = await _started_since(kit, behind, step_start)
            assert started == [], f"items {started} started while {gate} waited, after {where}"
    bought = _clip_purchases(kit.scripts, trial.page)
    assert all(n == 1 for n in bought.values()), f"a clip bought twice: {bought}, after {where}"
    if task is None or trial.trashed:
        return
    # The page: its Status is the database's, its Cost everything paid.
    shown = await kit.page(trial.page)
    views = [ItemView(i.kind, i.state) for i in await trial.items(task.id)]
    assert shown["Status"] == shown_status(task.state, views).value, where
    async with kit.app.engine.connect() as conn:
        spend = (await task_spend(conn, [task.id])).get(task.id)
    paid = float(dollars(spend.total_micros if spend else 0))
    assert shown["Cost"] == pytest.approx(paid), where
    for comment in await kit.comments(trial.page):
        assert "nvd:" not in comment and trial.page not in comment, comment


async def _finish(trial: Trial) -> None:
    """The operator brings the page home: restore, Queued, approve every review, until Ready."""
    kit = trial.kit
    if trial.trashed:
        await trial.act("restore")
    task = await kit.task(trial.page)
    if task is None or task.state != "active":
        await trial.act("Queued")
    for _ in range(12):
        await kit.poll()
        await trial.work(5.0)
        await kit.poll()
        await kit.flush()
        task = await kit.task(trial.page)
        if task.state == "done":
            break
        status = (await kit.page(trial.page))["Status"]
        wanted = {**REVIEWS, "Paused": "Queued", "Error": "Queued"}
        if status in wanted:
            await trial.act(wanted[status])
    assert (await kit.task(trial.page)).state == "done", " -> ".join(trial.log)
    assert (await kit.page(trial.page))["Status"] == "Ready"


async def _trial(kit: NotionKit, page: str, steps: list[tuple[str, float]]) -> None:
    trial = Trial(kit, page)
    assert kit.app
    for action, seconds in steps:
        await trial.act(action)
        await kit.poll()
        # From here the daemon knows the action: a gate waiting now (a new pass arms them again)
        # and still at the end of the step held everything behind it in between.
        before = await trial.gates_waiting()
        step_start = now()
        await trial.work(seconds)
        await kit.poll()
        await kit.flush()
        await _check(trial, before, step_start)
    await _finish(trial)
    await _check(trial, set(), now())


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the deep profile's 60 sequences take minutes
def test_any_sequence_of_operator_actions_keeps_gates_pays_each_clip_once_and_shows_the_truth(
    sandbox: SandboxProcess, db_url: str, tmp_path: Path
) -> None:
    with asyncio.Runner() as runner:
        kit = NotionKit(sandbox, db_url, tmp_path)
        runner.run(
            kit.start(
                projects=0,
                gates={"storyboard": True, "assets": True, "final": True},
                channel={"scenes": 2},
                sigterm_grace_s=0.0,
            )
        )
        try:
            assert kit.scripts and kit.operator
            # Clips print their job id at once, then render: a cancel can land after the purchase.
            fake_scripts.set_behaviour(kit.scripts, {"generate_video.py": ["submit-sleep:0.6"]})

            @settings(
                max_examples=examples(ci=4, deep=60),
                deadline=None,
                database=None,
                phases=(Phase.explicit, Phase.generate),  # each example is seconds of real work
                suppress_health_check=[HealthCheck.too_slow],
            )
            @given(steps=STEPS)
            @example(steps=CANCELLED_MID_RENDER)
            @example(steps=PAUSED_WHILE_READY)
            @example(steps=TRASHED_WHILE_WRITING)
            def trial(steps: list[tuple[str, float]]) -> None:
                page = runner.run(_new_page(kit))
                runner.run(_trial(kit, page, steps))

            trial()
        finally:
            runner.run(kit.close())


async def _new_page(kit: NotionKit) -> str:
    assert kit.operator
    option = kit.seeded["channel"]
    name = " ".join(part.capitalize() for part in option.replace("_", "-").split("-") if part)
    page = await kit.operator.call(
        "POST",
        "pages",
        body={
            "parent": {"type": "data_source_id", "data_source_id": kit.seeded["data_source_id"]},
            "properties": {
                "Title": {"title": [{"type": "text", "text": {"content": "The Heron's Patience"}}]},
                "Topic": {"rich_text": [{"type": "text", "text": {"content": "A heron fishing at dawn"}}]},
                "Story Direction": {"rich_text": [{"type": "text", "text": {"content": "Calm, slow"}}]},
                "Channel": {"select": {"name": name}},
                "Status": {"select": {"name": "Draft"}},
            },
        },
    )
    return str(page["id"])
