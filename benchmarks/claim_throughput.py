"""claim_throughput: no-op items through the real claim -> run -> complete path, against PgQueuer.

The daemon side is one `Worker` (the daemon's own loop: claim, a task per running item, fenced
completion) with 4 slots of a single provider, and an in-process `ScriptRunner` that writes the
output file and returns a result at once. One Worker with 4 slots is how a daemon runs (one worker
sized by the provider limits), and it is the closest shape to one QueueManager with 4 concurrent
jobs. Items are spread over tasks of 50 (a video's size) and three channels, so the fair order,
the per-task lock and the task's done-check do the work they do in production.

PgQueuer 1.6 drains the same number of no-op jobs on the same PostgreSQL server through its public
API: enqueue N, one QueueManager, batch size 1, at most 4 jobs at once, drain mode. PgQueuer's own
benchmark shape (4 QueueManagers, one connection each) is measured too, for reference.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from benchmarks.harness import Context, CpuMeter, database, pg_database, plain_dsn, table, target
from daemon import logs
from daemon.claim import ClaimPolicy, ensure_slots
from daemon.clock import SystemClock
from daemon.costs import ReportedCosts
from daemon.db.engine import make_engine
from daemon.db.models import Attempt, Item, Ledger, Task
from daemon.runner import EventHook, ScriptOutcome
from daemon.settings import Settings
from daemon.worker import Worker
from services.paths import attempt_output

NAME = "claim_throughput"
PROVIDER = "gemini"
SLOTS = 4
TASK_SIZE = 50
CHANNELS = ("big", "mid", "small")


class InstantRunner:
    """A ScriptRunner that does the script's job in-process: writes --output and reports success."""

    def __init__(self) -> None:
        self.runs = 0
        self.running = 0
        self.max_running = 0

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
        self.runs += 1
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            output = Path(argv[list(argv).index("--output") + 1])
            if not output.exists():  # written ahead for first attempts (write_outputs)
                output.write_bytes(b"noop")
            result = {"event": "result", "output": str(output), "cost_usd": 0.0, "provider": "bench"}
            return ScriptOutcome(exit_code=0, result=result)
        finally:
            self.running -= 1

    async def close(self) -> None:
        """Nothing to stop: the runs happen in this process."""


