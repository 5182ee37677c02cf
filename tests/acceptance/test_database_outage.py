"""The database goes away while scripts run, through a TCP proxy in front of PostgreSQL: first the
network freezes (connections held, no byte moves: statements hang), then it is cut (connections
reset, new ones refused), together longer than the lease TTL and its grace. The daemon keeps its
scripts running, claims nothing meanwhile, renews its leases when the database is back, and
finishes the video with every step run once and paid once (reliability findings 6 and 8)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.support.chaos import audit, repeats
from tests.support.daemon_proc import DaemonProcess, run_cli
from tests.support.db import ON_POSTGRES
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import STORYBOARD, daemon_env, small_cut_scripts, write_channel
from tests.support.tcp_proxy import TcpProxy

TTL_S = 4.0  # the lease runs out (with its grace, TTL / 2) 6 s after the last beat
FREEZE_S = 8.0
CUT_S = 8.0


@ON_POSTGRES
async def test_scripts_outlive_a_database_outage_longer_than_their_leases(
    database: str, fresh_sandbox: SandboxProcess, tmp_path: Path
) -> None:
    host, _, rest = database.partition("@")[2].partition(":")
    proxy = TcpProxy(host, int(rest.split("/")[0]))
    through_proxy = proxy.url(rest.split("/", 1)[1])
    fresh_sandbox.configure(cheap_media=True, kling_seconds=1500)  # clips take 25 s
    channels = tmp_path / "channels"
    write_channel(channels)
    env = {
        **daemon_env(
            fresh_sandbox, tmp_path / "ws", channels, through_proxy, scripts_dir=small_cut_scripts(tmp_path)
        ),
        "CLAIM_POLL_S": "0.2",
        "IDLE_POLL_MAX_S": "0.5",
        "LEASE_TTL_S": str(TTL_S),
    }
    board = {**STORYBOARD, "scenes": STORYBOARD["scenes"][:2]}
    (tmp_path / "sb.yaml").write_text(yaml.safe_dump(board))
    enqueued = run_cli(
        {**env, "DATABASE_URL": database},
        "enqueue",
        "--channel",
        "nature",
        "--storyboard",
        str(tmp_path / "sb.yaml"),
    )
    assert enqueued.returncode == 0, enqueued.stderr
    daemon = DaemonProcess(env, tmp_path / "daemon.log", "outage-host").start()
    try:
        deadline = time.monotonic() + 90
        while len(fresh_sandbox.calls("kling")) < 2:
            assert time.monotonic() < deadline, "the clips were not submitted"
            await asyncio.sleep(0.3)
        proxy.freeze()
        await asyncio.sleep(FREEZE_S)
        proxy.cut()
        await asyncio.sleep(CUT_S)
        proxy.restore()
        assert daemon.proc is not None
        deadline = time.monotonic() + 120
        while True:
            assert daemon.proc.poll() is None, "the daemon died in the outage"
            result = await audit(database, fresh_sandbox, tmp_path / "ws")
            if result.tasks and result.tasks[0].state == "done":
                break
            assert time.monotonic() < deadline, "the task did not finish after the outage"
            await asyncio.sleep(0.5)
        # Stopped while the database is away: a clean exit all the same (the leader lease runs out
        # by itself); releasing it raised through the task group and the daemon exited 1.
        proxy.cut()
        daemon.signal()
        assert daemon.wait(timeout=30) == 0
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.signal()
            daemon.wait(timeout=30)
        proxy.close()
    events = [e.get("event") for e in daemon.events()]
    assert "stop_signal_received" in events
    assert "lease_lost_killing_script" not in events
    assert "database_unreachable_claims_wait" in events  # the cut was seen, and waited out
    result = await audit(database, fresh_sandbox, tmp_path / "ws")
    assert result.problems == []
    # Every step ran once: no script was killed and run again, no call repeated.
    assert Counter(a.item_id for a in result.attempts).most_common(1)[0][1] == 1
    assert sorted(result.kling_creates_per_clip().values()) == [1, 1]
    assert repeats(result) == ({}, [])


pytestmark = pytest.mark.slow
