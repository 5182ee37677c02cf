"""fairness: three channels sharing one provider, through the real claim path.

Noisy neighbour: channel `big` holds 90 % of the backlog and is older (FIFO would run all of it
first), `small1` and `small2` hold 5 % each. Reported: when each small channel's first item starts,
in slot turnovers (claims after the slots were first filled) and in seconds, and Jain's index of
the slots each channel got while all three still had ready work (equal demand: each wanted more
than its share). A second run gives the three channels equal backlogs and reports Jain's index
over the whole time all three had work.

One Worker with the provider's 4 slots; the in-process runner holds each item for a fixed time, so
a slot turnover is one item finishing and the next claim.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from benchmarks.harness import Context, database, table, target
from daemon.claim import ClaimPolicy, ensure_slots
from daemon.clock import SystemClock
from daemon.costs import ReportedCosts
from daemon.db.engine import make_engine
from daemon.db.models import Attempt, Item, Task
from daemon.runner import EventHook, ScriptOutcome
from daemon.settings import Settings
from daemon.worker import Worker

NAME = "fairness"
PROVIDER = "gemini"
SLOTS = 4
TASK_SIZE = 30


class TimedRunner:
    """Holds each item for `seconds`, then writes its output and reports success."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        timeout: float,
        on_event: EventHook,
        cancel: asyncio.Event,
        label: str,
    ) -> ScriptOutcome:
        await asyncio.sleep(self.seconds)
        output = Path(argv[list(argv).index("--output") + 1])
        output.write_bytes(b"fair")
        return ScriptOutcome(exit_code=0, result={"event": "result", "output": str(output), "cost_usd": 0.0})

    async def close(self) -> None:
        """Nothing to stop: the runs happen in this process."""


async def seed(engine: AsyncEngine, backlog: dict[str, int]) -> None:
    """Each channel's items in tasks of TASK_SIZE; channels in the given order, oldest first."""
    base = datetime.now(UTC) - timedelta(hours=1)
    n = 0
    async with engine.begin() as conn:
        for channel, count in backlog.items():
            for t in range(-(-count // TASK_SIZE)):
                stamp = base + timedelta(seconds=n)
                task_id = await conn.scalar(
                    insert(Task)
                    .values(
                        channel_id=channel,
                        project_slug=f"{channel}-{t}",
                        state="active",
                        created_at=stamp,
                        updated_at=stamp,
                    )
                    .returning(Task.id)
                )
                size = min(TASK_SIZE, count - t * TASK_SIZE)
                await conn.execute(
                    insert(Item),
                    [
                        {
                            "task_id": task_id,
                            "channel_id": channel,
                            "kind": "asset",
                            "key": f"asset_{channel}{t}x{i}",
                            "input": {"prompt": "fair", "aspect_ratio": "16:9"},
                            "input_hash": f"{channel}{t}x{i}",
                            "state": "ready",
                            "provider": PROVIDER,
                            "next_attempt_at": stamp,
                            "created_at": stamp,
                            "updated_at": stamp,
                        }
                        for i in range(size)
                    ],
                )
                n += 1


async def drain(url: str, backlog: dict[str, int], hold_s: float, workspace: Path) -> list[tuple[str, float]]:
    """Runs the backlog to the end; returns (channel, claim time) for every claim, in claim order."""
    engine = make_engine(url, pool_size=SLOTS)
    try:
        await seed(engine, backlog)
        await ensure_slots(engine, {PROVIDER: SLOTS})
        worker = Worker(
            engine,
            Settings(workspace_dir=workspace, daemon_id="bench-fair", lease_ttl_s=30.0, claim_poll_s=0.05),
            {PROVIDER: SLOTS},
            TimedRunner(hold_s),
            SystemClock(),
            ReportedCosts(),
            policy=ClaimPolicy(weights=dict.fromkeys(backlog, 1)),
        )
        total = sum(backlog.values())
        stop = asyncio.Event()
        loop = asyncio.create_task(worker.run(stop), name="bench-fair-worker")
        try:
            while True:
                async with engine.connect() as conn:
                    done = await conn.scalar(select(func.count()).where(Item.state == "succeeded"))
                if done == total:
                    break
                if loop.done():
                    loop.result()
                    raise RuntimeError("the worker stopped before the backlog was done")
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await loop
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(Item.channel_id, Attempt.started_at)
                    .join(Item, Item.id == Attempt.item_id)
                    .order_by(Attempt.started_at, Attempt.id)
                )
            ).all()
    finally:
        await engine.dispose()
    start = rows[0][1]
    return [(channel, (at - start).total_seconds()) for channel, at in rows]