async def _seed(
    conn: AsyncConnection, count: int, prefix: str, task_state: str, item_values: dict[str, Any]
) -> list[Any]:
    """`count` no-op items in tasks of TASK_SIZE named `prefix`-N, round-robin over the channels;
    returns each item's (id, task_id, channel_id)."""
    now = datetime.now(UTC)
    first = await conn.scalar(select(func.coalesce(func.max(Task.id), 0)))
    tasks = max(1, -(-count // TASK_SIZE))
    await conn.execute(
        insert(Task),
        [
            {
                "channel_id": CHANNELS[t % len(CHANNELS)],
                "project_slug": f"{prefix}-{t}",
                "state": task_state,
                "created_at": now,
                "updated_at": now,
            }
            for t in range(tasks)
        ],
    )
    ids = [r[0] for r in await conn.execute(select(Task.id).where(Task.id > first).order_by(Task.id))]
    rows = [
        {
            "task_id": ids[i // TASK_SIZE],
            "channel_id": CHANNELS[(i // TASK_SIZE) % len(CHANNELS)],
            "kind": "asset",
            "key": f"asset_n{i}",
            "input": {"prompt": "noop", "aspect_ratio": "16:9"},
            "input_hash": f"h{i}",
            "provider": PROVIDER,
            "created_at": now,
            "updated_at": now,
            **item_values,
        }
        for i in range(count)
    ]
    for start in range(0, len(rows), 2000):
        await conn.execute(insert(Item), rows[start : start + 2000])
    return list(
        await conn.execute(
            select(Item.id, Item.task_id, Item.channel_id).where(Item.task_id.in_(ids)).order_by(Item.id)
        )
    )


async def seed_items(engine: AsyncEngine, count: int) -> None:
    """`count` ready no-op items in tasks of TASK_SIZE, round-robin over the channels."""
    past = datetime.now(UTC) - timedelta(seconds=1)
    async with engine.begin() as conn:
        await _seed(conn, count, "bench", "active", {"state": "ready", "next_attempt_at": past})


def write_outputs(workspace: Path, count: int) -> None:
    """What each no-op script writes (its output file), written before the clock starts. A real
    script writes its file in its own process; the stand-in runs on the daemon's event loop, where a
    file created on this VM's disk costs 0.15-0.7 ms of the loop's time per item, which no queue
    compared here spends (PgQueuer's no-op job writes nothing). The daemon's own work on the file
    (its check, and the move into place under the lease fence) is measured."""
    for i in range(count):
        task = i // TASK_SIZE
        channel = CHANNELS[task % len(CHANNELS)]
        output = workspace / attempt_output(channel, f"bench-{task}", f"asset_n{i}", 1, ".png")
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(b"noop")


async def seed_history(engine: AsyncEngine, count: int) -> None:
    """`count` finished items of done tasks, each with its attempt and its booked cost: the history
    a daemon's database holds after its first videos. Analysed with the backlog, the attempt and
    ledger tables then have statistics; analysed empty, the planner took them for empty tables and
    the completion's cached plans read them whole (a sequential scan of every attempt and ledger
    row per item, 1.6 million rows read in a 2,000-item run), which a running daemon's autovacuum
    corrects within its first minute."""
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        finished = {"state": "succeeded", "attempts": 1, "next_attempt_at": now, "finished_at": now}
        done = await _seed(conn, count, "done", "done", finished)
        attempts = [
            {
                "item_id": item_id,
                "number": 1,
                "idempotency_key": f"done-{item_id}",
                "output_path": f"attempts/done-{item_id}",
                "lease_token": f"done-{item_id}",
                "owner": "history",
                "outcome": "succeeded",
                "started_at": now,
                "finished_at": now,
                "cost_micros": 0,
            }
            for item_id, _, _ in done
        ]
        costs = [
            {
                "task_id": task_id,
                "item_id": item_id,
                "attempt_no": 1,
                "channel_id": channel_id,
                "entry": "actual",
                "amount_micros": 0,
                "day": now.date().isoformat(),
                "open": False,
                "created_at": now,
            }
            for item_id, task_id, channel_id in done
        ]
        for start in range(0, len(done), 2000):
            await conn.execute(insert(Attempt), attempts[start : start + 2000])
            await conn.execute(insert(Ledger), costs[start : start + 2000])


async def analyze(engine: AsyncEngine) -> None:
    """PostgreSQL's statistics for the seeded tables, as autovacuum gathers them within its first
    minute in production: without them the planner takes the seeded backlog for an empty table
    and reads the claim's channels from the wrong index (the whole ready backlog per claim)."""
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            await conn.execute(text("ANALYZE"))
            await conn.commit()


async def _succeeded(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).where(Item.state == "succeeded")) or 0)


async def daemon_drain(url: str, count: int, workspace: Path) -> dict[str, Any]:
    """Drains `count` no-op items through one Worker with SLOTS slots; items/s and checks."""
    engine = make_engine(url, pool_size=SLOTS)
    try:
        await seed_history(engine, count)
        await seed_items(engine, count)
        write_outputs(workspace, count)
        await ensure_slots(engine, {PROVIDER: SLOTS})
        await analyze(engine)
        settings = Settings(
            workspace_dir=workspace,
            daemon_id="bench-claim",
            lease_ttl_s=30.0,
            claim_poll_s=0.05,
        )
        runner = InstantRunner()
        worker = Worker(
            engine,
            settings,
            {PROVIDER: SLOTS},
            runner,
            SystemClock(),
            ReportedCosts(),
            policy=ClaimPolicy(weights=dict.fromkeys(CHANNELS, 1)),
        )
        stop = asyncio.Event()
        meter = CpuMeter(server=engine.dialect.name == "postgresql")
        started = time.perf_counter()
        loop = asyncio.create_task(worker.run(stop), name="bench-worker")
        try:
            # The DB is asked only once every item has run (the runner counts them in process):
            # a count every 50 ms over the whole run competed with the worker for its event loop
            # and its pool. Then every 5 ms until the last completions have committed.
            while runner.runs < count or await _succeeded(engine) < count:
                if loop.done():
                    loop.result()
                    raise RuntimeError("the worker stopped before the items were done")
                await asyncio.sleep(0.02 if runner.runs < count else 0.005)
            elapsed = time.perf_counter() - started
            cpu = meter.per_item_ms(count)
        finally:
            stop.set()
            await loop
        async with engine.connect() as conn:
            attempts = int(
                await conn.scalar(
                    select(func.sum(Item.attempts)).join(Task).where(Task.project_slug.like("bench-%"))
                )
                or 0
            )
    finally:
        await engine.dispose()
    return {
        "items": count,
        "seconds": round(elapsed, 3),
        "items_per_s": round(count / elapsed, 1),
        "runs": runner.runs,
        "attempts": attempts,
        "max_running": runner.max_running,
        "cpu_per_item": cpu,
    }


async def pgqueuer_drain(count: int, managers: int) -> dict[str, Any]:
    """PgQueuer 1.6 on a fresh database of the same server: enqueue `count`, then drain them with
    `managers` QueueManagers (batch size 1, at most SLOTS jobs at once per manager)."""
    from pgqueuer import AsyncpgDriver, QueueManager
    from pgqueuer.models import Job
    from pgqueuer.queries import Queries
    from pgqueuer.types import QueueExecutionMode

    async with pg_database("nvd_bench_pgq", migrate=False) as (url, _):
        dsn = plain_dsn(url)
        setup = await asyncpg.connect(dsn)
        try:
            queries = Queries(AsyncpgDriver(setup))
            await queries.install()
            for start in range(0, count, 5000):
                n = min(5000, count - start)
                await queries.enqueue(["noop"] * n, [None] * n, [0] * n)
        finally:
            await setup.close()

        done = 0
        connections = [await asyncpg.connect(dsn) for _ in range(managers)]
        try:
            qms = [QueueManager(Queries(AsyncpgDriver(c))) for c in connections]
            for qm in qms:

                @qm.entrypoint("noop")
                async def noop(job: Job) -> None:
                    nonlocal done
                    done += 1

            meter = CpuMeter()
            started = time.perf_counter()
            await asyncio.gather(
                *(
                    qm.run(
                        dequeue_timeout=timedelta(seconds=1),
                        batch_size=1,
                        mode=QueueExecutionMode.drain,
                        max_concurrent_tasks=SLOTS,
                        log_aggregation_interval=timedelta(0),
                    )
                    for qm in qms
                )
            )
            elapsed = time.perf_counter() - started
            cpu = meter.per_item_ms(done)
        finally:
            for c in connections:
                await c.close()
    return {
        "items": count,
        "done": done,
        "seconds": round(elapsed, 3),
        "items_per_s": round(done / elapsed, 1),
        "cpu_per_item": cpu,
    }


def _pgqueuer_available() -> bool:
    try:
        import pgqueuer
    except ImportError:
        return False
    return str(getattr(pgqueuer, "__version__", "")).startswith("1.6")


async def run(ctx: Context) -> dict[str, Any]:
    count = 150 if ctx.quick else 2000
    out: dict[str, Any] = {
        "items": count,
        "workers": f"one Worker, {SLOTS} slots of one provider, in-process runner",
        "task_size": TASK_SIZE,
    }
    out["sqlite"] = await _daemon(ctx, "sqlite", count)
    if ctx.pg_ok:
        out["postgres"] = await _daemon(ctx, "postgres", count)
        if _pgqueuer_available():
            out["pgqueuer"] = await pgqueuer_drain(count, managers=1)
            out["pgqueuer_4_managers"] = await pgqueuer_drain(count, managers=4)
            out["pgqueuer_shape"] = f"1 QueueManager, batch 1, max {SLOTS} concurrent, drain"
        else:
            out["pgqueuer"] = None
            ctx.notes.append("claim_throughput: PgQueuer 1.6 is not installed (make bench installs it)")
    pg = (out.get("postgres") or {}).get("items_per_s")
    ref = (out.get("pgqueuer") or {}).get("items_per_s")
    ref4 = (out.get("pgqueuer_4_managers") or {}).get("items_per_s")
    out["claim_ratio_vs_pgqueuer"] = round(pg / ref, 3) if pg and ref else None
    out["claim_ratio_vs_pgqueuer_4_managers"] = round(pg / ref4, 3) if pg and ref4 else None
    out["target_ratio"] = 1.2  # issue 12: 20 % faster than PgQueuer in the same run
    return out


async def _daemon(ctx: Context, kind: str, count: int) -> dict[str, Any]:
    """The drain, logging as the daemon does as a service (JSON lines, secrets redacted), to a file
    in the scratch folder rather than the terminal."""
    folder = ctx.folder(f"claim-{kind}")
    with (folder / "daemon.log").open("w") as log:
        logs.configure([], json_lines=True, stream=log)
        try:
            async with database(kind, ctx) as url:
                return await daemon_drain(url, count, folder / "workspace")
        finally:
            structlog.reset_defaults()


def render(result: dict[str, Any]) -> str:
    rows: list[list[object]] = []
    for key, label in (
        ("postgres", "daemon, PostgreSQL"),
        ("sqlite", "daemon, SQLite"),
        ("pgqueuer", "PgQueuer 1.6, 1 QueueManager"),
        ("pgqueuer_4_managers", "PgQueuer 1.6, 4 QueueManagers"),
    ):
        figures = result.get(key)
        if figures:
            cpu = figures.get("cpu_per_item") or {}
            rows.append(
                [
                    label,
                    figures["items"],
                    figures["seconds"],
                    figures["items_per_s"],
                    cpu.get("process_ms"),
                    cpu.get("server_ms"),
                ]
            )
    ratio = result.get("claim_ratio_vs_pgqueuer")
    text = table(
        f"claim_throughput: {result['items']} no-op items, {result['workers']}",
        ["path", "items", "seconds", "items/s", "process CPU ms/item", "server CPU ms/item"],
        rows,
    )
    met = None if ratio is None else ratio >= result["target_ratio"]
    return (
        f"{text}\nclaim_ratio_vs_pgqueuer = {ratio} (target >= {result['target_ratio']}: {target(met)}); "
        f"vs 4 QueueManagers: {result.get('claim_ratio_vs_pgqueuer_4_managers')}"
    )
