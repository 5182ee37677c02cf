"""Plan versions: a task keeps the plan rules it was created under, so an upgrade that changes them
(here: clips that wait for their narration and take their length from it) never pays a task's clips
again; a new task gets the new rules."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from alembic import command
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.db.engine import make_engine
from daemon.db.models import Item, Task
from daemon.migrate import alembic_config
from daemon.plan_store import apply_plan
from daemon.tasks import plan_options
from services.plan import PLAN_VERSION, build_plan
from services.states import ItemState
from tests.support.engine_kit import Kit, channel, now, storyboard


async def test_a_new_task_plans_clips_that_wait_for_their_narration(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    kit = Kit(engine, tmp_path / "ws", tmp_path / "scripts")
    task_id = await kit.submit(storyboard(2))
    assert (await kit.task(task_id)).plan_version == PLAN_VERSION == 2
    items = await kit.items(task_id)
    assert items["clip_s01"].input["duration"] == "auto"
    async with engine.connect() as conn:
        edges = set(await conn.execute(text("SELECT item_id, depends_on FROM item_edge")))
    assert (items["clip_s01"].id, items["narration_s01"].id) in edges
    # New words make a new narration, never a new clip: the clip does not take the narration's hash.
    before = items["clip_s01"].input_hash
    await kit.submit(storyboard(2, narration="The delta wakes slowly, and the heron does not move."))
    after = await kit.items(task_id)
    assert after["narration_s01"].input_hash != items["narration_s01"].input_hash
    assert after["clip_s01"].input_hash == before


async def test_a_task_planned_before_the_upgrade_keeps_its_clips(engine: AsyncEngine, tmp_path: Path) -> None:
    """A version 1 task (what the migration makes of every earlier task) keeps estimated clip
    lengths on every new pass: its succeeded clips stay done, with their hashes."""
    kit = Kit(engine, tmp_path / "ws", tmp_path / "scripts")
    task_id = await kit.submit(storyboard(2))
    old_rules = build_plan(
        {"title": "The Heron's Patience", "topic": "herons", "direction": "calm"},
        storyboard(2),
        dataclasses.replace(plan_options(channel()), plan_version=1),
        given=True,
    )
    async with engine.begin() as conn:
        await conn.execute(update(Task).where(Task.id == task_id).values(plan_version=1))
        await apply_plan(conn, task_id, old_rules, now(), kit.workspace, lambda item: 0)
        await conn.execute(
            update(Item)
            .where(Item.task_id == task_id, Item.kind == "clip")
            .values(state=ItemState.SUCCEEDED, output_path="clips/x.mp4")
        )
    (kit.workspace / "clips").mkdir(parents=True)
    (kit.workspace / "clips/x.mp4").write_bytes(b"paid for")
    planned = {i.key: i for i in await _items(engine, task_id)}
    assert planned["clip_s01"].input["duration"] in (5, 10)

    await kit.submit(storyboard(2))  # a new pass after the upgrade
    again = {i.key: i for i in await _items(engine, task_id)}
    for key in ("clip_s01", "clip_s02"):
        assert again[key].input_hash == planned[key].input_hash
        assert again[key].state == ItemState.SUCCEEDED
        assert again[key].input["duration"] in (5, 10)


async def _items(engine: AsyncEngine, task_id: int) -> list[Item]:
    async with engine.connect() as conn:
        return list(await conn.execute(select(Item).where(Item.task_id == task_id)))  # type: ignore[arg-type]


def test_the_migration_makes_every_earlier_task_version_1(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'daemon.db'}"
    command.upgrade(alembic_config(url), "0012")

    async def insert_and_read(read: bool) -> int | None:
        engine = make_engine(url)
        try:
            async with engine.begin() as conn:
                if not read:
                    await conn.execute(
                        text(
                            "INSERT INTO task (id, channel_id, project_slug, title, state, priority, "
                            "pass_no, created_at, updated_at) VALUES (1, 'nature', 'heron', 'Heron', "
                            "'active', 1, 1, '2026-12-06 10:00:00.000000', '2026-12-06 10:00:00.000000')"
                        )
                    )
                    return None
                return int(await conn.scalar(text("SELECT plan_version FROM task WHERE id = 1")))
        finally:
            await engine.dispose()

    asyncio.run(insert_and_read(False))
    command.upgrade(alembic_config(url), "head")
    assert asyncio.run(insert_and_read(True)) == 1
