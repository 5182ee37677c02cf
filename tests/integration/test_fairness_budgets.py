"""Provider slots shared by channel weight, small channels never starved, budgets never crossed."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.budget import Budget, day_of, resume_fitting, wait_for_budget
from daemon.channel_watch import ChannelWatch, files_signature, with_channels
from daemon.channels import Budgets, load_channels
from daemon.claim import Claimed, ClaimPolicy, claim, ensure_slots
from daemon.commands import EXTENSIONS, final_path
from daemon.complete import Success, complete
from daemon.costs import load_pricing_file
from daemon.db.engine import make_engine
from daemon.db.models import ChannelShare, Ledger, Task
from daemon.paths import DEFAULT_PRICING_FILE
from daemon.tasks import Pipeline
from services.storyboard import parse_storyboard
from tests.support import db as testdb
from tests.support.engine_kit import channel, now


def _board(scenes: int) -> Any:
    return parse_storyboard(
        {
            "title": "Backlog",
            "atmosphere": "Dawn",
            "assets": [{"key": "place", "kind": "environment", "prompt": "A river"}],
            "scenes": [
                {
                    "key": f"s{i:02d}",
                    "frame": {"environment": "place"},
                    "motion": "Slow push in",
                    "narration": f"Scene {i} of a calm morning by the water.",
                    "sfx": "River ambience",
                }
                for i in range(1, scenes + 1)
            ],
        }
    )


async def _pipeline(engine: AsyncEngine, tmp_path: Path, *ids: str) -> Pipeline:
    channels = {i: channel(channel_id=i) for i in ids}
    return Pipeline(engine, channels, tmp_path, pricing=load_pricing_file(DEFAULT_PRICING_FILE))


async def _backlog(pipeline: Pipeline, channel_id: str, tasks: int, scenes: int = 50) -> None:
    for n in range(tasks):
        await pipeline.submit(
            channel_id, f"{channel_id}-{n}", {"title": "x"}, now(), storyboard=_board(scenes)
        )


async def _finish(engine: AsyncEngine, workspace: Path, c: Claimed, cost_micros: int = 1) -> None:
    (workspace / c.attempt_output).parent.mkdir(parents=True, exist_ok=True)
    (workspace / c.attempt_output).write_bytes(b"x")
    await complete(
        engine,
        c,
        Success(c.attempt_output, cost_micros, {}),
        workspace=workspace,
        now=now(),
        final_path=final_path(c.kind, c.key, c.channel_id, c.project_slug),
    )


@pytest.mark.slow
async def test_weights_two_to_one_share_slots_two_to_one(engine: AsyncEngine, tmp_path: Path) -> None:
    pipeline = await _pipeline(engine, tmp_path, "big", "small")
    await _backlog(pipeline, "big", 2)
    await _backlog(pipeline, "small", 2)
    await ensure_slots(engine, {"elevenlabs": 1})
    policy = ClaimPolicy(weights={"big": 2, "small": 1})
    got: Counter[str] = Counter()
    for _ in range(300):
        c = (await claim(engine, "elevenlabs", "d", now(), 30, EXTENSIONS, policy)).claimed
        assert c is not None
        got[c.channel_id] += 1
        await _finish(engine, tmp_path, c)
    assert got["big"] + got["small"] == 300
    assert abs(got["big"] / got["small"] - 2.0) <= 0.2, got


@pytest.mark.slow
async def test_a_huge_backlog_does_not_starve_small_channels(engine: AsyncEngine, tmp_path: Path) -> None:
    pipeline = await _pipeline(engine, tmp_path, "huge", "tiny1", "tiny2")
    await _backlog(pipeline, "huge", 18)  # 90 % of the narration and SFX items
    await _backlog(pipeline, "tiny1", 1)
    await _backlog(pipeline, "tiny2", 1)
    await ensure_slots(engine, {"elevenlabs": 3})
    policy = ClaimPolicy()
    first_turnover = [
        (await claim(engine, "elevenlabs", "d", now(), 30, EXTENSIONS, policy)).claimed for _ in range(3)
    ]
    assert {c.channel_id for c in first_turnover if c} == {"huge", "tiny1", "tiny2"}
    # Finishing and refilling the slots keeps the three channels taking turns.
    order: list[str] = []
    for c in first_turnover:
        assert c is not None
        await _finish(engine, tmp_path, c)
    for _ in range(30):
        c = (await claim(engine, "elevenlabs", "d", now(), 30, EXTENSIONS, policy)).claimed
        assert c is not None
        order.append(c.channel_id)
        await _finish(engine, tmp_path, c)
    shares = Counter(order)
    assert set(shares) == {"huge", "tiny1", "tiny2"}
    assert max(shares.values()) - min(shares.values()) <= 2, shares  # equal weights: equal turns


async def _one_world(url: str, tmp_path: Path) -> AsyncEngine:
    """Three channels' backlogs, each channel served once already (so each has a turn)."""
    engine = make_engine(url)
    pipeline = await _pipeline(engine, tmp_path, "big", "mid", "small")
    for channel_id in ("big", "mid", "small"):
        await _backlog(pipeline, channel_id, 2, scenes=4)
    await ensure_slots(engine, {"elevenlabs": 4})
    for _ in range(3):
        c = (await claim(engine, "elevenlabs", "d", now(), 30, EXTENSIONS, WEIGHTED)).claimed
        assert c is not None
        await _finish(engine, tmp_path, c)
    return engine


