"""Migrations and models agree, on both databases, and the daemon refuses an unmigrated schema."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.db.engine import make_engine
from daemon.db.models import Base
from daemon.errors import SchemaNotMigrated
from daemon.migrate import alembic_config, check_schema, upgrade, upgrade_url


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
        with pytest.raises(SchemaNotMigrated, match=r"run `nvd migrate` first"):
            await check_schema(engine)
        await upgrade(engine)
        await check_schema(engine)
    finally:
        await engine.dispose()


ROWS = {
    "item": "SELECT count(*) FROM item",
    "item_edge": "SELECT count(*) FROM item_edge",
    "attempt": "SELECT count(*) FROM attempt",
}


def _counts(url: str) -> dict[str, int]:
    async def read() -> dict[str, int]:
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                return {table: int(await conn.scalar(text(sql)) or 0) for table, sql in ROWS.items()}
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_a_downgrade_and_upgrade_on_sqlite_keep_every_row(tmp_path: Path) -> None:
    """Batch mode rebuilds `item` by dropping it: with foreign keys on, the drop deleted every
    attempt and edge (ON DELETE CASCADE), and the clips then ran before their composites."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'daemon.db'}"

    async def prepare() -> None:
        engine = make_engine(url)
        try:
            await upgrade(engine)
            now = "2026-12-06 10:00:00.000000"
            async with engine.begin() as conn:
                await conn.execute(
                    text(
                        "INSERT INTO task (id, channel_id, project_slug, title, state, priority, pass_no, "
                        "created_at, updated_at) VALUES (1, 'nature', 'heron', 'Heron', 'active', 1, 1, "
                        ":now, :now)"
                    ),
                    {"now": now},
                )
                for item_id, key in ((1, "composite_s01"), (2, "clip_s01")):
                    await conn.execute(
                        text(
                            "INSERT INTO item (id, task_id, channel_id, kind, key, input, input_hash, state, "
                            "provider, priority, attempts, next_attempt_at, generation, cost_micros, "
                            "estimate_micros, created_at, updated_at) VALUES (:id, 1, 'nature', :kind, :key, "
                            "'{}', 'h', 'blocked', 'local', 1, 1, :now, 0, 0, 0, :now, :now)"
                        ),
                        {"id": item_id, "kind": key.split("_")[0], "key": key, "now": now},
                    )
                await conn.execute(text("INSERT INTO item_edge (item_id, depends_on) VALUES (2, 1)"))
                await conn.execute(
                    text(
                        "INSERT INTO attempt (item_id, number, idempotency_key, output_path, lease_token, "
                        "owner, outcome, started_at, cost_micros) VALUES (1, 1, 'k', 'out', 't', 'd', "
                        "'succeeded', :now, 0)"
                    ),
                    {"now": now},
                )
        finally:
            await engine.dispose()

    asyncio.run(prepare())
    before = _counts(url)
    assert before == {"item": 2, "item_edge": 1, "attempt": 1}
    command.downgrade(alembic_config(url), "0003")  # rebuilds item (0005, 0004) in batch mode
    assert _counts(url) == before
    asyncio.run(upgrade_url(url))
    assert _counts(url) == before


async def test_a_state_outside_the_list_is_refused_by_the_database(engine: AsyncEngine) -> None:
    """Every path that writes a state (SQLAlchemy, or the raw SQL of the claim and completion) meets
    the same CHECK constraints, on both databases."""
    from sqlalchemy.exc import IntegrityError

    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO task (id, channel_id, project_slug, title, state, priority, pass_no, "
                "created_at, updated_at) VALUES (1, 'nature', 'heron', '', 'active', 1, 1, '2026-12-06', "
                "'2026-12-06')"
            )
        )
    with pytest.raises(IntegrityError, match=r"ck_task_state|CHECK constraint"):
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE task SET state = 'finished' WHERE id = 1"))


def test_the_state_checks_migration_names_rows_it_does_not_know(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'daemon.db'}"
    command.upgrade(alembic_config(url), "0008")

    async def odd_row() -> None:
        engine = make_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text(
                        "INSERT INTO task (id, channel_id, project_slug, title, state, priority, pass_no, "
                        "created_at, updated_at) VALUES (1, 'nature', 'heron', '', 'archived', 1, 1, "
                        "'2026-12-06', '2026-12-06')"
                    )
                )
        finally:
            await engine.dispose()

    asyncio.run(odd_row())
    with pytest.raises(Exception, match=r"task\.state holds archived, which this version does not know"):
        command.upgrade(alembic_config(url), "head")

    async def revision() -> str:
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                return str(await conn.scalar(text("SELECT version_num FROM alembic_version")))
        finally:
            await engine.dispose()

    assert asyncio.run(revision()) == "0008"  # rolled back: the database is as it was
