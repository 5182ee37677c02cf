"""An upgrade from the first release never pays Kling twice for a clip (reliability finding 4): the
first release keyed a clip's Kling task per attempt; a clip whose submit landed but whose job id was
never recorded (the daemon killed in between) is collected after the upgrade, not submitted again
under the new per-generation key."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from PIL import Image
from sqlalchemy import bindparam, text

from daemon.claim import claim, ensure_slots
from daemon.commands import EXTENSIONS
from daemon.db.engine import make_engine
from daemon.db.types import UTCDateTime
from daemon.migrate import alembic_config
from tests.integration.test_scripts_support import run_script, script_env
from tests.support import db as testdb
from tests.support.sandbox_proc import SandboxProcess

OLD_KEY = "heron-clip_s01-a1-0123456789ab"  # as the first release named attempt 1's Kling task


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database (no schema at all), to be migrated step by step."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'daemon.db'}"
        return
    url, name = testdb.create_pg_database(empty=True)
    try:
        yield url
    finally:
        testdb.drop_pg_database(name)


def test_a_clip_submitted_under_a_first_release_key_is_collected_after_the_upgrade(
    sandbox: SandboxProcess, empty_database: str, tmp_path: Path
) -> None:
    url = empty_database
    command.upgrade(alembic_config(url), "0003")  # the first release's schema
    asyncio.run(_first_release_rows(url))
    frame = tmp_path / "frame.png"
    Image.new("RGB", (1280, 720), (70, 110, 90)).save(frame)
    env = script_env(sandbox)
    sandbox.configure(cheap_media=True)
    try:
        # The first release's attempt 1 submitted (and paid), then its daemon was killed before it
        # recorded the job id: the attempt was lost.
        first = run_script("generate_video", *_clip_args(frame, tmp_path / "a1.mp4", OLD_KEY), env=env)
        assert first.code == 0, first.stdout
        command.upgrade(alembic_config(url), "head")
        claimed = asyncio.run(_claim(url))
        assert claimed.resume == OLD_KEY
        assert claimed.idempotency_key != OLD_KEY
        args = [
            *_clip_args(frame, tmp_path / "a2.mp4", claimed.idempotency_key),
            "--resume-job",
            claimed.resume,
        ]
        second = run_script("generate_video", *args, env=env)
        assert second.result["meta"]["resumed"] is True
    finally:
        sandbox.configure(cheap_media=False)
    creates = [c for c in sandbox.calls("kling") if c["status"] == 200]
    assert [c["identity"] for c in creates if c["identity"] in (OLD_KEY, claimed.idempotency_key)] == [
        OLD_KEY
    ]


def _clip_args(frame: Path, output: Path, external_id: str) -> list[object]:
    return ["--image", frame, "--prompt", "Slow push in", "--duration", "5", "--external-id", external_id,
            "--output", output, "--poll-interval", "0.25"]  # fmt: skip


async def _first_release_rows(url: str) -> None:
    engine = make_engine(url)
    now = datetime(2026, 11, 20, 10, tzinfo=UTC)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                _at(
                    "INSERT INTO task (id, channel_id, project_slug, title, state, priority, pass_no, "
                    "created_at, updated_at) "
                    "VALUES (1, 'nature', 'heron', 'Heron', 'active', 1, 1, :now, :now)"
                ),
                {"now": now},
            )
            await conn.execute(
                _at(
                    "INSERT INTO item (id, task_id, channel_id, kind, key, input, input_hash, state, "
                    "provider, priority, attempts, next_attempt_at, cost_micros, estimate_micros, "
                    "created_at, updated_at) VALUES (1, 1, 'nature', 'clip', 'clip_s01', :input, 'h', "
                    "'ready', 'kling', 1, 1, :now, 0, 0, :now, :now)"
                ),
                {"now": now, "input": '{"prompt": "Slow push in", "duration": 5}'},
            )
            await conn.execute(
                _at(
                    "INSERT INTO attempt (item_id, number, idempotency_key, output_path, lease_token, owner, "
                    "outcome, started_at, cost_micros) VALUES (1, 1, :key, 'out', 't', 'd', 'lost', :now, 0)"
                ),
                {"now": now, "key": OLD_KEY},
            )
    finally:
        await engine.dispose()


def _at(sql: str) -> Any:
    """A statement whose :now is a UTC time, stored as the daemon's models store it."""
    return text(sql).bindparams(bindparam("now", type_=UTCDateTime()))


async def _claim(url: str) -> Any:
    engine = make_engine(url)
    try:
        await ensure_slots(engine, {"kling": 1})
        claimed = (await claim(engine, "kling", "d2", datetime.now(UTC), 30.0, EXTENSIONS)).claimed
        assert claimed is not None
        return claimed
    finally:
        await engine.dispose()
