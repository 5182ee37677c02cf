"""Migrations and models agree, on both databases, and the daemon refuses an unmigrated schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.db.engine import make_engine
from daemon.db.models import Base
from daemon.errors import SchemaNotMigrated
from daemon.migrate import check_schema, upgrade


async def test_migrations_match_the_models(engine: AsyncEngine) -> None:
    def diff(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []


async def test_migrated_schema_passes_the_start_up_check(engine: AsyncEngine) -> None:
    await check_schema(engine)


async def test_an_empty_database_is_refused_with_the_command_to_run(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    try:
        with pytest.raises(SchemaNotMigrated, match=r"run `python -m daemon migrate` first"):
            await check_schema(engine)
        await upgrade(engine)
        await check_schema(engine)
    finally:
        await engine.dispose()