def jain(shares: Sequence[float]) -> float:
    """Jain's fairness index: 1 when every share is equal, 1/n when one party gets everything."""
    total = sum(shares)
    squares = sum(s * s for s in shares)
    return (total * total) / (len(shares) * squares) if squares else 1.0


def contention_window(claims: list[tuple[str, float]], backlog: dict[str, int]) -> list[str]:
    """The claims made while every channel still had ready work (before any ran out)."""
    left = dict(backlog)
    window = []
    for channel, _ in claims:
        window.append(channel)
        left[channel] -= 1
        if left[channel] == 0:
            break
    return window


def first_starts(claims: list[tuple[str, float]], channels: Sequence[str]) -> dict[str, dict[str, float]]:
    out = {}
    for channel in channels:
        position = next(i for i, (c, _) in enumerate(claims) if c == channel)
        out[channel] = {
            "claim_no": position + 1,
            "slot_turnovers": max(0, position + 1 - SLOTS),
            "seconds": round(claims[position][1], 3),
        }
    return out


async def run(ctx: Context) -> dict[str, Any]:
    scale = 1 if ctx.quick else 5
    hold = 0.02 if ctx.quick else 0.05
    noisy = {"big": 54 * scale, "small1": 3 * scale, "small2": 3 * scale}
    equal = {"a": 20 * scale, "b": 20 * scale, "c": 20 * scale}
    kind = "postgres" if ctx.pg_ok else "sqlite"
    async with database(kind, ctx) as url:
        claims = await drain(url, noisy, hold, ctx.folder("fair-noisy"))
    async with database(kind, ctx) as url:
        equal_claims = await drain(url, equal, hold, ctx.folder("fair-equal"))
    window = contention_window(claims, noisy)
    equal_window = contention_window(equal_claims, equal)
    starts = first_starts(claims, ["small1", "small2"])
    return {
        "database": kind,
        "slots": SLOTS,
        "hold_s": hold,
        "backlog": noisy,
        "small_first_start": starts,
        "max_turnovers_before_small_start": max(s["slot_turnovers"] for s in starts.values()),
        "contention_claims": len(window),
        "contention_shares": {c: window.count(c) for c in noisy},
        "jain_contention": round(jain([window.count(c) for c in noisy]), 4),
        "equal_backlog": equal,
        "equal_contention_claims": len(equal_window),
        "equal_shares": {c: equal_window.count(c) for c in equal},
        "jain_equal": round(jain([equal_window.count(c) for c in equal]), 4),
        "jain_index": round(
            min(jain([window.count(c) for c in noisy]), jain([equal_window.count(c) for c in equal])), 4
        ),
        "target_jain": 0.9,
    }


def render(result: dict[str, Any]) -> str:
    rows: list[list[object]] = [
        [channel, s["claim_no"], s["slot_turnovers"], s["seconds"]]
        for channel, s in result["small_first_start"].items()
    ]
    text = table(
        f"fairness: 90/5/5 backlog {result['backlog']}, {result['slots']} slots, "
        f"{result['hold_s']} s per item ({result['database']})",
        ["small channel", "first claim #", "slot turnovers before", "seconds after first claim"],
        rows,
    )
    met = result["jain_index"] >= result["target_jain"]
    return (
        f"{text}\nwhile all had work: shares {result['contention_shares']} "
        f"-> Jain {result['jain_contention']}; "
        f"equal backlogs: shares {result['equal_shares']} -> Jain {result['jain_equal']}\n"
        f"jain_index = {result['jain_index']} (target >= 0.9: {target(met)})"
    )
