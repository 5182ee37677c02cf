"""idle: what an idle daemon costs: RSS, CPU and database queries per second.

A Notion channel is configured against the sandbox (seeded with one Draft page), nothing is queued,
and every setting is the production default (claim poll 1 s, Notion poll 4 s when idle, lease TTL 30 s).

1. `python -m daemon run` as a process: RSS and CPU % from psutil over the window, and the
   transactions and rows read per second on its PostgreSQL database from pg_stat_database
   (xact_commit + xact_rollback, tup_returned deltas; pg_stat_statements is not assumed). PostgreSQL
   backends report their counters at most once a second, and an idle one within ~10 s, so these
   are accurate to a few transactions over the window.
2. The same daemon in-process (`App.run`) with SQLAlchemy event hooks: every SQL statement, every
   transaction begun and every pool checkout (each one a pre-ping round trip) counted and grouped by
   statement shape, so the report says exactly which loop costs what.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import yaml
from sqlalchemy import event

from benchmarks.harness import PG_ADMIN_URL, Context, database, plain_dsn, sandbox, table, target
from daemon.app import App
from daemon.paths import DEFAULT_PROVIDERS_FILE
from tests.support.daemon_proc import DaemonProcess
from tests.support.notion_kit import seed
from tests.support.stack import daemon_env, settings_for

NAME = "idle"
_TABLE = re.compile(r"\b(?:FROM|UPDATE|INTO)\s+\"?(\w+)", re.IGNORECASE)


def statement_shape(sql: str) -> str:
    """`SELECT provider_slot`, `UPDATE leader`, ...: the verb and the first table of a statement."""
    verb = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else "?"
    found = _TABLE.search(sql)
    return f"{verb} {found.group(1) if found else ''}".strip()


async def _pg_counters(database_name: str) -> tuple[int, int]:
    conn = await asyncpg.connect(plain_dsn(PG_ADMIN_URL))
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        row = await conn.fetchrow(
            "SELECT xact_commit + xact_rollback AS xacts, tup_returned "
            "FROM pg_stat_database WHERE datname = $1",
            database_name,
        )
    finally:
        await conn.close()
    return (int(row["xacts"]), int(row["tup_returned"])) if row else (0, 0)


async def as_process(ctx: Context, env: dict[str, str], window: float, db_name: str | None) -> dict[str, Any]:
    log = ctx.folder("idle-proc") / "daemon.log"
    daemon = DaemonProcess(env, log, "bench-idle").start("run")
    try:
        deadline = time.monotonic() + 60
        while not any(e.get("event") == "daemon_started" for e in daemon.events()):
            if daemon.proc is not None and daemon.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited at start-up; see {log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the daemon did not start within 60 s; see {log}")
            await asyncio.sleep(0.1)
        await asyncio.sleep(3.0)  # leadership, the first poll, the first outbox run
        assert daemon.proc is not None
        proc = psutil.Process(daemon.proc.pid)
        pg_before = await _pg_counters(db_name) if db_name else None
        cpu_before = sum(proc.cpu_times()[:2])
        started = time.monotonic()
        rss: list[int] = []
        while time.monotonic() - started < window:
            rss.append(proc.memory_info().rss)
            await asyncio.sleep(min(1.0, window / 4))
        elapsed = time.monotonic() - started
        cpu = sum(proc.cpu_times()[:2]) - cpu_before
        rss.append(proc.memory_info().rss)
        pg_after = await _pg_counters(db_name) if db_name else None
        daemon.signal()
        exit_code = daemon.wait(30)
    finally:
        daemon.stop()
    out: dict[str, Any] = {
        "window_s": round(elapsed, 1),
        "rss_mb": round(max(rss) / 2**20, 1),
        "rss_mb_median": round(statistics.median(rss) / 2**20, 1),
        "cpu_percent": round(100 * cpu / elapsed, 2),
        "sigterm_exit_code": exit_code,
    }
    if pg_before and pg_after:
        out["pg_xacts_per_s"] = round((pg_after[0] - pg_before[0]) / elapsed, 2)
        out["pg_rows_read_per_s"] = round((pg_after[1] - pg_before[1]) / elapsed, 1)
    return out


async def in_process(settings: Any, window: float) -> dict[str, Any]:
    app = await App.build(settings)
    statements: Counter[str] = Counter()
    counts = {"transactions": 0, "checkouts": 0}
    measuring = False

    def on_statement(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if measuring:
            statements[statement_shape(statement)] += 1

    def on_begin(conn: Any) -> None:
        if measuring:
            counts["transactions"] += 1

    def on_checkout(*args: Any) -> None:
        if measuring:
            counts["checkouts"] += 1

    event.listen(app.engine.sync_engine, "before_cursor_execute", on_statement)
    event.listen(app.engine.sync_engine, "begin", on_begin)
    event.listen(app.engine.sync_engine.pool, "checkout", on_checkout)
    stop = asyncio.Event()
    daemon = asyncio.create_task(app.run(stop), name="bench-idle-daemon")
    try:
        await asyncio.sleep(3.0)
        measuring = True
        started = time.monotonic()
        await asyncio.sleep(window)
        elapsed = time.monotonic() - started
        measuring = False
    finally:
        stop.set()
        await daemon
        await app.close()
    total = sum(statements.values())
    return {
        "window_s": round(elapsed, 1),
        "statements_per_s": round(total / elapsed, 2),
        "transactions_per_s": round(counts["transactions"] / elapsed, 2),
        "pool_checkouts_per_s": round(counts["checkouts"] / elapsed, 2),
        "by_statement_per_s": {
            shape: round(n / elapsed, 2) for shape, n in statements.most_common() if n / elapsed >= 0.01
        },
    }


async def run(ctx: Context) -> dict[str, Any]:
    window = 3.0 if ctx.quick else 40.0
    kind = "postgres" if ctx.pg_ok else "sqlite"
    with sandbox(ctx.folder("sandbox-idle")) as box:
        seeded = seed(box, "idle", 1)  # one Draft page: nothing to do
        channels = ctx.folder("idle-channels")
        config = yaml.safe_load(Path(seeded["channel_file"]).read_text())
        (channels / "idle.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        providers = {"PROVIDERS_FILE": str(DEFAULT_PROVIDERS_FILE)}
        async with database(kind, ctx) as url:
            env = {**daemon_env(box, ctx.folder("idle-ws"), channels, url), **providers}
            db_name = url.rsplit("/", 1)[1] if kind == "postgres" else None
            process = await as_process(ctx, env, window, db_name)
        async with database(kind, ctx) as url:
            settings = settings_for(box, ctx.folder("idle-ws2"), channels, url, daemon_id="bench-idle-inproc")
            inproc = await in_process(settings, window)
    return {
        "database": kind,
        "process": process,
        "in_process": inproc,
        "rss_mb": process["rss_mb"],
        "cpu_percent": process["cpu_percent"],
        "db_queries_per_s": inproc["statements_per_s"],
        "targets": {"rss_mb": 120, "cpu_percent": 1.0, "db_queries_per_s": 1.0},
    }


def render(result: dict[str, Any]) -> str:
    p, i, t = result["process"], result["in_process"], result["targets"]
    rows: list[list[object]] = [
        ["RSS (MB, max)", p["rss_mb"], f"< {t['rss_mb']}", target(p["rss_mb"] < t["rss_mb"])],
        ["CPU %", p["cpu_percent"], f"< {t['cpu_percent']}", target(p["cpu_percent"] < t["cpu_percent"])],
        [
            "SQL statements/s (in-process hook)",
            i["statements_per_s"],
            f"<= {t['db_queries_per_s']}",
            target(i["statements_per_s"] <= t["db_queries_per_s"]),
        ],
        ["transactions/s (in-process hook)", i["transactions_per_s"], "", ""],
        ["pool checkouts (pre-ping)/s", i["pool_checkouts_per_s"], "", ""],
        ["PostgreSQL xacts/s (pg_stat_database)", p.get("pg_xacts_per_s"), "", ""],
        ["PostgreSQL rows read/s", p.get("pg_rows_read_per_s"), "", ""],
    ]
    text = table(
        f"idle: `python -m daemon run`, one Notion channel, nothing queued, {p['window_s']} s "
        f"({result['database']})",
        ["figure", "value", "target", ""],
        rows,
    )
    shapes = ", ".join(f"{k} {v}/s" for k, v in i["by_statement_per_s"].items())
    return f"{text}\nstatements by shape: {shapes}"
