"""The async engine: SQLite (WAL, busy timeout, BEGIN IMMEDIATE) or PostgreSQL (asyncpg).

On PostgreSQL the claim and the completion are the hot path: they run hand-written statements on
the pooled connection's asyncpg driver (`pg_driver`), one round trip each, without SQLAlchemy's
statement building, compile, bind and result processing; everything else goes through SQLAlchemy.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool


def make_engine(url: str, *, pool_size: int = 5) -> AsyncEngine:
    """Builds the engine for a normalised async URL (see settings.normalise_database_url)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, parsed.database)
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
        connect_args={"server_settings": {"application_name": "notion-video-daemon", "jit": "off"}},
    )


def _sqlite_engine(url: str, database: str | None) -> AsyncEngine:
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    # NullPool: one short-lived connection per transaction keeps WAL checkpoints moving and avoids
    # sharing a connection across event-loop tasks.
    engine = create_async_engine(url, poolclass=NullPool, connect_args={"timeout": 30})

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


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


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
        if self.raw.is_closed() or isinstance(exc, (OSError, ConnectionError)):
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


async def _invalidate(conn: AsyncConnection) -> None:
    with contextlib.suppress(Exception):
        await conn.invalidate()
