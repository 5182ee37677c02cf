"""The async engine: SQLite (WAL, busy timeout, BEGIN IMMEDIATE) or PostgreSQL (asyncpg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
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
        # connection the server dropped fails its first statement instead; SQLAlchemy invalidates
        # it (and the rest of the pool) and db_retry repeats the call on a new one.
        pool_pre_ping=False,
        # Every write is a short transaction; asyncpg's statement cache serves the few hot shapes.
        connect_args={"server_settings": {"application_name": "notion-video-daemon"}},
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
