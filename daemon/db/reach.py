"""The first round trip to the database, with start-up's failures said in one line each.

A missing database, a refused user or a SQLite file that cannot be opened are settings to fix
(ConfigError); a server that does not answer may come back (ServiceUnreachable). The message names
DATABASE_URL (or WORKSPACE_DIR) and the address, never the password.
"""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.db.engine import sqlite_unopenable
from daemon.errors import ConfigError, DaemonError, ServiceUnreachable
from daemon.migrate import MIGRATE_COMMAND
from daemon.settings import Settings


def check_exists(settings: Settings) -> None:
    """Refuses a SQLite file that is not there (ConfigError): only `migrate` creates one."""
    problem = missing_database(settings)
    if problem is not None:
        raise ConfigError(problem)


def missing_database(settings: Settings) -> str | None:
    """What to say when the settings name a SQLite file that does not exist, else None. Opened, it
    would be created empty (SQLite makes the file it opens): an operator's command run where its
    WORKSPACE_DIR is not the daemon's would report on that empty file, not the daemon's database."""
    url = make_url(settings.sqlalchemy_url)
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:") or Path(database).exists():
        return None
    if settings.database_url:
        return (
            f"DATABASE_URL: there is no SQLite file at {database}; correct DATABASE_URL, or run "
            f"`{MIGRATE_COMMAND}` to create the database there"
        )
    return (
        f"WORKSPACE_DIR: there is no database at {database}; set WORKSPACE_DIR (or DATABASE_URL) to "
        "the daemon's (on a server: `nvd --env-file` with the daemon's env file), or run "
        f"`{MIGRATE_COMMAND}` to create a new one there"
    )


async def check_reachable(engine: AsyncEngine) -> None:
    """One `SELECT 1`; an error start-up cannot get past becomes a one-line DaemonError."""
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        problem = database_problem(exc, engine.url)
        if problem is None:
            raise
        raise problem from exc


def database_problem(exc: BaseException, url: URL) -> DaemonError | None:
    """What a connection failure means for the operator, or None when it is not one of those."""
    if url.get_backend_name() == "sqlite":
        for cause in _chain(exc):
            if isinstance(cause, sqlite3.OperationalError):
                return sqlite_unopenable(url.database, cause)
            if isinstance(cause, sqlite3.DatabaseError):  # another file under the database's name
                return ConfigError(
                    f"DATABASE_URL: {url.database} is not a SQLite database ({cause}); point it at the "
                    "daemon's database, or at a new file (migrate creates it)"
                )
        return None
    where = f"PostgreSQL at {url.host or 'localhost'}:{url.port or 5432}"
    for cause in _chain(exc):
        if isinstance(cause, asyncpg.InvalidCatalogNameError):
            return ConfigError(
                f"DATABASE_URL: {where} has no database {url.database!r}; create it "
                f"(createdb {url.database}) or correct the name"
            )
        if isinstance(cause, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.InvalidPasswordError):
            return ConfigError(
                f"DATABASE_URL: {where} refused the user {url.username!r}; check the user and password"
            )
        if isinstance(cause, socket.gaierror):
            return ConfigError(f"DATABASE_URL: the host {url.host!r} is not known; correct the host name")
        if isinstance(cause, OSError | TimeoutError | asyncpg.CannotConnectNowError):
            reason = getattr(cause, "strerror", None) or type(cause).__name__
            return ServiceUnreachable(
                f"DATABASE_URL: cannot reach {where} ({reason}); start the server or correct the host "
                "and port"
            )
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what SQLAlchemy wrapped (`orig`) and their causes, each once."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [getattr(current, "orig", None), current.__cause__, current.__context__]
