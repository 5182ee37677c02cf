"""The database: reachable, and its schema at the code's latest revision. A SQLite file that does
not exist yet is said so, not made: `doctor` changes nothing."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.db.engine import make_engine
from daemon.db.reach import check_reachable, missing_database
from daemon.doctor.report import Result, fail, failed, ok, skip
from daemon.errors import ConfigError, DaemonError, SchemaNotMigrated
from daemon.migrate import MIGRATE_COMMAND, check_schema, head_revision
from daemon.settings import Settings


def where(settings: Settings) -> str:
    """The database as the operator knows it, without its password."""
    url = make_url(settings.sqlalchemy_url)
    if url.get_backend_name() == "sqlite":
        return f"SQLite {url.database}"
    return f"PostgreSQL {url.username or ''}@{url.host or 'localhost'}:{url.port or 5432}/{url.database}"


async def connect(settings: Settings) -> tuple[list[Result], AsyncEngine | None]:
    """The database's and the migrations' lines, and an engine on a ready database (else None)."""
    try:
        shown = where(settings)
    except ConfigError as exc:
        return [failed("database", exc), skip("migrations", "the database is not reachable")], None
    if missing_database(settings) is not None:
        setting = "DATABASE_URL" if settings.database_url else "WORKSPACE_DIR (or DATABASE_URL)"
        return [
            fail(
                "database",
                f"{shown} does not exist",
                f"set {setting} to the daemon's (on a server: `nvd --env-file` with its env file), "
                f"or run `{MIGRATE_COMMAND}` to create it",
            ),
            skip("migrations", "no database yet"),
        ], None
    engine = make_engine(settings.sqlalchemy_url)
    try:
        await check_reachable(engine)
    except DaemonError as exc:
        await engine.dispose()
        return [failed("database", exc), skip("migrations", "the database is not reachable")], None
    except BaseException:
        await engine.dispose()
        raise
    lines = [ok("database", f"{shown} answers")]
    try:
        await check_schema(engine)
    except SchemaNotMigrated as exc:
        await engine.dispose()
        detail = str(exc).split(";", 1)[0]
        return [*lines, fail("migrations", detail, f"run `{MIGRATE_COMMAND}`")], None
    except BaseException:
        await engine.dispose()
        raise
    return [*lines, ok("migrations", f"the schema is at {head_revision()}, the code's latest")], engine
