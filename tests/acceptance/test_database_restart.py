"""PostgreSQL restarted in the middle of a run: the daemon reconnects, loses nothing, pays no clip
twice, and counts every cost once. The server is the test's own (tests/support/pg_cluster.py), so
its restart disturbs no test running beside it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import yaml

from daemon.migrate import upgrade_url
from tests.support.chaos import audit, priced_micros, repeats
from tests.support.daemon_proc import DaemonProcess, run_cli
from tests.support.pg_cluster import PrivateCluster
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import STORYBOARD, daemon_env, small_cut_scripts, write_channel


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    server = PrivateCluster().start()
    try:
        yield server
    finally:
        server.stop()


async def _migrated_database(cluster: PrivateCluster) -> str:
    admin = await asyncpg.connect(cluster.url())
    try:
        await admin.execute("CREATE DATABASE nvd")
    finally:
        await admin.close()
    url = cluster.url("nvd").replace("postgresql://", "postgresql+asyncpg://")
    await upgrade_url(url)
    return url


async def test_a_postgres_restart_mid_run_loses_nothing(
    cluster: PrivateCluster, fresh_sandbox: SandboxProcess, tmp_path: Path
) -> None:
    database = await _migrated_database(cluster)
    fresh_sandbox.configure(cheap_media=True, kling_seconds=480)
    channels = tmp_path / "channels"
    write_channel(channels)
    env = {
        **daemon_env(
            fresh_sandbox, tmp_path / "ws", channels, database, scripts_dir=small_cut_scripts(tmp_path)
        ),
        "CLAIM_POLL_S": "0.2",
        "IDLE_POLL_MAX_S": "0.5",
    }
    board = {**STORYBOARD, "scenes": STORYBOARD["scenes"][:2]}
    (tmp_path / "sb.yaml").write_text(yaml.safe_dump(board))
    enqueued = run_cli(env, "enqueue", "--channel", "nature", "--storyboard", str(tmp_path / "sb.yaml"))
    assert enqueued.returncode == 0, enqueued.stderr
    daemon = DaemonProcess(env, tmp_path / "daemon.log", "db-host").start()
    try:
        deadline = time.monotonic() + 90
        while len(fresh_sandbox.calls("kling")) < 2:
            assert time.monotonic() < deadline, "the clips were not submitted"
            await asyncio.sleep(0.3)
        cluster.restart()
        assert daemon.proc is not None
        deadline = time.monotonic() + 180
        while True:
            assert daemon.proc.poll() is None, "the daemon died when the database restarted"
            try:
                result = await audit(database, fresh_sandbox, tmp_path / "ws")
            except OSError:
                result = None  # the test's own connection may meet the restart too
            if result is not None and result.tasks and result.tasks[0].state == "done":
                break
            assert time.monotonic() < deadline, "the task did not finish after the restart"
            await asyncio.sleep(0.5)
    finally:
        daemon.signal()
        daemon.wait(timeout=30)
    result = await audit(database, fresh_sandbox, tmp_path / "ws")
    assert result.problems == []
    assert sorted(result.kling_creates_per_clip().values()) == [1, 1]
    assert repeats(result)[1] == []
    # Every cost counted once, even for a completion whose commit met the restart: the task's cost
    # is exactly the call log at the price table's prices.
    assert sum(i.cost_micros for i in result.items) == priced_micros(result.calls)
