from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.db.engine import make_engine
from tests.support import db as testdb
from tests.support.profiles import register as register_hypothesis_profiles
from tests.support.sandbox_proc import SandboxProcess

register_hypothesis_profiles()  # before the test modules are imported: their @settings build on it
# No HTTP listener unless a test asks for one (HTTP_PORT): the daemons tests start, many at once,
# would all take the default port. Subprocesses inherit it with the rest of the environment.
os.environ.setdefault("HTTP_PORT", "0")
_PG_STATE: dict[str, object] = {}


def _pg_ready() -> bool:
    """PostgreSQL is checked once; with CI set an unreachable server fails the run instead of skipping."""
    if "ok" not in _PG_STATE:
        ok = testdb.pg_reachable()
        if not ok and os.environ.get("CI"):
            pytest.fail(f"CI is set but PostgreSQL is unreachable at {testdb.PG_ADMIN_URL}", pytrace=False)
        if ok:
            testdb.make_pg_template()
        _PG_STATE["ok"] = ok
    return bool(_PG_STATE["ok"])


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return testdb.make_sqlite_template(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    """A migrated, empty database: every DB-facing test runs once on SQLite and once on PostgreSQL."""
    yield from _database(str(request.param), tmp_path, sqlite_template)


@pytest.fixture
def database(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    """Like db_url, for tests that choose the backend per case: parametrize `database` indirectly."""
    yield from _database(str(request.param), tmp_path, sqlite_template)


@pytest.fixture
def both_databases(tmp_path: Path, sqlite_template: Path) -> Iterator[tuple[str, str]]:
    """A migrated SQLite database and a migrated PostgreSQL one, for tests that compare the two."""
    for url in _database("postgres", tmp_path, sqlite_template):
        yield testdb.sqlite_url_from_template(sqlite_template, tmp_path), url


def _database(backend: str, tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield testdb.sqlite_url_from_template(sqlite_template, tmp_path)
        return
    if not _pg_ready():
        pytest.skip(f"PostgreSQL unreachable at {testdb.PG_ADMIN_URL}")
    url, name = testdb.create_pg_database()
    yield url
    testdb.drop_pg_database(name)


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(db_url)
    yield eng
    await eng.dispose()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every acceptance test runs real processes for tens of seconds: all are slow (make test-fast
    leaves them out)."""
    for item in items:
        if "acceptance" in item.path.parts:
            item.add_marker(pytest.mark.slow)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Under --dist loadgroup an xdist_group must really keep its tests on one worker: pytest-xdist
    3.8 stopped grouping, silently, on pytest 9.2 (xdist issue 1386; pyproject.toml pins pytest)."""
    if not os.environ.get("PYTEST_XDIST_WORKER") or session.config.getoption("dist", "no") != "loadgroup":
        return
    lost = [i.nodeid for i in session.items if i.get_closest_marker("xdist_group") and "@" not in i.nodeid]
    if lost:
        raise pytest.UsageError(f"--dist loadgroup does not group on this pytest/pytest-xdist: {lost[:3]}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _PG_STATE.get("ok"):
        testdb.drop_pg_template()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # Counted from the reports, which reach the controller under pytest-xdist too.
    skipped = sum(
        "PostgreSQL unreachable" in str(getattr(report, "longrepr", ""))
        for report in terminalreporter.stats.get("skipped", [])
    )
    if skipped:
        terminalreporter.write_sep(
            "!",
            f"{skipped} PostgreSQL tests SKIPPED: no server at {testdb.PG_ADMIN_URL} "
            "(set TEST_DATABASE_URL; with CI=true they fail instead)",
            red=True,
            bold=True,
        )


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """One sandbox process for the session; tests that inject faults clear them after themselves."""
    proc = SandboxProcess(tmp_path_factory.mktemp("sandbox"), "--notion-rate", "1000").start()
    yield proc
    proc.stop()


@pytest.fixture
def fresh_sandbox(tmp_path: Path) -> Iterator[SandboxProcess]:
    """A sandbox of its own, for tests that change its settings or restart it."""
    proc = SandboxProcess(tmp_path / "sandbox").start()
    yield proc
    proc.stop()


@pytest.fixture(autouse=True)
def _no_leftover_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "sandbox" in request.fixturenames:
        request.getfixturevalue("sandbox").clear_faults()
