"""The operator's whole budget story on the real daemon: the video stops at its budget with the
numbers on the page, the budget is raised in the channel file, and the video goes on to Ready
without a restart."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from daemon.notion.gateway import NotionApi
from daemon.notion.props import option_name, plain_text
from tests.acceptance.test_notion_processes import _until
from tests.support.daemon_proc import DaemonProcess
from tests.support.db import ON_SQLITE
from tests.support.notion_kit import seed
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import credentials, daemon_env, small_cut_scripts


@ON_SQLITE
async def test_a_budget_raised_in_the_channel_file_takes_effect_without_a_restart(
    fresh_sandbox: SandboxProcess, database: str, tmp_path: Path
) -> None:
    fresh_sandbox.configure(cheap_media=True, kling_seconds=30)
    seeded = seed(fresh_sandbox, "nature", 1, "--scenes", "2")
    page = seeded["page_ids"][0]
    channels = tmp_path / "channels"
    channels.mkdir()
    config = yaml.safe_load(Path(seeded["channel_file"]).read_text())
    config["gates"] = {"storyboard": False, "assets": False, "final": False}
    config["budgets"] = {"per_video_usd": 0.30, "per_day_usd": 100.0}  # the clips do not fit
    channel_file = channels / "nature.yaml"
    channel_file.write_text(yaml.safe_dump(config))
    env = {
        **daemon_env(
            fresh_sandbox, tmp_path / "ws", channels, database, scripts_dir=small_cut_scripts(tmp_path)
        ),
        "NOTION_POLL_S": "1",
    }
    operator = NotionApi(credentials(fresh_sandbox)["notion_operator_token"], fresh_sandbox.base("notion"))
    daemon = DaemonProcess(env, tmp_path / "daemon.log", "daemon").start()
    try:
        await operator.call(
            "PATCH", f"pages/{page}", body={"properties": {"Status": {"select": {"name": "Queued"}}}}
        )

        async def props() -> dict[str, object]:
            return dict((await operator.call("GET", f"pages/{page}"))["properties"])

        async def paused_for_budget() -> bool:
            got = await props()
            return option_name(got["Status"]) == "Paused" and "Budget reached" in plain_text(got["Error Log"])

        await _until(paused_for_budget, 120, "the page to show Paused with the budget's numbers")
        error_log = plain_text((await props())["Error Log"])
        assert "of its $0.30 budget" in error_log
        assert "no restart" in error_log or "within seconds" in error_log
        assert not fresh_sandbox.calls("kling")  # nothing over the budget was started

        config["budgets"] = {"per_video_usd": 20.0, "per_day_usd": 100.0}
        channel_file.write_text(yaml.safe_dump(config))
        raised = time.monotonic()

        async def going_on() -> bool:
            return option_name((await props())["Status"]) != "Paused"

        await _until(going_on, 30, "the page to leave Paused after the budget was raised")
        assert time.monotonic() - raised < 30

        async def ready() -> bool:
            return option_name((await props())["Status"]) == "Ready"

        await _until(ready, 180, "the page to show Ready")
        assert daemon.proc is not None and daemon.proc.poll() is None  # the same process, never restarted
        events = [e.get("event") for e in daemon.events()]
        assert "channel_budgets_reloaded" in events
        assert events.count("daemon_started") == 1
    finally:
        await operator.close()
        daemon.stop()
