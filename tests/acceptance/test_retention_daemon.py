"""Retention in the running daemon, against the sandbox: a video done long enough ago loses its
intermediate files to the daemon's own periodic run (logged with the space freed), the status table's
DISK shows it, and the page queued again unchanged is done at once: the sandbox's call log shows no
paid call after the first production."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from sqlalchemy import select, update

from daemon.db.engine import make_engine
from daemon.db.models import Task
from daemon.notion.gateway import NotionApi
from daemon.notion.props import option_name
from tests.support.chaos import audit
from tests.support.daemon_proc import DaemonProcess, run_cli
from tests.support.db import ON_SQLITE
from tests.support.notion_kit import seed
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import credentials, daemon_env, small_cut_scripts

PAID = {"gemini", "kling", "elevenlabs"}


async def _status(api: NotionApi, page: str) -> str | None:
    return option_name((await api.call("GET", f"pages/{page}"))["properties"]["Status"])


async def _until(what: str, check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.3)


async def _age(database: str, days: int) -> None:
    engine = make_engine(database)
    try:
        async with engine.begin() as conn:
            await conn.execute(update(Task).values(updated_at=datetime.now(UTC) - timedelta(days=days)))
    finally:
        await engine.dispose()


async def _pass(database: str) -> tuple[int, str]:
    engine = make_engine(database)
    try:
        async with engine.connect() as conn:
            task = (await conn.execute(select(Task.pass_no, Task.state))).one()
            return int(task.pass_no), str(task.state)
    finally:
        await engine.dispose()


def _paid(sandbox: SandboxProcess) -> int:
    return sum(1 for c in sandbox.calls() if c["provider"] in PAID and c["item"])


@ON_SQLITE
async def test_the_daemon_removes_an_old_videos_intermediates_and_a_requeue_buys_nothing(
    fresh_sandbox: SandboxProcess, database: str, tmp_path: Path
) -> None:
    fresh_sandbox.configure(cheap_media=True)
    seeded = seed(fresh_sandbox, "nature", 1, "--scenes", "1")
    channels = tmp_path / "channels"
    channels.mkdir()
    config = yaml.safe_load(Path(seeded["channel_file"]).read_text())
    config["gates"] = {"storyboard": False, "assets": False, "final": False}
    (channels / "nature.yaml").write_text(yaml.safe_dump(config))
    env = {
        **daemon_env(
            fresh_sandbox, tmp_path / "ws", channels, database, scripts_dir=small_cut_scripts(tmp_path)
        ),
        "NOTION_POLL_S": "1",
        "CLAIM_POLL_S": "0.2",
        "HTTP_PORT": "0",
        "RETENTION_DAYS": "30",
        "RETENTION_INTERVAL_S": "1",
    }
    page = seeded["page_ids"][0]
    api = NotionApi(credentials(fresh_sandbox)["notion_operator_token"], fresh_sandbox.base("notion"))
    daemon = DaemonProcess(env, tmp_path / "daemon.log", "retention").start()
    project = tmp_path / "ws/channels/nature/projects" / page.replace("-", "")
    try:
        await api.call(
            "PATCH", f"pages/{page}", body={"properties": {"Status": {"select": {"name": "Queued"}}}}
        )

        async def ready() -> bool:
            return await _status(api, page) == "Ready"

        await _until("Ready", ready, 180)
        paid = _paid(fresh_sandbox)
        assert paid and (project / "clips").is_dir()
        [before] = json.loads(run_cli(env, "status", "--json").stdout)
        # A week old: kept. Past RETENTION_DAYS: the next hourly run (every second here) takes them.
        await _age(database, 7)
        await asyncio.sleep(2)
        assert (project / "clips").is_dir()
        await _age(database, 31)

        async def removed() -> bool:
            return any(e.get("event") == "retention_removed" for e in daemon.events())

        await _until("the retention run", removed, 30)
        [event] = [e for e in daemon.events() if e.get("event") == "retention_removed"]
        assert event["groups"].keys() >= {"assets", "composites", "clips", "narration", "sfx", "music"}
        assert not (project / "clips").exists() and (project / "final").is_dir()
        [after] = json.loads(run_cli(env, "status", "--json").stdout)
        assert after["disk_bytes"] == before["disk_bytes"] - event["bytes"]
        assert after["media_removed_at"] is not None
        table = run_cli(env, "status").stdout.splitlines()
        assert table[0].split()[7] == "DISK"

        # Queued again, unchanged: nothing needs the removed files, so nothing is bought.
        await api.call(
            "PATCH", f"pages/{page}", body={"properties": {"Status": {"select": {"name": "Queued"}}}}
        )

        async def second_pass_done() -> bool:
            return await _pass(database) == (2, "done") and await ready()

        await _until("the second pass", second_pass_done, 60)
        assert _paid(fresh_sandbox) == paid
    finally:
        daemon.signal()
        daemon.wait(timeout=30)
        await api.close()
    result = await audit(database, fresh_sandbox, tmp_path / "ws")
    assert result.problems == []
