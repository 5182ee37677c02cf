"""The short chaos run inside `make test`, on PostgreSQL, the production database (`make chaos` runs
the full one on SQLite and on PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from tests.support.chaos_run import run_chaos
from tests.support.db import ON_POSTGRES


@ON_POSTGRES
async def test_a_short_chaos_run_loses_nothing_and_pays_no_clip_twice(database: str, tmp_path: Path) -> None:
    report = await run_chaos(tmp_path, database, kills=6, seed_value=7, scenes=2)
    assert report.kills >= 1
    assert report.problems == []
    assert report.unexplained == []
    assert len(report.videos) == 3
    assert sum(report.landed.values()) >= report.kills
