"""Retention on the real engine and database, with stand-in scripts that count their runs: what goes
from an old done video (and nothing of a recent, an active or a stopped one), what a dry run reports,
and a new pass afterwards, which never buys a removed file again without the operator's say."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.channels import Captions
from daemon.costs import load_pricing_file
from daemon.db.models import Task
from daemon.project_files import disk_use
from daemon.rebuy import MediaRemoved
from daemon.retention import Policy, apply, scan
from daemon.settings import Settings
from daemon.tasks import Pipeline
from services.states import TaskState
from tests.support import fake_scripts
from tests.support.engine_kit import Kit, now, run_workers, storyboard

PAID_KINDS = {"asset", "clip", "narration", "sfx"}


@pytest.fixture
async def kit(engine: AsyncEngine, tmp_path: Path) -> Kit:
    k = Kit(engine, tmp_path / "ws", fake_scripts.install(tmp_path / "scripts"))
    await k.prepare()
    return k


def _pipeline(kit: Kit) -> Pipeline:
    """The kit's pipeline with the shipped price table: refusals name an amount."""
    return Pipeline(
        kit.engine, kit.channels, kit.workspace, pricing=load_pricing_file(Settings().pricing_file)
    )


async def _produce(kit: Kit, slug: str, scenes: int = 2) -> int:
    task_id = await _pipeline(kit).submit("nature", slug, _request(), now(), storyboard=storyboard(scenes))

    async def done() -> bool:
        return (await kit.task(task_id)).state == TaskState.DONE

    await run_workers([kit.worker()], done)
    return task_id


def _request() -> dict[str, str]:
    return {"title": "The Heron's Patience", "topic": "herons", "direction": "calm"}


async def _finished_days_ago(kit: Kit, task_id: int, days: float) -> None:
    async with kit.engine.begin() as conn:
        await conn.execute(
            update(Task).where(Task.id == task_id).values(updated_at=now() - timedelta(days=days))
        )


def _files(kit: Kit, slug: str) -> set[str]:
    root = kit.workspace / "channels/nature/projects" / slug
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _runs(kit: Kit) -> dict[str, int]:
    """How often each item's script ran (the stand-ins count it)."""
    return dict(json.loads((kit.scripts / "counts.json").read_text()))


def _leftovers(kit: Kit, slug: str) -> list[Path]:
    """An attempt file and a temp file, as a killed script leaves them."""
    root = kit.workspace / "channels/nature/projects" / slug
    (root / "attempts").mkdir(exist_ok=True)
    made = [root / "attempts/clip_s01-a9.mp4", root / "clips/.s01.mp4.123.tmp"]
    for path in made:
        path.write_bytes(b"x" * 1000)
    return made


async def test_retention_takes_the_intermediates_of_an_old_done_video_only(kit: Kit) -> None:
    old = await _produce(kit, "old")
    recent = await _produce(kit, "recent")
    stopped = await _produce(kit, "stopped")
    await _finished_days_ago(kit, old, 31)
    await _finished_days_ago(kit, stopped, 31)
    async with kit.engine.begin() as conn:  # an old video that then failed: not done, left alone
        await conn.execute(update(Task).where(Task.id == stopped).values(state=TaskState.ERROR))
    active = await kit.submit(storyboard(1), slug="active")  # in production: its files are its own
    for slug in ("old", "recent", "stopped"):
        _leftovers(kit, slug)
    (kit.workspace / "channels/nature/projects/active/clips").mkdir(parents=True)
    (kit.workspace / "channels/nature/projects/active/clips/s01.mp4").write_bytes(b"made")
    before = {slug: _files(kit, slug) for slug in ("recent", "stopped", "active")}
    intermediate = {f for f in _files(kit, "old") if f.split("/")[0] in ("assets", "composites", "clips")}
    assert {"assets/heron.png", "composites/s01.png", "clips/s02.mp4", "narration/s01.mp3"} <= _files(
        kit, "old"
    ) and intermediate

    removed = await apply(
        kit.engine, kit.workspace, await scan(kit.engine, kit.workspace, _policy(kit), now()), now()
    )

    # The old video keeps its storyboard and its final cut with its thumbnail; nothing else.
    assert _files(kit, "old") == {"storyboard.json", "final/old.mp4", "final/old.mp4.thumbnail.jpg"}
    assert not (kit.workspace / "channels/nature/projects/old/clips").exists()  # empty folders go
    # The recent one loses only what no step will use: the attempt and the temp file.
    assert _files(kit, "recent") == before["recent"] - {"attempts/clip_s01-a9.mp4", "clips/.s01.mp4.123.tmp"}
    assert _files(kit, "stopped") == before["stopped"]
    assert _files(kit, "active") == before["active"]
    by_task = {r.removal.task_id: r for r in removed}
    assert set(by_task) == {old, recent} and active not in by_task
    # Each removed output is marked on its item; the final cut is not (it stays).
    items = await kit.items(old)
    marked = {k for k, i in items.items() if i.removed_at is not None}
    assert marked == {k for k, i in items.items() if i.kind in PAID_KINDS | {"composite"}}
    assert sorted(by_task[old].marked) == sorted(marked)
    assert all(i.removed_at is None for i in (await kit.items(recent)).values())


