"""Schema migrations through Alembic, and the start-up check that refuses an unmigrated schema."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.errors import SchemaNotMigrated
from daemon.settings import PROJECT_ROOT

MIGRATE_COMMAND = "python -m daemon migrate"
MIGRATE_LOCK = 0x6E7664  # the advisory lock `migrate` holds on PostgreSQL


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
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

    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Two `migrate` at once on a fresh server: the second waits for the first to commit,
            # then finds the schema at head (it failed on a duplicate alembic_version before).
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATE_LOCK})
        await conn.run_sync(_run)


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
