"""The claim takes the item the fair order names.

Random backlogs (channels, weights, priorities, paused tasks, retries not yet due, a paused backlog
longer than the fast claim's window) are claimed one item at a time; each claim must take the
item the rules name (computed here from the tables) and advance the channel's pass as the rules
say, and the worker's probe for due work must agree. Also: PostgreSQL's spelling of the
idempotency key is Python's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.claim import ClaimPolicy, claim, ensure_slots, idempotency_key, ready_providers
from daemon.commands import EXTENSIONS, final_path
from daemon.complete import Success, complete
from daemon.db.engine import make_engine
from daemon.db.models import Attempt, ChannelShare, Item, Task
from tests.support.db import ON_POSTGRES
from tests.support.engine_kit import now

PROVIDER = "gemini"


@dataclass
class Backlog:
    weights: dict[str, int]


async def _seed(engine: AsyncEngine, rng: random.Random, big_paused: bool) -> Backlog:
    """Tasks over four channels, items of mixed priority, some not due yet; with `big_paused`, the
    first task is paused with a backlog longer than the fast claim's window, ahead of everything
    else in its channel."""
    at = now()
    channels = ["alpha", "beta", "gamma", "delta"]
    weights = {c: rng.choice((1, 1, 2, 3)) for c in channels[:3]}  # delta has no weight: 1
    async with engine.begin() as conn:
        tasks: list[tuple[int, str]] = []
        for n in range(12):
            channel = channels[n % len(channels)]
            state = "paused" if (n == 0 and big_paused) or rng.random() < 0.15 else "active"
            task_id = (
                await conn.execute(
                    insert(Task)
                    .values(
                        channel_id=channel,
                        project_slug=f"t{n}",
                        state=state,
                        created_at=at,
                        updated_at=at,
                    )
                    .returning(Task.id)
                )
            ).scalar_one()
            tasks.append((task_id, channel))
        rows: list[dict[str, Any]] = []
        for task_id, channel in tasks:
            big = big_paused and task_id == tasks[0][0]
            count = 100 if big else rng.randint(2, 9)
            for k in range(count):
                due = rng.random() < 0.85
                rows.append(
                    {
                        "task_id": task_id,
                        "channel_id": channel,
                        "kind": "asset",
                        "key": f"asset_{k}",
                        "input": {"prompt": "x"},
                        "input_hash": f"h{task_id}-{k}",
                        "state": rng.choice(("ready", "ready", "ready", "blocked")),
                        "provider": PROVIDER,
                        "priority": 0 if big else rng.choice((0, 1, 1, 2)),
                        "next_attempt_at": at - timedelta(seconds=5) if due else at + timedelta(hours=1),
                        "created_at": at,
                        "updated_at": at,
                    }
                )
        await conn.execute(insert(Item), rows)
        # Two channels were served before (one of them well ahead), two never were.
        await conn.execute(
            insert(ChannelShare),
            [
                {"provider": PROVIDER, "channel_id": "alpha", "turn": rng.choice((0.0, 2.5))},
                {"provider": PROVIDER, "channel_id": "beta", "turn": rng.choice((1.0, 4.0))},
            ],
        )
    await ensure_slots(engine, {PROVIDER: 3})
    return Backlog(weights)


async def _expected(engine: AsyncEngine, at: Any) -> tuple[int | None, dict[str, float], float]:
    """The rules, read off the tables: (the item to claim, passes, the floor)."""
    async with engine.connect() as conn:
        active = {r.id for r in await conn.execute(select(Task.id).where(Task.state == "active"))}
        items = (
            await conn.execute(
                select(Item.id, Item.task_id, Item.channel_id, Item.priority).where(
                    Item.provider == PROVIDER, Item.state == "ready", Item.next_attempt_at <= at
                )
            )
        ).all()
        passes = {
            r.channel_id: r.turn
            for r in await conn.execute(
                select(ChannelShare.channel_id, ChannelShare.turn).where(ChannelShare.provider == PROVIDER)
            )
        }
    eligible = [i for i in items if i.task_id in active]
    with_work = {i.channel_id for i in eligible}
    floor = min((p for c, p in passes.items() if c in with_work), default=0.0)

    def effective(channel: str) -> float:
        return floor - 0.5 if channel not in passes else max(passes[channel], floor)

    best = min(eligible, key=lambda i: (effective(i.channel_id), i.priority, i.task_id, i.id), default=None)
    return (best.id if best else None), passes, floor


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
async def test_claims_take_the_item_the_fair_order_names(
    engine: AsyncEngine, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    big_paused = seed % 2 == 1
    backlog = await _seed(engine, rng, big_paused)
    policy = ClaimPolicy(weights=backlog.weights)
    running = []
    for step in range(45):
        at = now()
        want, passes, floor = await _expected(engine, at)
        # The worker's probe agrees with the rules: work is due for this provider, none for another.
        assert await ready_providers(engine, ["kling", PROVIDER], at) == ([] if want is None else [PROVIDER])
        c = (await claim(engine, PROVIDER, "d", at, 30, EXTENSIONS, policy)).claimed
        if c is None:
            # Only when the slots are full or nothing is eligible.
            assert want is None or len(running) == 3, (step, want)
        else:
            assert c.item_id == want, (step, seed)
            stride = 1.0 / backlog.weights.get(c.channel_id, 1)
            _, after, _ = await _expected(engine, at)
            old = passes.get(c.channel_id)
            assert after[c.channel_id] == (floor if old is None else max(old, floor)) + stride
            running.append(c)
        # Finish one of the running items now and then, so the slots turn over.
        if running and (len(running) == 3 or rng.random() < 0.5):
            done = running.pop(rng.randrange(len(running)))
            (tmp_path / done.attempt_output).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / done.attempt_output).write_bytes(b"x")
            target = final_path(done.kind, done.key, done.channel_id, done.project_slug)
            assert (
                await complete(
                    engine,
                    done,
                    Success(done.attempt_output, 1, {}),
                    workspace=tmp_path,
                    now=at,
                    final_path=target,
                )
                == "done"
            )
        # A paused task comes back now and then.
        if step % 15 == 14:
            async with engine.begin() as conn:
                await conn.execute(update(Task).where(Task.state == "paused").values(state="active"))

    # Ready items of paused tasks, and ready items not due yet, are no work for the probe.
    async with engine.begin() as conn:
        assert (await conn.execute(select(Item.id).where(Item.state == "ready"))).first() is not None
        await conn.execute(update(Task).values(state="paused"))
    assert await ready_providers(engine, [PROVIDER], now()) == []
    async with engine.begin() as conn:
        await conn.execute(update(Task).values(state="active"))
        later = now() + timedelta(hours=1)
        await conn.execute(update(Item).where(Item.state == "ready").values(next_attempt_at=later))
    assert await ready_providers(engine, [PROVIDER], now()) == []


@ON_POSTGRES
async def test_postgres_spells_the_idempotency_key_as_python_does(database: str) -> None:
    engine = make_engine(database)
    try:
        at = now()
        async with engine.begin() as conn:
            task_id = (
                await conn.execute(
                    insert(Task)
                    .values(
                        channel_id="nature",
                        project_slug="été-à-l'aube-ünïcode",
                        state="active",
                        created_at=at,
                        updated_at=at,
                    )
                    .returning(Task.id)
                )
            ).scalar_one()
            await conn.execute(
                insert(Item).values(
                    task_id=task_id,
                    channel_id="nature",
                    kind="clip",
                    key="clip_s01_çà",
                    input={},
                    input_hash="abc",
                    state="ready",
                    provider="kling",
                    next_attempt_at=at,
                    created_at=at,
                    updated_at=at,
                    generation=3,
                )
            )
        await ensure_slots(engine, {"kling": 1})
        c = (await claim(engine, "kling", "d", at, 30, EXTENSIONS)).claimed
        assert c is not None
        assert c.idempotency_key == idempotency_key("nature", "été-à-l'aube-ünïcode", "clip_s01_çà", "abc", 3)
        assert c.attempt_output == "channels/nature/projects/été-à-l'aube-ünïcode/attempts/clip_s01_çà-a1.mp4"
        async with engine.connect() as conn:
            stored = (await conn.execute(select(Attempt.idempotency_key, Attempt.output_path))).one()
        assert tuple(stored) == (c.idempotency_key, c.attempt_output)
    finally:
        await engine.dispose()
