"""The start-up check of each data source, and notion-setup making a ready database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.channels import Channel, NotionBinding, Voice
from daemon.errors import ConfigError
from daemon.notion.gateway import NotionApi
from daemon.notion.schema import check_data_source
from tests.support.daemon_proc import run_cli
from tests.support.notion_kit import seed
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import credentials, daemon_env


def _channel(source: str) -> Channel:
    return Channel(
        id="nature",
        name="Nature",
        voice=Voice(voice_id="JBFqnCBsd6RMkjVDRZzb"),
        notion=NotionBinding(data_source_id=source),
    )


async def _api(sandbox: SandboxProcess, who: str = "notion_token") -> NotionApi:
    return NotionApi(credentials(sandbox)[who], sandbox.base("notion"), rate=100, burst=20)


async def test_a_seeded_database_passes_and_a_broken_one_names_each_property_and_fix(
    sandbox: SandboxProcess,
) -> None:
    seeded = seed(sandbox, "checkme", 0)
    notion = await _api(sandbox)
    operator = await _api(sandbox, "notion_operator_token")
    try:
        info = await check_data_source(notion, seeded["data_source_id"], [_channel(seeded["data_source_id"])])
        assert info.status_type == "select" and info.notes == ()
        # Without the optional Video property the daemon starts, and says what it is missing.
        await operator.call(
            "PATCH", f"data_sources/{seeded['data_source_id']}", body={"properties": {"Video": None}}
        )
        info = await check_data_source(notion, seeded["data_source_id"], [_channel(seeded["data_source_id"])])
        assert info.notes == (
            "Video is missing: the final cut shows in the page body only; add a Files & media property "
            "named Video to have it as a property too",
        )
        # The operator renames Cost, turns Output into text and adds Video as a URL.
        await operator.call(
            "PATCH",
            f"data_sources/{seeded['data_source_id']}",
            body={
                "properties": {"Cost": {"name": "Price"}, "Output": {"rich_text": {}}, "Video": {"url": {}}}
            },
        )
        with pytest.raises(ConfigError) as raised:
            await check_data_source(notion, seeded["data_source_id"], [_channel(seeded["data_source_id"])])
        message = str(raised.value)
        assert "Cost is missing: add a Number property named Cost" in message
        assert "Output is a rich_text property: change it to a URL property named Output" in message
        assert "Video is a url property: change it to a Files & media property named Video" in message
    finally:
        await notion.close()
        await operator.close()


async def test_a_status_property_must_carry_every_status_option(sandbox: SandboxProcess) -> None:
    seeded = seed(sandbox, "statuskind", 0, "--status-type", "status")
    notion = await _api(sandbox)
    operator = await _api(sandbox, "notion_operator_token")
    try:
        info = await check_data_source(notion, seeded["data_source_id"], [_channel(seeded["data_source_id"])])
        assert info.status_type == "status"
        source = await operator.call("GET", f"data_sources/{seeded['data_source_id']}")
        options = [
            o for o in source["properties"]["Status"]["status"]["options"] if o["name"] != "Final Review"
        ]
        await operator.call(
            "PATCH",
            f"data_sources/{seeded['data_source_id']}",
            body={"properties": {"Status": {"status": {"options": options}}}},
        )
        with pytest.raises(ConfigError, match="only a person can add: add the options Final Review"):
            await check_data_source(notion, seeded["data_source_id"], [_channel(seeded["data_source_id"])])
    finally:
        await notion.close()
        await operator.close()


async def test_an_unshared_data_source_says_how_to_share_it(sandbox: SandboxProcess) -> None:
    notion = await _api(sandbox)
    try:
        with pytest.raises(ConfigError, match="Share the database with the integration"):
            await check_data_source(
                notion,
                "00000000-0000-0000-0000-000000000000",
                [_channel("00000000-0000-0000-0000-000000000000")],
            )
    finally:
        await notion.close()


async def test_notion_setup_makes_a_database_that_passes_the_check(
    sandbox: SandboxProcess, tmp_path: Path
) -> None:
    creds = credentials(sandbox)
    env = {
        **os.environ,
        "NOTION_TOKEN": creds["notion_token"],
        "NOTION_BASE_URL": sandbox.base("notion"),
        "WORKSPACE_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "daemon",
            "notion-setup",
            "--parent-page",
            creds["notion_root_page_id"],
            "--title",
            "Oceans videos",
            "--channel-option",
            "Oceans",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert "data_source_id: " + created["data_source_id"] in done.stderr
    notion = await _api(sandbox)
    try:
        info = await check_data_source(
            notion, created["data_source_id"], [_channel(created["data_source_id"])]
        )
        assert info.has_priority
        assert info.has_channel
    finally:
        await notion.close()


@pytest.mark.parametrize(
    ("setting", "code", "line"),
    [
        (
            {"NOTION_TOKEN": "ntn_not_the_integrations_secret"},
            78,
            "configuration error: NOTION_TOKEN: Notion refused the token (401 unauthorized)",
        ),
        (
            {"NOTION_BASE_URL": "http://127.0.0.1:1/notion"},
            75,
            "error: NOTION_BASE_URL: cannot reach Notion at http://127.0.0.1:1/notion (ConnectError)",
        ),
    ],
)
def test_a_wrong_notion_token_or_address_is_named_in_one_line(
    sandbox: SandboxProcess, tmp_path: Path, setting: dict[str, str], code: int, line: str
) -> None:
    """Regression: a wrong token was blamed on sharing and the data source id; an unreachable
    Notion was not named and said "will retry later" as the daemon exited."""
    seeded = seed(sandbox, "nature", 0)
    channels = tmp_path / "channels"
    channels.mkdir()
    (channels / "nature.yaml").write_text(Path(seeded["channel_file"]).read_text())
    env = {
        **daemon_env(sandbox, tmp_path / "ws", channels, None),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'daemon.db'}",
        **setting,
    }
    assert run_cli(env, "migrate").returncode == 0
    done = run_cli(env, "run")
    assert "Traceback" not in done.stderr
    assert done.returncode == code
    assert done.stderr.strip().splitlines()[-1].startswith(line)
    assert "will retry later" not in done.stderr.strip().splitlines()[-1]
