"""Checkouts are not pinged: a connection the server dropped fails its first statement, is
invalidated, and db_retry repeats the call on a new one."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import insert, update
from sqlalchemy.exc import DBAPIError

from daemon.claim import claim, ensure_slots
from daemon.commands import EXTENSIONS, final_path
from daemon.complete import Success, complete
from daemon.db.engine import make_engine
from daemon.db.models import Item, Task
from daemon.lease import sweep_expired
from daemon.retry import db_retry
from tests.support import db as testdb
from tests.support.db import ON_POSTGRES
from tests.support.engine_kit import now

PROVIDER = "gemini"


@ON_POSTGRES
async def test_connections_the_server_dropped_are_replaced_on_the_retry(
    database: str, tmp_path: Path
) -> None:
    name = database.rpartition("/")[2]
    engine = make_engine(database, pool_size=2)
    try:
        at = now()
        async with engine.begin() as conn:
            task_id = (
                await conn.execute(
                    insert(Task)
                    .values(
                        channel_id="nature", project_slug="p", state="active", created_at=at, updated_at=at
                    )
                    .returning(Task.id)
                )
            ).scalar_one()
            await conn.execute(
                insert(Item),
                [
                    {
                        "task_id": task_id,
                        "channel_id": "nature",
                        "kind": "asset",
                        "key": f"asset_{k}",
                        "input": {},
                        "input_hash": "h",
                        "state": "ready",
                        "provider": PROVIDER,
                        "next_attempt_at": at,
                        "created_at": at,
                        "updated_at": at,
                    }
                    for k in range(3)
                ],
            )
        await ensure_slots(engine, {PROVIDER: 3})
        first = (await claim(engine, PROVIDER, "d", at, 30, EXTENSIONS)).claimed
        assert first is not None
        admin = await asyncpg.connect(testdb._asyncpg_dsn(testdb.PG_ADMIN_URL))
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1", name
            )
        finally:
            await admin.close()
        assert killed >= 1
        second = (await db_retry(claim)(engine, PROVIDER, "d", at, 30, EXTENSIONS)).claimed
        assert second is not None and second.item_id != first.item_id
        (tmp_path / first.attempt_output).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / first.attempt_output).write_bytes(b"x")
        target = final_path(first.kind, first.key, "nature", "p")
        done = await db_retry(complete)(
            engine, first, Success(first.attempt_output, 1, {}), workspace=tmp_path, now=at, final_path=target
        )
        assert done == "done"
    finally:
        await engine.dispose()


@ON_POSTGRES
@pytest.mark.slow
async def test_a_daemon_frozen_inside_a_transaction_holds_its_locks_only_until_the_idle_timeout(
    database: str,
) -> None:
    """Regression: a daemon SIGSTOPped inside its job-id transaction held the item's row lock for
    as long as it was frozen, and the other daemon's sweep waited on it (27 s in a takeover test)."""
    frozen, other = make_engine(database, pool_size=1), make_engine(database, pool_size=1)
    try:
        at = now()
        async with other.begin() as conn:
            task_id = (
                await conn.execute(
                    insert(Task)
                    .values(
                        channel_id="nature", project_slug="p", state="active", created_at=at, updated_at=at
                    )
                    .returning(Task.id)
                )
            ).scalar_one()
            await conn.execute(
                insert(Item).values(
                    task_id=task_id,
                    channel_id="nature",
                    kind="clip",
                    key="clip_s01",
                    input={},
                    input_hash="h",
                    state="running",
                    provider="kling",
                    lease_token="frozen-daemon",
                    lease_expires_at=at - timedelta(seconds=1),
                    next_attempt_at=at,
                    created_at=at,
                    updated_at=at,
                )
            )
        held = await frozen.connect()
        await held.begin()
        await held.execute(update(Item).values(provider_job_id="job-1"))  # and then it froze
        started = time.monotonic()
        swept = await db_retry(sweep_expired)(other, now(), 1.0)
        waited = time.monotonic() - started
        assert swept == 1
        assert waited < 20, waited  # the server ended the frozen transaction after 10 s idle
        with pytest.raises(DBAPIError):
            await held.execute(update(Item).values(provider_job_id="job-2"))  # it wakes: no longer open
        await held.close()
    finally:
        await frozen.dispose()
        await other.dispose()
