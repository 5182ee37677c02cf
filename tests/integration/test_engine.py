"""The durable engine on both databases, with contract-following stand-in scripts as subprocesses."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.budget import day_of
from daemon.channels import Gates
from daemon.claim import ClaimPolicy, ClaimRequest, ClaimResult, claim
from daemon.commands import EXTENSIONS, final_path
from daemon.complete import Completion, Success, complete
from daemon.completions import CompletionQueue
from daemon.dag import approve_gate, refresh
from daemon.db.models import Attempt, Item, Ledger, ProviderSlot
from daemon.lease import sweep_expired
from daemon.monitor.metrics import LEASE_TAKEN
from daemon.runner import ScriptOutcome
from daemon.tasks import cancel_task
from services.storyboard import Storyboard, parse_storyboard
from tests.support import fake_scripts
from tests.support.engine_kit import Kit, channel, now, run_workers, storyboard


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
    # The provider's hint (1 s) bounds the jittered backoff from below, so the wait is observable.
    fake_scripts.set_behaviour(kit.scripts, {"narration_s01": ["75:1.0", "ok"]})
    kit.overrides.update(retry_cap_s=2.0)
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


async def test_a_lost_lease_kills_the_script_and_its_owner_never_completes(kit: Kit) -> None:
    fake_scripts.set_behaviour(kit.scripts, {"sfx_s01": ["hang", "ok"]})
    task_id = await kit.submit(storyboard(scenes=1))
    stolen: list[int] = []

    async def done() -> bool:
        items = await kit.items(task_id)
        hung = [r for r in fake_scripts.runs(kit.scripts) if r["item"] == "sfx_s01"]
        if hung and not stolen and items["sfx_s01"].state == "running":
            async with kit.engine.begin() as conn:  # another daemon took the item over
                await conn.execute(
                    update(Item)
                    .where(Item.id == items["sfx_s01"].id)
                    .values(lease_token="taken-over", lease_owner="other-daemon")
                )
            stolen.append(int(str(hung[0]["pid"])))
        return bool(stolen and not Path(f"/proc/{stolen[0]}").exists())

    await run_workers([kit.worker()], done, timeout=10)
    items = await kit.items(task_id)
    assert items["sfx_s01"].state == "running"
    assert items["sfx_s01"].lease_token == "taken-over"
    assert not (kit.workspace / "channels/nature/projects/p1/sfx/s01.mp3").exists()


async def test_a_fenced_out_completion_is_refused_and_the_new_owners_output_stays(kit: Kit) -> None:
    task_id = await kit.submit(storyboard(scenes=1))
    first = (await claim(kit.engine, "elevenlabs", "daemon-a", now(), 1.0, EXTENSIONS)).claimed
    assert first is not None
    # Daemon A stalls past its lease; the sweep hands the item back and daemon B takes it.
    later = now() + timedelta(seconds=5)
    assert await sweep_expired(kit.engine, later, 1.0) == 1
    second = (await claim(kit.engine, "elevenlabs", "daemon-b", later, 30.0, EXTENSIONS)).claimed
    assert second is not None and second.item_id == first.item_id and second.attempt_no == 2
    target = final_path(second.kind, second.key, "nature", "p1")
    for c, text in ((second, b"from B"), (first, b"from A")):
        (kit.workspace / c.attempt_output).parent.mkdir(parents=True, exist_ok=True)
        (kit.workspace / c.attempt_output).write_bytes(text)
        # A sidecar beside each output (a narration's words): it goes where its output goes.
        (kit.workspace / f"{c.attempt_output}.words.json").write_bytes(text + b" words")
    assert (
        await complete(
            kit.engine,
            second,
            Success(second.attempt_output, 10, {}),
            workspace=kit.workspace,
            now=later,
            final_path=target,
        )
        == "done"
    )
    assert (
        await complete(
            kit.engine,
            first,
            Success(first.attempt_output, 10, {}),
            workspace=kit.workspace,
            now=later,
            final_path=target,
        )
        == "fenced"
    )
    assert (kit.workspace / target).read_bytes() == b"from B"
    assert (kit.workspace / f"{target}.words.json").read_bytes() == b"from B words"
    assert (kit.workspace / f"{first.attempt_output}.words.json").read_bytes() == b"from A words"
    # The winner's retried commit is recognised, and its cost booked once.
    assert (
        await complete(
            kit.engine,
            second,
            Success(second.attempt_output, 10, {}),
            workspace=kit.workspace,
            now=later,
            final_path=target,
        )
        == "already"
    )
    async with kit.engine.connect() as conn:
        booked = await conn.scalar(
            select(func.count())
            .select_from(Ledger)
            .where(Ledger.item_id == second.item_id, Ledger.entry == "actual")
        )
    assert booked == 1
    assert task_id


async def test_two_daemons_never_exceed_a_providers_limit(kit: Kit) -> None:
    kit.limits["kling"] = 2
    await kit.prepare()
    fake_scripts.set_behaviour(kit.scripts, {"generate_video.py": ["sleep:0.4"]})
    task_id = await kit.submit(storyboard(scenes=6))

    async def done() -> bool:
        return await _task_state(kit, task_id) == "done"

    await run_workers([kit.worker("daemon-a"), kit.worker("daemon-b")], done, timeout=60)
    clips = [
        r for r in fake_scripts.runs(kit.scripts) if r["item"].startswith("clip_") and r["outcome"] == "ok"
    ]
    assert len(clips) == 6
    assert max_overlap([(float(str(r["start"])), float(str(r["end"]))) for r in clips]) == 2


async def test_max_running_caps_one_daemon_below_the_shared_provider_limits(kit: Kit) -> None:
    kit.limits.update(gemini=3, kling=3, elevenlabs=3, local=3)
    await kit.prepare()
    fake_scripts.set_behaviour(kit.scripts, {"*": ["sleep:0.2"]})
    task_id = await kit.submit(storyboard(scenes=3))

    async def done() -> bool:
        return await _task_state(kit, task_id) == "done"

    await run_workers([kit.worker("small-machine", max_running=1)], done, timeout=60)
    runs = [r for r in fake_scripts.runs(kit.scripts) if r["outcome"] == "ok"]
    assert len(runs) > 10
    assert max_overlap([(float(str(r["start"])), float(str(r["end"]))) for r in runs]) == 1


async def test_actual_costs_count_against_the_budget_day_of_budget_timezone(kit: Kit) -> None:
    """The reservations follow BUDGET_TIMEZONE; so must the actual costs that replace them, or an
    evening's spending lands on the wrong day's budget."""
    # A zone whose date differs from UTC's at this hour (UTC-12 before noon, UTC+14 after).
    zone = "Pacific/Kiritimati" if now().hour >= 12 else "Etc/GMT+12"
    await kit.prepare()
    task_id = await kit.submit(storyboard(scenes=1))
    worker = kit.worker()
    worker.policy = ClaimPolicy(day_of=day_of(zone))

    async def done() -> bool:
        return await _task_state(kit, task_id) == "done"

    await run_workers([worker], done, timeout=60)
    async with kit.engine.connect() as conn:
        days = set((await conn.execute(select(Ledger.day).where(Ledger.entry == "actual"))).scalars())
    assert days == {day_of(zone)(now())} != {now().date().isoformat()}


async def test_a_replanned_storyboard_regenerates_only_what_changed(kit: Kit) -> None:
    task_id = await kit.submit(storyboard(scenes=2))

    async def done() -> bool:
        return await _task_state(kit, task_id) == "done"

    await run_workers([kit.worker()], done)
    first_pass = len(fake_scripts.runs(kit.scripts))
    edited = storyboard(scenes=2).model_dump(mode="json")
    edited["scenes"][1]["narration"] = "At first light the delta belongs to the bold. Scene 2."
    again = await kit.submit(parse_storyboard(edited))
    assert again == task_id
    await run_workers([kit.worker()], done)
    rerun = sorted(
        str(r["item"]) for r in fake_scripts.runs(kit.scripts)[first_pass:] if r["outcome"] == "started"
    )
    assert rerun == ["assembly", "narration_s02"]
    assert (await kit.task(task_id)).pass_no == 2


def max_overlap(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


async def test_last_two_dependencies_finishing_together_still_unblock_their_dependant(kit: Kit) -> None:
    """Regression: under READ COMMITTED each completion saw the other still running, and the
    assembly stayed blocked for ever. Completions now take the task row first."""
    for round_no in range(8):
        task_id = await kit.submit(storyboard(scenes=1), slug=f"race{round_no}")
        async with kit.engine.begin() as conn:
            await conn.execute(
                update(Item)
                .where(
                    Item.task_id == task_id,
                    Item.key.not_in(("clip_s01", "sfx_s01", "assembly", "final_gate")),
                )
                .values(state="succeeded", output_path="x")
            )
        # The clip and the bed, both behind the (done) narration, the assembly behind them.
        async with kit.engine.begin() as conn:
            await refresh(conn, task_id, now())
        first = (await claim(kit.engine, "elevenlabs", "d", now(), 30, EXTENSIONS)).claimed
        second = (await claim(kit.engine, "kling", "d", now(), 30, EXTENSIONS)).claimed
        assert first is not None
        assert second is not None
        for c in (first, second):
            (kit.workspace / c.attempt_output).parent.mkdir(parents=True, exist_ok=True)
            (kit.workspace / c.attempt_output).write_bytes(b"audio")
        await asyncio.gather(
            *(
                complete(
                    kit.engine,
                    c,
                    Success(c.attempt_output, 1, {}),
                    workspace=kit.workspace,
                    now=now(),
                    final_path=final_path(c.kind, c.key, "nature", f"race{round_no}"),
                )
                for c in (first, second)
            )
        )
        assert (await kit.items(task_id))["assembly"].state == "ready", f"round {round_no}"


async def test_a_step_that_cannot_even_start_ends_in_error_not_a_retry_loop(kit: Kit) -> None:
    """Regression: a script that could not be spawned (here: an argument over Linux's 128 KiB) was released
    as transient every 30 s for ever; it now counts as a failed attempt like any other."""
    kit.overrides.update(max_attempts=2)
    task_id = await kit.submit(storyboard(scenes=1))
    item = (await kit.items(task_id))["narration_s01"]
    async with kit.engine.begin() as conn:
        await conn.execute(
            update(Item).where(Item.id == item.id).values(input={**item.input, "text": "a" * 200_000})
        )

    async def stopped() -> bool:
        return await _task_state(kit, task_id) == "error"

    await run_workers([kit.worker()], stopped, timeout=30)
    task = await kit.task(task_id)
    assert "narration_s01: gave up after 2 attempts: the step could not run" in task.error


PAID = ("asset", "clip", "narration", "sfx")


def _edited(scene: int, motion: str) -> Storyboard:
    data = storyboard(scenes=2).model_dump(mode="json")
    data["scenes"][scene - 1]["motion"] = motion
    return parse_storyboard(data)


async def _started(kit: Kit) -> list[str]:
    return [str(r["item"]) for r in fake_scripts.runs(kit.scripts) if r["outcome"] == "started"]


async def test_a_gate_waiting_on_a_later_pass_holds_every_paid_step_behind_it(kit: Kit) -> None:
    """Regression: after Cancelled, an edited scene and Queued, the storyboard gate waited again but
    clips whose composite and assets were done from the first pass started anyway (paid)."""
    kit.channels["nature"] = channel(Gates(storyboard=True, assets=False, final=False))
    fake_scripts.set_behaviour(kit.scripts, {"generate_video.py": ["hang"]})
    task_id = await kit.submit(storyboard(scenes=2))
    assert await approve_gate(kit.engine, task_id, "storyboard_gate", now())

    async def clips_running() -> bool:
        items = await kit.items(task_id)
        return all(items[f"clip_s0{i}"].state == "running" for i in (1, 2)) and all(
            items[f"{kind}_s0{i}"].state == "succeeded" for kind in ("narration", "sfx") for i in (1, 2)
        )

    await run_workers([kit.worker()], clips_running)
    await cancel_task(kit.engine, task_id, now())
    fake_scripts.set_behaviour(kit.scripts, {})
    before = len(await _started(kit))
    await kit.submit(_edited(1, "A fast pan across the reeds"))  # the operator's edit, then Queued
    items = await kit.items(task_id)
    assert items["storyboard_gate"].state == "ready"  # waiting for the operator
    waiting = [
        k for k, i in items.items() if i.kind in (*PAID, "composite", "assembly") and i.state == "ready"
    ]
    assert waiting == []
    deadline = asyncio.get_running_loop().time() + 2

    async def two_seconds() -> bool:
        return asyncio.get_running_loop().time() > deadline

    await run_workers([kit.worker()], two_seconds)
    assert (await _started(kit))[before:] == []  # nothing ran, nothing paid, while the gate waited
    assert await approve_gate(kit.engine, task_id, "storyboard_gate", now())

    async def done() -> bool:
        return await _task_state(kit, task_id) == "done"

    await run_workers([kit.worker()], done)
    assert sorted((await _started(kit))[before:]) == ["assembly", "clip_s01", "clip_s02"]


async def test_a_clip_cancelled_after_its_submit_is_collected_on_the_next_pass_not_bought_again(
    kit: Kit,
) -> None:
    """Regression: Cancelled then Queued with unchanged inputs gave the clip a new generation, so
    Kling got a new create (clip_s01-g1 after g0) though the g0 job was recorded."""
    fake_scripts.set_behaviour(kit.scripts, {"clip_s01": ["submit-sleep:3600", "ok"]})
    task_id = await kit.submit(storyboard(scenes=1))

    async def submitted() -> bool:
        return (await kit.items(task_id))["clip_s01"].provider_job_id is not None

    await run_workers([kit.worker()], submitted)
    first = (await kit.items(task_id))["clip_s01"]
    await cancel_task(kit.engine, task_id, now())
    await kit.submit(storyboard(scenes=1))  # Queued again, nothing changed
    again = (await kit.items(task_id))["clip_s01"]
    assert (again.generation, again.provider_job_id) == (first.generation, first.provider_job_id)

    async def done() -> bool:
        return await _task_state(kit, task_id) == "done"

    await run_workers([kit.worker()], done)
    runs = [
        r for r in fake_scripts.runs(kit.scripts) if r["item"] == "clip_s01" and r["outcome"] == "started"
    ]
    assert len(runs) == 2
    keys = {r["argv"][r["argv"].index("--external-id") + 1] for r in runs}
    assert len(keys) == 1  # one idempotency key: Kling finds the task it already has
    assert "--resume-job" in runs[1]["argv"] and first.provider_job_id in runs[1]["argv"]


async def test_a_composite_goes_before_another_videos_assembly_on_the_local_slots(kit: Kit) -> None:
    """A composite unblocks a clip (minutes of Kling time), an assembly unblocks nothing: at one
    priority, the local slots take composites first, whichever video came first (the makespan
    benchmark's timeline showed a composite waiting behind two assemblies)."""
    first = await kit.submit(storyboard(scenes=1), slug="p1")
    second = await kit.submit(storyboard(scenes=1), slug="p2")
    async with kit.engine.begin() as conn:
        await conn.execute(update(Item).values(state="blocked"))
        for task_id, key in ((first, "assembly"), (second, "composite_s01")):
            await conn.execute(
                update(Item).where(Item.task_id == task_id, Item.key == key).values(state="ready")
            )
    taken = (await claim(kit.engine, "local", "d", now(), 30.0, EXTENSIONS)).claimed
    assert taken is not None
    assert (taken.task_id, taken.key) == (second, "composite_s01")


async def test_a_beat_that_meets_a_completion_does_not_call_its_lease_lost(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression (a CI run under load): a beat that waited on the item's row while its completion
    committed finds the lease gone, and its answer can come before the completion's caller resumes.
    A script that has exited is not killed, nor its lease called lost."""
    task_id = await kit.submit(storyboard(scenes=1))
    await kit.prepare()
    worker = kit.worker()
    real_commit = worker.completions.commit
    beats_after_commit = 0

    async def commit_then_beat(done: Completion) -> Any:
        nonlocal beats_after_commit
        outcome = await real_commit(done)
        await worker._beat()  # the beat's answer handled first: the item still in self.running
        beats_after_commit += 1
        return outcome

    monkeypatch.setattr(worker.completions, "commit", commit_then_beat)

    async def done() -> bool:
        return await _task_state(kit, task_id) == "done"

    await run_workers([worker], done)
    assert beats_after_commit > 0
    lost = worker.metrics.registry.get_sample_value("nvd_leases_lost_total", {"reason": LEASE_TAKEN})
    assert not lost, f"{lost} leases called lost"


async def _claim_narrations(kit: Kit, count: int) -> list[Any]:
    """A video's first `count` narrations, claimed by one daemon, their outputs not yet written."""
    await kit.submit(storyboard(scenes=count))
    taken = (await claim(kit.engine, "elevenlabs", "d", now(), 30, EXTENSIONS, limit=count)).items
    assert [c.kind for c in taken] == ["narration"] * count
    return list(taken)


def _completion(kit: Kit, c: Any, write: bool = True) -> Completion:
    if write:
        (kit.workspace / c.attempt_output).parent.mkdir(parents=True, exist_ok=True)
        (kit.workspace / c.attempt_output).write_bytes(b"audio")
    return Completion(
        c, Success(c.attempt_output, 1_000, {}), final_path(c.kind, c.key, "nature", "p1"), now()
    )


async def test_scripts_that_end_together_are_committed_in_one_transaction(kit: Kit) -> None:
    taken = await _claim_narrations(kit, 3)
    queue = CompletionQueue(kit.engine, kit.workspace)
    outcomes = await asyncio.gather(*(queue.commit(_completion(kit, c)) for c in taken))
    assert outcomes == ["done", "done", "done"]
    assert queue.batches == 1
    items = {i.id: i for i in (await kit.items(taken[0].task_id)).values()}
    for c in taken:
        assert items[c.item_id].state == "succeeded"
        assert (kit.workspace / items[c.item_id].output_path).read_bytes() == b"audio"
    async with kit.engine.connect() as conn:
        booked = await conn.scalar(
            select(func.count()).where(
                Ledger.entry == "actual", Ledger.item_id.in_([c.item_id for c in taken])
            )
        )
    assert booked == 3
    # Sent again (the answer was lost), together: each is done already, none counted twice.
    again = await asyncio.gather(*(queue.commit(_completion(kit, c, write=False)) for c in taken))
    assert again == ["already", "already", "already"]


async def test_one_completion_that_cannot_be_committed_does_not_hold_back_the_others(kit: Kit) -> None:
    first, broken, last = await _claim_narrations(kit, 3)
    queue = CompletionQueue(kit.engine, kit.workspace)
    answers = await asyncio.gather(
        queue.commit(_completion(kit, first)),
        queue.commit(_completion(kit, broken, write=False)),  # its output is missing
        queue.commit(_completion(kit, last)),
        return_exceptions=True,
    )
    assert answers[0] == "done"
    assert isinstance(answers[1], FileNotFoundError)
    assert answers[2] == "done"
    items = {i.id: i for i in (await kit.items(first.task_id)).values()}
    assert [items[c.item_id].state for c in (first, broken, last)] == ["succeeded", "running", "succeeded"]


async def test_the_places_a_batch_frees_are_claimed_with_it_and_no_more(kit: Kit) -> None:
    await kit.submit(storyboard(scenes=6))
    held = (await claim(kit.engine, "elevenlabs", "d", now(), 30, EXTENSIONS, limit=5)).items
    assert len(held) == 5  # every slot of the provider (its limit is 5)
    took: list[ClaimResult | None] = []

    async def keep(asked: ClaimRequest, taken: ClaimResult | None) -> None:
        took.append(taken)

    # More places are asked than the batch frees (a daemon's count can be wrong: a lease was
    # swept meanwhile, another daemon claimed): the provider's slots still bound the claim.
    queue = CompletionQueue(
        kit.engine,
        kit.workspace,
        claim_after=lambda batch: ClaimRequest("elevenlabs", "d", now(), 30, EXTENSIONS, limit=8),
        on_claimed=keep,
    )
    outcomes = await asyncio.gather(*(queue.commit(_completion(kit, c)) for c in held[:3]))
    assert outcomes == ["done", "done", "done"]
    assert queue.batches == 1
    [taken] = took
    assert taken is not None
    assert len(taken.items) == 3
    assert not {c.item_id for c in taken.items} & {c.item_id for c in held}
    async with kit.engine.connect() as conn:
        held_slots = select(ProviderSlot.lease_token).where(
            ProviderSlot.provider == "elevenlabs", ProviderSlot.item_id.is_not(None)
        )
        slots = set((await conn.execute(held_slots)).scalars())
        running = {
            r.id: r.lease_token
            for r in await conn.execute(select(Item.id, Item.lease_token).where(Item.state == "running"))
        }
    mine = {c.item_id: c.lease_token for c in (*held[3:], *taken.items)}
    assert running == mine, "the two still held and the three taken run, each under its own lease"
    assert slots == set(mine.values())


async def test_items_a_batch_claims_as_the_daemon_stops_are_handed_back_not_started(kit: Kit) -> None:
    await kit.submit(storyboard(scenes=2))
    worker = kit.worker()
    worker.stop = asyncio.Event()
    worker.stop.set()  # SIGTERM came while the batch's transaction ran
    asked = ClaimRequest("elevenlabs", "test-daemon", now(), 30, EXTENSIONS, limit=2)
    taken = await claim(kit.engine, "elevenlabs", "test-daemon", now(), 30, EXTENSIONS, limit=2)
    assert len(taken.items) == 2
    await worker._claimed_after(asked, taken)  # what the completion queue calls after the commit
    assert worker.running == {}
    async with kit.engine.connect() as conn:
        states = {
            r.id: r.state
            for r in await conn.execute(
                select(Item.id, Item.state).where(Item.id.in_([c.item_id for c in taken.items]))
            )
        }
        held = await conn.scalar(
            select(func.count()).where(
                ProviderSlot.provider == "elevenlabs", ProviderSlot.item_id.is_not(None)
            )
        )
    assert set(states.values()) == {"ready"}
    assert held == 0
    assert fake_scripts.runs(kit.scripts) == []


class _FinishesAsTheStopComes:
    """Each script starts a paid call and finishes it, exit 0 with its output written, only once
    the worker has asked it to stop: its exit comes after the stop, as when a call answers at the
    end of the grace."""

    def __init__(self) -> None:
        self.runs = 0
        self.started = asyncio.Event()

    async def run(
        self, argv: Any, *, env: Any, timeout: float, on_event: Any, cancel: asyncio.Event, label: str
    ) -> ScriptOutcome:
        self.runs += 1
        self.started.set()
        await on_event({"event": "paying", "provider": "gemini"})
        await cancel.wait()
        output = Path(argv[list(argv).index("--output") + 1])
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(b"made")
        result = {"event": "result", "output": str(output), "cost_usd": 0.04, "meta": {}}
        return ScriptOutcome(exit_code=0, result=result)

    async def close(self) -> None:
        """Nothing runs apart from each run."""


async def test_a_paid_result_that_arrives_as_the_stop_comes_is_kept_not_handed_back(kit: Kit) -> None:
    task_id = await kit.submit(storyboard(scenes=1))
    worker = kit.worker(sigterm_grace_s=0.2, sigterm_paid_grace_s=0.3)
    runner = _FinishesAsTheStopComes()
    worker.runner = runner
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    await asyncio.wait_for(runner.started.wait(), 30)
    stop.set()
    await running
    items = await kit.items(task_id)
    ran = {k: i for k, i in items.items() if i.attempts}
    assert ran and runner.runs == len(ran)
    # Each run's paid result was committed; none was handed back to be bought again.
    assert {str(i.state) for i in ran.values()} == {"succeeded"}, {k: str(i.state) for k, i in ran.items()}