WEIGHTED = ClaimPolicy(weights={"big": 2, "mid": 1, "small": 1})


async def _turns(engine: AsyncEngine) -> dict[str, float]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(ChannelShare.channel_id, ChannelShare.turn))
        return {channel_id: turn for channel_id, turn in rows}


async def test_a_claim_of_several_takes_what_as_many_claims_of_one_take(
    db_url: str, sqlite_template: Path, tmp_path: Path
) -> None:
    """The worker claims an item for every free place at once: the items, their order and the turns
    left behind are those of one claim per place (a heavier channel's second item comes before a
    lighter channel's first when its turn says so)."""
    if db_url.startswith("sqlite"):
        (tmp_path / "other").mkdir()
        other_url, other_name = testdb.sqlite_url_from_template(sqlite_template, tmp_path / "other"), None
    else:
        other_url, other_name = await asyncio.to_thread(testdb.create_pg_database)
    singles = await _one_world(db_url, tmp_path / "singles")
    batch = await _one_world(other_url, tmp_path / "batch")
    try:
        assert await _turns(singles) == await _turns(batch) == {"big": 0.5, "mid": 1.5, "small": 1.5}
        one_by_one = []
        for _ in range(4):
            result = await claim(singles, "elevenlabs", "d", now(), 30, EXTENSIONS, WEIGHTED)
            assert result.claimed is not None
            one_by_one.append(result.claimed)
        at_once = (await claim(batch, "elevenlabs", "d", now(), 30, EXTENSIONS, WEIGHTED, limit=4)).items
        assert [(c.channel_id, c.project_slug, c.key) for c in at_once] == [
            (c.channel_id, c.project_slug, c.key) for c in one_by_one
        ]
        # Turns after the warm-up: big 0.5 (stride 0.5), mid and small 1.5; big's items come at 0.5,
        # 1.0 and 1.5 (its earlier task before theirs at a tie), then mid's first.
        assert [c.channel_id for c in at_once] == ["big", "big", "big", "mid"]
        assert await _turns(batch) == await _turns(singles)
        assert len({c.lease_token for c in at_once}) == 4, "each item its own lease"
        # The slots are full: a further claim takes nothing, however many it asks for.
        assert (await claim(batch, "elevenlabs", "d", now(), 30, EXTENSIONS, WEIGHTED, limit=3)).items == ()
    finally:
        await singles.dispose()
        await batch.dispose()
        if other_name is not None:
            await asyncio.to_thread(testdb.drop_pg_database, other_name)


async def _spent(engine: AsyncEngine, task_id: int | None = None) -> int:
    async with engine.connect() as conn:
        query = select(func.coalesce(func.sum(Ledger.amount_micros), 0)).where(
            (Ledger.entry == "actual") | ((Ledger.entry == "reservation") & Ledger.open.is_(True))
        )
        if task_id is not None:
            query = query.where(Ledger.task_id == task_id)
        return int(await conn.scalar(query) or 0)


async def test_two_daemons_claiming_at_once_never_cross_a_videos_budget(db_url: str, tmp_path: Path) -> None:
    engines = [make_engine(db_url), make_engine(db_url)]
    try:
        pipeline = await _pipeline(engines[0], tmp_path, "nature")
        # 20 narrations at once (each scene's bed waits for its narration), a cent each reserved.
        await _backlog(pipeline, "nature", 1, scenes=20)
        await ensure_slots(engines[0], {"elevenlabs": 50})
        budget = Budget(per_video_micros=100_000, per_day_micros=100_000_000)
        policy = ClaimPolicy(budgets={"nature": budget})
        over: list[tuple[int, str]] = []

        async def daemon(index: int) -> int:
            claimed = 0
            while True:
                result = await claim(engines[index], "elevenlabs", f"d{index}", now(), 30, EXTENSIONS, policy)
                over.extend(result.over_budget)
                if result.claimed is None:
                    return claimed
                claimed += 1

        claims = await asyncio.gather(daemon(0), daemon(1))
        assert sum(claims) > 0
        assert await _spent(engines[0]) <= budget.per_video_micros
        assert over
        message = over[0][1]
        assert "of its $0.10 budget" in message
        assert "Raise budgets.per_video_usd in config/channels/nature.yaml" in message
        assert "the video goes on by itself" in message
    finally:
        for e in engines:
            await e.dispose()


