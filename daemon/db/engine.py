"""The async engine: SQLite (WAL, busy timeout, BEGIN IMMEDIATE) or PostgreSQL (asyncpg).

The claim and the completion are the hot path: they run hand-written statements on the pooled
connection's own driver (`pg_driver`: asyncpg, `sqlite_driver`: aiosqlite), one round trip or one
thread hop each, without SQLAlchemy's statement building, compile, bind and result processing;
everything else goes through SQLAlchemy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from daemon.errors import ConfigError

# Every transaction of the daemon lasts milliseconds. A daemon frozen (SIGSTOP, a stalled VM) inside
# one would hold its row locks for as long as it is frozen, and every other daemon's sweep, claim or
# intake would wait on them without end: the server ends such a transaction after 10 s, a lock is
# waited for 5 s at most (the caller's retry tries again), and no statement runs past 60 s.
PG_TIMEOUTS = {
    "idle_in_transaction_session_timeout": "10s",
    "lock_timeout": "5s",
    "statement_timeout": "60s",
}


def make_engine(url: str, *, pool_size: int = 5) -> AsyncEngine:
    """Builds the engine for a normalised async URL (see settings.normalise_database_url)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, parsed.database, pool_size)
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        # No pre-ping: it cost three round trips (BEGIN, a ping, ROLLBACK) on every checkout. A
        # connection the server dropped fails its first statement instead; it is invalidated
        # (with the rest of the pool, by SQLAlchemy) and db_retry repeats the call on a new one.
        pool_pre_ping=False,
        # Every write is a short transaction; asyncpg's statement cache serves the few hot shapes.
        # No JIT: compiling a plan took longer than running it (0.7 s for a 1 ms claim, whenever
        # the planner's estimate crossed jit_above_cost).
        # On a network that drops packets (a partition, a frozen host) nothing answers and nothing
        # fails: a connection attempt gives up after 10 s and a statement after 60 s, so the
        # heartbeat and the claim loop try again rather than hang for the length of the outage.
        connect_args={
            "server_settings": {"application_name": "notion-video-daemon", "jit": "off", **PG_TIMEOUTS},
            "timeout": 10,
            "command_timeout": 60,
        },
    )


def sqlite_unopenable(database: str | None, cause: object) -> ConfigError:
    """DATABASE_URL names a SQLite file that cannot be opened (a folder that cannot be made or
    written, no permission): the operator's error, with the fix."""
    return ConfigError(
        f"DATABASE_URL: cannot open the SQLite file {database} ({cause}); point it at a file in a "
        "writable folder (migrate creates it), or unset it for SQLite in WORKSPACE_DIR"
    )


def _sqlite_engine(url: str, database: str | None, pool_size: int) -> AsyncEngine:
    if database and database != ":memory:":
        try:
            Path(database).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Private from the start: SQLite gives its -wal and -shm files the database file's mode.
            os.close(os.open(database, os.O_CREAT | os.O_RDWR, 0o600))
        except OSError as exc:
            raise sqlite_unopenable(database, exc.strerror or str(exc)) from exc
    # A small pool: opening a connection per transaction (a thread, the file, the pragmas) cost
    # more than most transactions. Idle connections hold no snapshot: WAL checkpoints go on.
    engine = create_async_engine(
        url, pool_size=pool_size, max_overflow=pool_size, connect_args={"timeout": 30}
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN IMMEDIATE can be issued below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers are serialised anyway; taking the write lock up front avoids upgrade deadlocks.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def returned_id(value: object) -> int:
    """The integer id a RETURNING clause gave back."""
    assert isinstance(value, int), value
    return value
