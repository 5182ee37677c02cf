"""The durable engine on both databases, with contract-following stand-in scripts as subprocesses."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.db.models import Attempt, Ledger
from tests.support import fake_scripts
from tests.support.engine_kit import Kit, run_workers, storyboard


@pytest.fixture
async def kit(engine: AsyncEngine, tmp_path: Path) -> Kit:
    k = Kit(engine, tmp_path / "workspace", fake_scripts.install(tmp_path / "scripts"))
    await k.prepare()
    return k


async def _task_state(kit: Kit, task_id: int) -> str:
    return str((await kit.task(task_id)).state)


async def test_a_storyboard_becomes_every_item_and_a_finished_task(kit: Kit) -> None:
    task_id = await kit.submit(storyboard(scenes=2))

    async def done() -> bool:
        return await _task_state(kit, task_id) == "done"

    await run_workers([kit.worker()], done)
    items = await kit.items(task_id)
    expected = {
        "storyboard",
        "storyboard_gate",
        "asset_heron",
        "asset_shallows",
        "assets_gate",
        "assembly",
        "final_gate",
    } | {f"{k}_s{i:02d}" for k in ("composite", "clip", "narration", "sfx") for i in (1, 2)}
    assert set(items) == expected
    assert {i.state for i in items.values()} == {"succeeded"}
    for item in items.values():
        if item.output_path:
            assert (kit.workspace / item.output_path).is_file(), item.key
    task = await kit.task(task_id)
    assert task.final_video_path == "channels/nature/projects/p1/final/p1.mp4"
    # Each script ran once: nothing paid twice.
    ran = [r["item"] for r in fake_scripts.runs(kit.scripts) if r["outcome"] == "started"]
    assert sorted(ran) == sorted(
        k for k, i in items.items() if i.provider != "operator" and k != "storyboard"
    )


async def test_clip_waits_for_its_composite_and_narration_does_not_wait_for_images(kit: Kit) -> None:
    fake_scripts.set_behaviour(kit.scripts, {"generate_asset.py": ["sleep:0.6"]})
    task_id = await kit.submit(storyboard(scenes=1))

    async def done() -> bool:
        return await _task_state(kit, task_id) == "done"

    await run_workers([kit.worker()], done)
    runs = {r["item"]: r for r in fake_scripts.runs(kit.scripts) if r["outcome"] == "ok"}
    starts = {r["item"]: r["start"] for r in fake_scripts.runs(kit.scripts) if r["outcome"] == "started"}
    assert starts["clip_s01"] >= runs["composite_s01"]["end"]
    assert starts["composite_s01"] >= max(runs["asset_heron"]["end"], runs["asset_shallows"]["end"])
    # Narration started while the images were still being made (no stage barrier).
    assert starts["narration_s01"] < runs["asset_shallows"]["end"]


async def test_exit_75_retries_later_with_the_lease_released_while_waiting(kit: Kit) -> None:
    fake_scripts.set_behaviour(kit.scripts, {"narration_s01": ["75", "ok"]})
    kit.overrides.update(retry_base_s=1.5, retry_cap_s=1.5)
    task_id = await kit.submit(storyboard(scenes=1))
    seen_waiting: list[object] = []

    async def done() -> bool:
        items = await kit.items(task_id)
        n = items["narration_s01"]
        if n.attempts == 1 and n.state == "ready":
            seen_waiting.append((n.lease_token, n.lease_owner, n.next_attempt_at > n.updated_at))
        return await _task_state(kit, task_id) == "done"

    await run_workers([kit.worker()], done)
    assert seen_waiting, "the item was never seen waiting for its retry"
    assert all(w == (None, None, True) for w in seen_waiting)
    items = await kit.items(task_id)
    assert items["narration_s01"].attempts == 2
    async with kit.engine.connect() as conn:
        outcomes = (
            await conn.execute(
                select(Attempt.number, Attempt.outcome)
                .where(Attempt.item_id == items["narration_s01"].id)
                .order_by(Attempt.number)
            )
        ).all()
    assert [tuple(o) for o in outcomes] == [(1, "transient"), (2, "succeeded")]


async def test_exit_1_stops_the_task_with_the_scripts_reason_and_starts_nothing_new(kit: Kit) -> None:
    fake_scripts.set_behaviour(
        kit.scripts,
        {"asset_heron": ["fail-after:0.5"], "asset_shallows": ["sleep:1.5"], "narration_s01": ["sleep:1.5"]},
    )
    task_id = await kit.submit(storyboard(scenes=1))

    async def settled() -> bool:
        items = await kit.items(task_id)
        return await _task_state(kit, task_id) == "error" and not any(
            i.state == "running" for i in items.values()
        )

    await run_workers([kit.worker()], settled)
    task = await kit.task(task_id)
    assert "asset_heron: asset_heron: content blocked; reword the prompt" in task.error
    items = await kit.items(task_id)
    assert items["asset_heron"].state == "failed"
    # Siblings already running finished; nothing behind the failure started.
    assert items["asset_shallows"].state == "succeeded"
    assert items["narration_s01"].state == "succeeded"
    assert items["composite_s01"].state == "blocked"
    runs = fake_scripts.runs(kit.scripts)
    failed_at = next(r["end"] for r in runs if r["item"] == "asset_heron" and r["outcome"] == "1")
    assert not [r["item"] for r in runs if r["outcome"] == "started" and r["start"] > failed_at]


async def test_a_script_past_its_timeout_is_killed_and_retried(kit: Kit) -> None:
    fake_scripts.set_behaviour(kit.scripts, {"sfx_s01": ["hang", "ok"]})
    timeouts = {"sfx": 1.0}
    kit.overrides.update(timeouts={**kit.settings().timeouts, **timeouts})
    task_id = await kit.submit(storyboard(scenes=1))

    async def done() -> bool:
        return await _task_state(kit, task_id) == "done"

    await run_workers([kit.worker()], done)
    async with kit.engine.connect() as conn:
        items = await kit.items(task_id)
        outcomes = [
            r[0]
            for r in await conn.execute(
                select(Attempt.outcome).where(Attempt.item_id == items["sfx_s01"].id).order_by(Attempt.number)
            )
        ]
    assert outcomes == ["timeout", "succeeded"]
    hung = [r for r in fake_scripts.runs(kit.scripts) if r["item"] == "sfx_s01" and r["action"] == "hang"]
    assert len(hung) == 1
    assert not Path(f"/proc/{hung[0]['pid']}").exists(), "the hung script is still running"


async def test_a_retried_completion_is_counted_once(kit: Kit) -> None:
    task_id = await kit.submit(storyboard(scenes=1))

    async def done() -> bool:
        return await _task_state(kit, task_id) == "done"

    await run_workers([kit.worker()], done)
    async with kit.engine.connect() as conn:
        per_item = (
            await conn.execute(
                select(Ledger.item_id, func.count()).where(Ledger.entry == "actual").group_by(Ledger.item_id)
            )
        ).all()
    assert per_item
    assert all(n == 1 for _, n in per_item)
