"""Test databases: a migrated SQLite file or a PostgreSQL database cloned from a migrated template."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path

import asyncpg
import pytest

from daemon.migrate import upgrade_url

PG_ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://root@127.0.0.1:5432/test")
# One template per test session: concurrent sessions (other checkouts, CI) never share one, so a
# session with another schema revision cannot hand its migrated template to this one.
TEMPLATE = f"nvd_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


def pg_reachable() -> bool:
    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(_asyncpg_dsn(PG_ADMIN_URL), timeout=3)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def make_sqlite_template(folder: Path) -> Path:
    path = folder / "template.db"
    asyncio.run(upgrade_url(f"sqlite+aiosqlite:///{path}"))
    return path


def sqlite_url_from_template(template: Path, folder: Path) -> str:
    path = folder / "daemon.db"
    shutil.copyfile(template, path)
    return f"sqlite+aiosqlite:///{path}"


def make_pg_template() -> None:
    async def run() -> None:
        admin = await asyncpg.connect(_asyncpg_dsn(PG_ADMIN_URL))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{TEMPLATE}"')
        finally:
            await admin.close()
        await upgrade_url(
            _with_database(PG_ADMIN_URL, TEMPLATE).replace("postgresql://", "postgresql+asyncpg://")
        )

    asyncio.run(run())


def drop_pg_template() -> None:
    async def run() -> None:
        admin = await asyncpg.connect(_asyncpg_dsn(PG_ADMIN_URL))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
        finally:
            await admin.close()

    asyncio.run(run())


def _admin(sql: str) -> None:
    async def run() -> None:
        admin = await asyncpg.connect(_asyncpg_dsn(PG_ADMIN_URL))
        try:
            await admin.execute(sql)
        finally:
            await admin.close()

    asyncio.run(run())


def create_pg_database(*, empty: bool = False) -> tuple[str, str]:
    """A fresh database cloned from the migrated template (or, `empty`, with no schema at all):
    (its async URL, its name)."""
    name = f"nvd_t_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"' + ("" if empty else f' TEMPLATE "{TEMPLATE}"'))
    url = _with_database(PG_ADMIN_URL, name).replace("postgresql://", "postgresql+asyncpg://")
    return url, name


def drop_pg_database(name: str) -> None:
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# Tests about one database's behaviour run on it alone: parametrize the `database` fixture (conftest).
ON_SQLITE = pytest.mark.parametrize("database", ["sqlite"], indirect=True)
ON_POSTGRES = pytest.mark.parametrize(
    "database", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