async def test_a_daily_budget_waits_for_the_next_day_then_work_resumes(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    pipeline = await _pipeline(engine, tmp_path, "nature")
    await _backlog(pipeline, "nature", 1, scenes=10)
    await ensure_slots(engine, {"elevenlabs": 50})
    budget = Budget(per_video_micros=100_000_000, per_day_micros=100_000)
    today = now()
    policy = ClaimPolicy(budgets={"nature": budget}, day_of=day_of("UTC"))
    while (result := await claim(engine, "elevenlabs", "d", today, 30, EXTENSIONS, policy)).claimed:
        await _finish(engine, tmp_path, result.claimed, cost_micros=20_000)  # each step costs $0.02
    assert result.over_budget
    task_id, why = result.over_budget[0]
    assert "Daily budget reached" in why
    await wait_for_budget(engine, task_id, why, today)
    day = today.date().isoformat()
    assert await resume_fitting(engine, policy.budgets, day, today) == 0
    tomorrow = today + timedelta(days=1)
    assert await resume_fitting(engine, policy.budgets, tomorrow.date().isoformat(), tomorrow) == 1
    async with engine.connect() as conn:
        assert await conn.scalar(select(Task.state)) == "active"
    assert (await claim(engine, "elevenlabs", "d", tomorrow, 30, EXTENSIONS, policy)).claimed is not None


class _Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def _record(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))

    info = warning = error = _record


def _write_channel(folder: Path, c: Any, **changes: Any) -> None:
    data = c.model_copy(update=changes).model_dump(mode="json", exclude_none=True)
    path = folder / f"{c.id}.yaml"
    path.write_text(yaml.safe_dump(data))
    _touch(path)


def _touch(path: Path) -> None:
    """A new mtime even within the file system's clock tick."""
    stamp = time.time_ns()
    os.utime(path, ns=(stamp, stamp))


async def test_a_budget_raised_in_the_channel_file_lets_the_waiting_video_go_on(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    folder = tmp_path / "channels"
    folder.mkdir()
    nature = channel(channel_id="nature").model_copy(
        update={"budgets": Budgets(per_video_usd=0.05, per_day_usd=100)}
    )
    _write_channel(folder, nature)
    seen = files_signature(folder)
    channels = load_channels(folder)
    pipeline = await _pipeline(engine, tmp_path, "nature")
    await _backlog(pipeline, "nature", 1, scenes=10)
    await ensure_slots(engine, {"elevenlabs": 50})
    policy = with_channels(ClaimPolicy(day_of=day_of("UTC")), channels)
    log = _Log()
    watch = ChannelWatch(folder, channels, policy, log, seen)
    while (result := await claim(engine, "elevenlabs", "d", now(), 30, EXTENSIONS, policy)).claimed:
        await _finish(engine, tmp_path, result.claimed, cost_micros=20_000)
    task_id, why = result.over_budget[0]
    await wait_for_budget(engine, task_id, why, now())
    assert "within seconds" in why and "restart" not in why
    assert watch.check() is False  # nothing changed yet

    # A broken file: the error names the field, the last good budget stays.
    (folder / "nature.yaml").write_text(
        (folder / "nature.yaml").read_text().replace("weight: 1", "weight: 0")
    )
    _touch(folder / "nature.yaml")
    assert watch.check() is False
    event, fields = log.events[-1]
    assert event == "channel_files_invalid_kept_previous" and "weight" in fields["reason"]
    assert watch.policy.budgets["nature"].per_video_micros == 50_000
    (folder / "nature.yaml").write_bytes(b"\xff\xfe not text")  # half-saved by an editor
    assert watch.check() is False
    assert log.events[-1][0] == "channel_files_invalid_kept_previous"
    assert watch.policy.budgets["nature"].per_video_micros == 50_000

    # The operator raises the budget and changes the gates: the budget applies now, the gates
    # need a restart and say so.
    _write_channel(folder, nature, budgets=Budgets(per_video_usd=5, per_day_usd=100), weight=3,
                   gates=nature.gates.model_copy(update={"final": not nature.gates.final}))  # fmt: skip
    assert watch.check() is True
    policy = watch.policy
    assert policy.budgets["nature"].per_video_micros == 5_000_000
    assert policy.weights["nature"] == 3
    assert ("channel_change_needs_restart", {"channel": "nature", "fields": ["gates"]}) in log.events
    day = now().date().isoformat()
    assert await resume_fitting(engine, policy.budgets, day, now()) == 1
    async with engine.connect() as conn:
        assert await conn.scalar(select(Task.state).where(Task.id == task_id)) == "active"
    assert (await claim(engine, "elevenlabs", "d", now(), 30, EXTENSIONS, policy)).claimed is not None
