"""The hot path's direct driver access: the claim, the completion and the DAG step run their
statements (daemon/queries.py) on a pooled connection's own driver, asyncpg or aiosqlite, one round
trip or one thread hop each, without SQLAlchemy's statement building, compile, bind and result
processing. Everything else goes through SQLAlchemy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

_NAMED = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


class Sql:
    """One statement with :named parameters, written once, or once per dialect where their SQL
    differs; PostgreSQL's text gets asyncpg's $n placeholders (a name used twice is one $n)."""

    __slots__ = ("names", "pg", "pg_named", "sqlite")

    def __init__(self, text: str | None = None, *, pg: str | None = None, sqlite: str | None = None) -> None:
        pg_text, sqlite_text = pg or text, sqlite or text
        assert pg_text is not None and sqlite_text is not None, "a statement for each dialect"
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match[1] not in names:
                names.append(match[1])
            return f"${names.index(match[1]) + 1}"

        self.pg_named = pg_text
        self.pg = _NAMED.sub(number, pg_text)
        self.names = tuple(names)
        self.sqlite = sqlite_text

    def inlined(self, **ints: int) -> str:
        """PostgreSQL's text with integer values in place of their parameters: a statement that
        can go out with BEGIN in one message (a simple query takes no parameters)."""
        return _NAMED.sub(lambda m: str(int(ints[m[1]])), self.pg_named)

    def __repr__(self) -> str:
        return f"Sql({self.sqlite!r})"


class PgDriver:
    """A pooled connection's asyncpg driver. Errors come out as SQLAlchemy raises them: a dropped
    connection as an invalidated OperationalError (db_retry repeats the call), a constraint as an
    IntegrityError, any other server error as a DBAPIError."""

    __slots__ = ("raw",)

    dialect = "postgresql"

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    async def rows(self, q: Sql, **params: Any) -> list[Any]:
        """The statement's rows (asyncpg Records: by index or by name). A mapping goes in as JSON
        text (what SQLAlchemy's jsonb codec on these connections takes)."""
        return await self.fetch(q.pg, *[_pg_value(params[name]) for name in q.names])

    async def rows_many(self, q: Sql, params: Sequence[Mapping[str, Any]]) -> list[Any]:
        """The statement run once for each parameter set, the runs sent together in one round trip
        (each its own statement, with its own snapshot, in order); the row each returned (one each)."""
        args = [[_pg_value(p[name]) for name in q.names] for p in params]
        try:
            return list(await self.raw.fetchmany(q.pg, args))
        except Exception as exc:
            raise self._translate(exc, q.pg) from exc

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

    dialect = "sqlite"

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    async def rows(self, q: Sql, **params: Any) -> list[tuple[Any, ...]]:
        """The statement's rows, as tuples. Moments go in as the columns store them, booleans as
        0/1, mappings and lists as JSON text."""
        return await self.fetch(q.sqlite, {name: _sqlite_value(value) for name, value in params.items()})

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


Driver = PgDriver | SqliteDriver


async def driver_in(conn: AsyncConnection) -> Driver:
    """The driver under a SQLAlchemy connection, inside the transaction the connection has begun,
    so that the hot path's statements can join a transaction built with SQLAlchemy (a plan's
    expansion, an approval). SQLAlchemy's asyncpg adapter sends BEGIN with its first statement: if
    none has run yet, one does here, or the driver's statements would each commit on their own."""
    assert conn.in_transaction(), "driver_in needs a transaction (engine.begin())"
    raw: Any = (await conn.get_raw_connection()).driver_connection
    if conn.dialect.name == "sqlite":
        return SqliteDriver(raw)
    if not raw.is_in_transaction():
        await conn.exec_driver_sql("SELECT 1")
    return PgDriver(raw)


def _pg_value(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, Mapping) else value


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return sqlite_time(value)
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value)
    return value  # bool is an int to sqlite3 already


def sqlite_time(moment: datetime) -> str:
    """A moment as the UTC datetime columns store it on SQLite (SQLAlchemy's DATETIME format), so
    that comparisons between stored and bound values stay textual and exact."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


async def _invalidate(conn: AsyncConnection) -> None:
    with contextlib.suppress(Exception):
        await conn.invalidate()
