"""The async engine: SQLite (WAL, busy timeout, BEGIN IMMEDIATE) or PostgreSQL (asyncpg).

The claim and the completion are the hot path: they run hand-written statements on the pooled
connection's own driver (`pg_driver`: asyncpg, `sqlite_driver`: aiosqlite), one round trip or one
thread hop each, without SQLAlchemy's statement building, compile, bind and result processing;
everything else goes through SQLAlchemy.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

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


def _sqlite_engine(url: str, database: str | None, pool_size: int) -> AsyncEngine:
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Private from the start: SQLite gives its -wal and -shm files the database file's mode.
        os.close(os.open(database, os.O_CREAT | os.O_RDWR, 0o600))
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


# The hot path's direct driver access ----------------------------------------------------------------
class PgDriver:
    """A pooled connection's asyncpg driver. Errors come out as SQLAlchemy raises them: a dropped
    connection as an invalidated OperationalError (db_retry repeats the call), a constraint as an
    IntegrityError, any other server error as a DBAPIError."""

    __slots__ = ("raw",)

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        try:
            return list(await self.raw.fetch(sql, *args))
        except Exception as exc:
            raise self._translate(exc, sql) from exc

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        try:
            return await self.raw.fetchrow(sql, *args)
        except Exception as exc:
            raise self._translate(exc, sql) from exc

    @contextlib.asynccontextmanager
    async def transaction(
        self, first: str | None = None, first_args: Sequence[Any] = ()
    ) -> AsyncIterator[None]:
        """BEGIN ... COMMIT (READ COMMITTED), rolled back when the block raises. `first` (a lock)
        is sent with the BEGIN, one round trip, when it has no parameters; else right after it."""
        begin = "BEGIN" if first is None or first_args else f"BEGIN; {first}"
        try:
            await self.raw.execute(begin)
            if first is not None and first_args:
                await self.raw.fetch(first, *first_args)
        except Exception as exc:
            if self.raw.is_in_transaction() and not self.raw.is_closed():
                with contextlib.suppress(Exception):
                    await self.raw.execute("ROLLBACK")
            raise self._translate(exc, begin) from exc
        try:
            yield
        except BaseException:
            if not self.raw.is_closed():
                with contextlib.suppress(Exception):
                    await self.raw.execute("ROLLBACK")
            raise
        try:
            await self.raw.execute("COMMIT")
        except Exception as exc:
            raise self._translate(exc, "COMMIT") from exc

    def _translate(self, exc: Exception, sql: str) -> Exception:
        if self.raw.is_closed() or isinstance(exc, OSError):  # ConnectionError included
            return OperationalError(sql, None, exc, connection_invalidated=True)
        if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
            return IntegrityError(sql, None, exc)
        if isinstance(exc, (asyncpg.PostgresError, asyncpg.InterfaceError)):
            return DBAPIError(sql, None, exc)
        return exc


@contextlib.asynccontextmanager
async def pg_driver(engine: AsyncEngine) -> AsyncIterator[PgDriver]:
    """One checkout of a pooled PostgreSQL connection, as its asyncpg driver. A connection that
    was dropped, or left inside a transaction (a cancelled rollback), is invalidated, never
    handed to the next caller."""
    async with engine.connect() as conn:
        raw: Any = (await conn.get_raw_connection()).driver_connection
        try:
            yield PgDriver(raw)
        finally:
            if raw.is_closed() or raw.is_in_transaction():
                await _invalidate(conn)


class SqliteDriver:
    """The pooled SQLite connection's aiosqlite driver: each statement is one hop to its thread
    (SQLAlchemy's adapter made several), rows come back as tuples. Errors come out as SQLAlchemy
    raises them: a busy database as an OperationalError (db_retry repeats the call), a constraint
    as an IntegrityError."""

    __slots__ = ("raw",)

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    async def fetch(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return list(await self.raw.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise _sqlite_error(exc, sql) from exc

    async def fetchrow(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> tuple[Any, ...] | None:
        rows = await self.fetch(sql, params)
        return rows[0] if rows else None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """BEGIN IMMEDIATE (the write lock, as every transaction here takes it) ... COMMIT."""
        await self.fetch("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):
                await self.raw.execute_fetchall("ROLLBACK")
            raise
        await self.fetch("COMMIT")


def _sqlite_error(exc: sqlite3.Error, sql: str) -> Exception:
    if isinstance(exc, sqlite3.OperationalError):
        return OperationalError(sql, None, exc)
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityError(sql, None, exc)
    return DBAPIError(sql, None, exc)


# One queue per engine (and event loop) for the hot path's write transactions: they wait their
# turn in order instead of colliding on SQLite's write lock, whose busy handler sleeps 1 to 100 ms
# between tries. Other transactions (and other processes) still meet them at the lock itself.
_WRITERS: weakref.WeakKeyDictionary[Any, dict[asyncio.AbstractEventLoop, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _writer_lock(engine: AsyncEngine) -> asyncio.Lock:
    locks = _WRITERS.setdefault(engine.sync_engine, {})
    loop = asyncio.get_running_loop()
    lock = locks.get(loop)
    if lock is None:
        for stale in [other for other in locks if other.is_closed()]:
            del locks[stale]
        lock = locks[loop] = asyncio.Lock()
    return lock


@contextlib.asynccontextmanager
async def sqlite_driver(engine: AsyncEngine) -> AsyncIterator[SqliteDriver]:
    """The pooled SQLite connection, as its aiosqlite driver, taken in turn with the hot path's
    other transactions; one left inside a transaction (a cancelled rollback) is invalidated."""
    async with _writer_lock(engine), engine.connect() as conn:
        db = SqliteDriver((await conn.get_raw_connection()).driver_connection)
        try:
            yield db
        finally:
            if db.raw.in_transaction:
                await _invalidate(conn)


def sqlite_time(moment: datetime) -> str:
    """A moment as the UTC datetime columns store it on SQLite (SQLAlchemy's DATETIME format), so
    that comparisons between stored and bound values stay textual and exact."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


async def _invalidate(conn: AsyncConnection) -> None:
    with contextlib.suppress(Exception):
        await conn.invalidate()