async def test_finals_go_only_when_asked_and_the_published_record_stays(kit: Kit) -> None:
    old = await _produce(kit, "old", scenes=1)
    await _finished_days_ago(kit, old, 40)
    final = kit.workspace / "channels/nature/projects/old/final"
    (final / "old.mp4.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nHi\n")
    (final / "old.youtube.json").write_text("{}")
    await apply(kit.engine, kit.workspace, await scan(kit.engine, kit.workspace, _policy(kit), now()), now())
    assert {p.name for p in final.iterdir()} == {
        "old.mp4",
        "old.mp4.srt",
        "old.mp4.thumbnail.jpg",
        "old.youtube.json",
    }
    policy = Policy(30, kit.channels, finals=True)
    await apply(kit.engine, kit.workspace, await scan(kit.engine, kit.workspace, policy, now()), now())
    # The cut and its captions go; the thumbnail (the page's cover) and what was published stay.
    assert {p.name for p in final.iterdir()} == {"old.mp4.thumbnail.jpg", "old.youtube.json"}
    assert (await kit.items(old))["assembly"].removed_at is not None


async def test_a_dry_run_removes_nothing_and_reports_what_the_cleanup_then_frees(kit: Kit) -> None:
    old = await _produce(kit, "old")
    await _finished_days_ago(kit, old, 31)
    _leftovers(kit, "old")
    files = _files(kit, "old")
    disk = disk_use(kit.workspace, "nature", "old")
    listed = await scan(kit.engine, kit.workspace, _policy(kit), now())
    assert _files(kit, "old") == files  # the scan is the dry run: it changes nothing
    [removal] = listed
    assert removal.groups()["attempts"] == (1, 1000)
    removed = await apply(kit.engine, kit.workspace, listed, now())
    assert disk is not None and disk_use(kit.workspace, "nature", "old") == disk - removal.size
    assert (removed[0].files, removed[0].size) == (len(removal.files), removal.size)


async def test_no_retention_set_keeps_everything_but_attempts_and_temp_files(kit: Kit) -> None:
    old = await _produce(kit, "old", scenes=1)
    await _finished_days_ago(kit, old, 3650)
    _leftovers(kit, "old")
    files = _files(kit, "old")
    policy = Policy(None, kit.channels)
    assert not policy.configured
    await apply(kit.engine, kit.workspace, await scan(kit.engine, kit.workspace, policy, now()), now())
    assert _files(kit, "old") == files - {"attempts/clip_s01-a9.mp4", "clips/.s01.mp4.123.tmp"}


async def test_a_requeue_after_cleanup_buys_nothing_while_nothing_needs_the_files(kit: Kit) -> None:
    task_id = await _produce(kit, "p1")
    await _finished_days_ago(kit, task_id, 31)
    await apply(kit.engine, kit.workspace, await scan(kit.engine, kit.workspace, _policy(kit), now()), now())
    runs = _runs(kit)
    await _pipeline(kit).submit("nature", "p1", _request(), now(), storyboard=storyboard(2))
    task = await kit.task(task_id)
    assert (task.state, task.pass_no) == (TaskState.DONE, 2)  # done at once: nothing to make
    assert _runs(kit) == runs
    items = await kit.items(task_id)
    assert {k for k, i in items.items() if i.removed_at} == {
        k for k, i in items.items() if i.kind in PAID_KINDS | {"composite"}
    }  # still gone, still known to be


async def test_a_pass_that_needs_removed_files_is_refused_naming_them_then_buys_exactly_those(
    kit: Kit,
) -> None:
    task_id = await _produce(kit, "p1")
    await _finished_days_ago(kit, task_id, 31)
    await apply(kit.engine, kit.workspace, await scan(kit.engine, kit.workspace, _policy(kit), now()), now())
    runs = _runs(kit)
    # Other captions make a new cut, which needs the clips, narration and beds retention removed.
    kit.channels["nature"] = kit.channels["nature"].model_copy(update={"captions": Captions(size=0.06)})
    pipeline = _pipeline(kit)
    with pytest.raises(MediaRemoved) as refused:
        await pipeline.submit("nature", "p1", _request(), now(), storyboard=storyboard(2))
    assert refused.value.kinds == {"asset": 2, "clip": 2, "narration": 2, "sfx": 2}
    assert refused.value.micros > 0
    assert "removed by retention on" in refused.value.reason
    assert "2 images, 2 video clips, 2 narrations and 2 ambience beds (about $" in refused.value.reason
    task = await kit.task(task_id)
    assert (task.state, task.pass_no) == (TaskState.DONE, 1)  # nothing changed
    # A confirmation for less than the pass needs is no confirmation.
    with pytest.raises(MediaRemoved):
        await pipeline.submit(
            "nature", "p1", _request(), now(), storyboard=storyboard(2), rebuy_micros=refused.value.micros - 1
        )
    await pipeline.submit(
        "nature", "p1", _request(), now(), storyboard=storyboard(2), rebuy_micros=refused.value.micros
    )

    async def done() -> bool:
        return (await kit.task(task_id)).state == TaskState.DONE

    await run_workers([kit.worker()], done)
    again = {key: n - runs.get(key, 0) for key, n in _runs(kit).items() if n != runs.get(key, 0)}
    items = await kit.items(task_id)
    # Every intermediate once more (the frames are local: free), the new cut; never the storyboard.
    assert again == {k: 1 for k, i in items.items() if i.kind in PAID_KINDS | {"composite", "assembly"}}
    assert all(i.removed_at is None for i in items.values())


def _policy(kit: Kit) -> Policy:
    return Policy(30, kit.channels)
