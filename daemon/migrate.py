"""Schema migrations through Alembic, and the start-up check that refuses an unmigrated schema."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.db.engine import make_engine
from daemon.errors import DaemonError, SchemaNotMigrated
from daemon.paths import MIGRATIONS_DIR

MIGRATE_COMMAND = "nvd migrate"
MIGRATE_LOCK = 0x6E7664  # the advisory lock `migrate` holds on PostgreSQL


class MigrationError(DaemonError):
    """A migration that would break the data; it was rolled back."""


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = url
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()


async def upgrade(engine: AsyncEngine) -> None:
    """Runs every pending revision on the engine's database."""

    def _run(connection: Connection) -> None:
        config = alembic_config(str(engine.url))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

    await run_migration(engine, _run)


async def upgrade_url(url: str) -> None:
    """Runs every pending revision on the database at this (normalised async) URL."""
    engine = make_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()


async def run_migration(engine: AsyncEngine, migrate: Callable[[Connection], None]) -> None:
    """One transaction for a migration, up or down (`alembic` itself comes here through env.py).

    PostgreSQL: an advisory lock, so two `migrate` at once on a fresh server do not both create the
    schema (the second waits, then finds it at head). SQLite: foreign keys off for the transaction
    (PRAGMA foreign_keys is a no-op inside one): batch mode rebuilds a table by dropping it, and
    with foreign keys on the drop deletes every row that references it (ON DELETE CASCADE took the
    attempts and edges of every item). The keys are checked before the commit instead.
    """
    async with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        raw: Any = (await conn.get_raw_connection()).driver_connection if sqlite else None
        if sqlite:
            await raw.execute("PRAGMA foreign_keys=OFF")
        try:
            async with conn.begin():
                if not sqlite:
                    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATE_LOCK})
                await conn.run_sync(migrate)
                if sqlite:
                    broken = (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all()
                    if broken:
                        raise MigrationError(
                            f"the migration would leave {len(broken)} rows pointing at rows that do "
                            f"not exist (first: {tuple(broken[0])}); nothing was changed"
                        )
        finally:
            if sqlite:
                await raw.execute("PRAGMA foreign_keys=ON")


async def check_schema(engine: AsyncEngine) -> None:
    """Raises SchemaNotMigrated, naming the command to run, unless the schema is at head."""

    def _current(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as conn:
        current = await conn.run_sync(_current)
    head = head_revision()
    if current != head:
        state = "has no schema yet" if current is None else f"is at revision {current}, the code needs {head}"
        raise SchemaNotMigrated(f"the database {state}; run `{MIGRATE_COMMAND}` first")
