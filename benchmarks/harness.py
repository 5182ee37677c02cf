"""What every benchmark shares: the run context, fresh databases, the sandbox, machine facts, tables."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from daemon.migrate import upgrade_url
from tests.support.sandbox_proc import SandboxProcess

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PG_ADMIN_URL = os.environ.get("BENCH_DATABASE_URL") or os.environ.get(
    "TEST_DATABASE_URL", "postgresql://root@127.0.0.1:5432/test"
)


@dataclass
class Context:
    """One run of the harness: its size, its scratch folder, and whether PostgreSQL is there."""

    quick: bool
    tmp: Path
    pg_ok: bool
    notes: list[str] = field(default_factory=list)

    def folder(self, name: str) -> Path:
        path = self.tmp / f"{name}-{uuid.uuid4().hex[:6]}"
        path.mkdir(parents=True)
        return path


# Databases -----------------------------------------------------------------------------------------
def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


def _with_database(url: str, name: str) -> str:
    return f"{url.rpartition('/')[0]}/{name}"


async def pg_reachable() -> bool:
    try:
        conn = await asyncpg.connect(_dsn(PG_ADMIN_URL), timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await conn.close()
    return True


async def pg_version() -> str | None:
    try:
        conn = await asyncpg.connect(_dsn(PG_ADMIN_URL), timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def pg_database(prefix: str = "nvd_bench", migrate: bool = True) -> AsyncIterator[tuple[str, str]]:
    """A fresh (migrated) PostgreSQL database for one benchmark: (its async URL, its name); dropped after."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(_dsn(PG_ADMIN_URL))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = _with_database(PG_ADMIN_URL, name).replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        if migrate:
            await upgrade_url(url)
        yield url, name
    finally:
        admin = await asyncpg.connect(_dsn(PG_ADMIN_URL))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@contextlib.asynccontextmanager
async def sqlite_database(folder: Path) -> AsyncIterator[str]:
    url = f"sqlite+aiosqlite:///{folder / 'daemon.db'}"
    await upgrade_url(url)
    yield url


@contextlib.asynccontextmanager
async def database(kind: str, ctx: Context) -> AsyncIterator[str]:
    """A fresh migrated database of `kind` ("postgres" or "sqlite")."""
    if kind == "postgres":
        async with pg_database() as (url, _):
            yield url
    else:
        async with sqlite_database(ctx.folder("sqlite")) as url:
            yield url


def plain_dsn(url: str) -> str:
    """The asyncpg DSN of an async SQLAlchemy PostgreSQL URL."""
    return _dsn(url)


# The sandbox ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def sandbox(folder: Path, *args: str) -> Iterator[SandboxProcess]:
    """The sandbox as a process (cheap media: the benchmarks measure scheduling, not FFmpeg)."""
    proc = SandboxProcess(folder, "--cheap-media", *args).start()
    try:
        yield proc
    finally:
        proc.stop()


# Machine facts -------------------------------------------------------------------------------------
def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _git(*args: str) -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    done = subprocess.run([git, *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


async def machine_facts() -> dict[str, Any]:
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "postgresql": await pg_version(),
        "sqlite": __import__("sqlite3").sqlite_version,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": _git("rev-parse", "--short=12", "HEAD"),
        "git_dirty": bool(dirty),
        "argv": sys.argv[1:],
    }


# Output --------------------------------------------------------------------------------------------
def _server_cpu_s() -> float | None:
    """CPU seconds the local PostgreSQL server's processes have used, the ended backends included
    (the postmaster counts its reaped children); None when none can be read."""
    total, seen = 0.0, False
    for proc in psutil.process_iter(["name"]):
        if not str(proc.info["name"] or "").startswith("postgres"):
            continue
        with contextlib.suppress(psutil.Error):
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
            seen = True
    return total if seen else None


class CpuMeter:
    """CPU spent during a measured stretch, by this process and by the local PostgreSQL server: on
    a shared VM whose speed moves between runs, CPU per item compares engines more steadily than
    wall time does."""

    def __init__(self, server: bool = True) -> None:
        self._self = psutil.Process()
        self._server = server  # False: no PostgreSQL server takes part (SQLite)
        self._start = self._now()

    def _now(self) -> tuple[float, float | None]:
        t = self._self.cpu_times()
        return t.user + t.system, _server_cpu_s() if self._server else None

    def per_item_ms(self, items: int) -> dict[str, float | None]:
        """{"process_ms": ..., "server_ms": ...}: CPU milliseconds per item since the meter started."""
        own, server = self._now()
        server_ms = None
        if server is not None and self._start[1] is not None:
            server_ms = round((server - self._start[1]) / items * 1000, 3)
        return {"process_ms": round((own - self._start[0]) / items * 1000, 3), "server_ms": server_ms}


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in header]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )

    rule = "-" * len(line(cells[0]))
    return "\n".join([f"\n{title}", rule, line(cells[0]), rule, *(line(r) for r in cells[1:]), rule])


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3f}"
    return str(value)


def target(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "NOT met")


def log_to_file(path: Path) -> None:
    """The daemon's own structlog set-up (JSON lines, redaction), written to a file, not the terminal."""
    import structlog

    from daemon import logs

    logs.configure([])
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=path.open("a")))
