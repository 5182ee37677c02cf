"""Notion webhooks end to end: the daemon as a process with its HTTP listener and webhooks turned on,
the sandbox as Notion sending signed events, the operator editing through notion-client. Notion is
polled only every 60 s here, so an action within 2 s can only have come from a webhook."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from notion_client import AsyncClient
from sqlalchemy import select

from daemon.db.engine import make_engine
from daemon.db.models import PollCursor, Task
from daemon.notion.webhooks import HANDSHAKE_WRITE_S, TOKEN_FILE, WEBHOOK_PATH, signature
from tests.support.daemon_proc import DaemonProcess
from tests.support.db import ON_SQLITE
from tests.support.http_probe import free_port
from tests.support.notion_kit import seed
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import credentials, daemon_env

ACT_WITHIN_S = 2.0  # the target; with 60 s polls only a webhook can meet it


class Setup:
    def __init__(self, sandbox: SandboxProcess, database: str, tmp_path: Path, *seed_args: str) -> None:
        self.sandbox, self.database, self.tmp = sandbox, database, tmp_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{WEBHOOK_PATH}"
        self.seeded = seed(
            sandbox, "nature", 1, "--scenes", "2", *[a.format(url=self.url) for a in seed_args]
        )
        self.page = str(self.seeded["page_ids"][0])
        channels = tmp_path / "channels"
        channels.mkdir()
        config = yaml.safe_load(Path(self.seeded["channel_file"]).read_text())
        config["gates"] = {"storyboard": True, "assets": False, "final": False}  # the video stops there
        (channels / "nature.yaml").write_text(yaml.safe_dump(config))
        self.env = {
            **daemon_env(sandbox, tmp_path / "ws", channels, database),
            "HTTP_PORT": str(self.port),
            "NOTION_POLL_S": "60",
        }
        self.operator = AsyncClient(
            auth=credentials(sandbox)["notion_operator_token"], base_url=sandbox.base("notion")
        )
        self.daemon = DaemonProcess({}, tmp_path / "daemon.log", "webhooks")

    async def start(self) -> None:
        """The daemon, once its first poll is over (the next is a minute away)."""
        self.daemon = DaemonProcess(self.env, self.tmp / "daemon.log", "webhooks").start()
        await self.until(self._first_poll_done, 60, "the daemon's first poll")

    async def _first_poll_done(self) -> bool:
        assert self.daemon.proc is not None and self.daemon.proc.poll() is None, self.log()[-3000:]
        engine = make_engine(self.database)
        try:
            async with engine.connect() as conn:
                return await conn.scalar(select(PollCursor.last_poll_started_at)) is not None
        finally:
            await engine.dispose()

    async def task(self) -> Any:
        engine = make_engine(self.database)
        try:
            async with engine.connect() as conn:
                return (await conn.execute(select(Task).where(Task.notion_page_id == self.page))).first()
        finally:
            await engine.dispose()

    async def set(self, **properties: Any) -> float:
        """Edits the page as the operator; returns when the edit was answered."""
        await self.operator.pages.update(page_id=self.page, properties=properties)
        return time.monotonic()

    async def seconds_until_task(self, since: float, timeout: float = 10) -> float:
        await self.until(lambda: self._has_task(), timeout, "a task for the page")
        return time.monotonic() - since

    async def _has_task(self) -> bool:
        return await self.task() is not None

    @staticmethod
    async def until(check: Any, timeout: float, what: str, every: float = 0.05) -> None:
        deadline = time.monotonic() + timeout
        while not await check():
            assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
            await asyncio.sleep(every)

    def log(self) -> str:
        return self.daemon.log_path.read_text(errors="replace")

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.daemon.events() if e.get("event") == name]

    async def stop(self) -> None:
        await self.operator.aclose()
        if self.daemon.proc is not None and self.daemon.proc.poll() is None:
            self.daemon.signal()
            self.daemon.wait(30)


QUEUED = {"Status": {"select": {"name": "Queued"}}}


@ON_SQLITE
async def test_an_operators_edit_reaches_the_daemon_by_a_signed_webhook_within_two_seconds(
    fresh_sandbox: SandboxProcess, database: str, tmp_path: Path
) -> None:
    # `seed --webhook-url` subscribes the sandbox and writes the token into daemon.env.
    setup = Setup(fresh_sandbox, database, tmp_path, "--webhook-url", "{url}")
    env_file = Path(setup.seeded["env_file"]).read_text()
    token = credentials(fresh_sandbox)["notion_webhook_token"]
    assert f"NOTION_WEBHOOK_SECRET={token}\n" in env_file and "NOTION_WEBHOOKS=true\n" in env_file
    setup.env["NOTION_WEBHOOK_SECRET"] = token  # the operator's explicit adoption: webhooks on
    try:
        await setup.start()
        took = await setup.seconds_until_task(await setup.set(**QUEUED))
        assert took < ACT_WITHIN_S, f"Queued was acted on {took:.2f} s after the edit"
        woken = setup.events("notion_webhook_intake")
        assert woken and woken[0]["data_sources"] == [setup.seeded["data_source_id"]]
        # The daemon's own writes (Planning, the storyboard) come back as events too, and wake nothing.
        # (Looked at twice a second: the operator's token has 3 requests/s, as in Notion.)
        await setup.until(lambda: _page_status_is(setup, "Storyboard Review"), 60, "Storyboard Review", 0.5)
        await asyncio.sleep(1.0)
        sent = fresh_sandbox.stats()["notion"]["webhooks"]
        assert sent["sent"] > len(woken) and sent["dropped"] == 0
        assert len(setup.events("notion_webhook_intake")) == len(woken)
        assert setup.events("notion_webhook_refused") == []  # every event checked with the setting
    finally:
        await setup.stop()


async def _page_status_is(setup: Setup, status: str) -> bool:
    page = await setup.operator.pages.retrieve(page_id=setup.page)
    return bool((page["properties"]["Status"]["select"] or {}).get("name") == status)


@ON_SQLITE
async def test_a_handshake_waits_for_the_operator_and_a_strangers_one_owns_nothing(
    fresh_sandbox: SandboxProcess, database: str, tmp_path: Path
) -> None:
    """Webhooks on with no secret: no handshake is adopted by itself (the first stranger to post one
    used to own the secret); Notion's token is acted on once the operator adopts it."""
    setup = Setup(fresh_sandbox, database, tmp_path)
    setup.env["NOTION_WEBHOOKS"] = "true"
    token = credentials(fresh_sandbox)["notion_webhook_token"]
    stranger = "secret_stranger" + "z" * 30
    forged = json.dumps(_event(setup)).encode()
    token_file, waiting = tmp_path / "ws" / TOKEN_FILE, tmp_path / "ws" / f"{TOKEN_FILE}.new"
    try:
        await setup.start()
        await setup.set(**QUEUED)  # the sandbox has no subscription yet: no event is sent
        async with httpx.AsyncClient(timeout=10) as http:
            # Before any token is adopted: refused, saying how to get one.
            answer = await http.post(setup.url, content=forged, headers=_signed(token, forged))
            assert answer.status_code == 401 and "NOTION_WEBHOOK_SECRET" in answer.json()["error"]

            # A stranger posts a handshake first: its token is only set aside for the operator.
            answer = await http.post(setup.url, json={"verification_token": stranger})
            assert answer.status_code == 200 and stranger not in answer.text
            assert waiting.read_text().strip() == stranger and not token_file.exists()
            told = setup.events("notion_webhook_verification_token_received")
            assert (
                told and told[0]["file"] == str(waiting) and f"mv {waiting} {token_file}" in told[0]["action"]
            )
            answer = await http.post(setup.url, content=forged, headers=_signed(stranger, forged))
            assert answer.status_code == 401  # its forged events are refused

            # The subscription is made: Notion (the sandbox) posts its verification request.
            await asyncio.sleep(HANDSHAKE_WRITE_S)
            fresh_sandbox.configure(notion_webhook_url=setup.url)
            await setup.until(lambda: _holds(waiting, token), 10, "Notion's token in the .new file")
            assert stat.S_IMODE(waiting.stat().st_mode) == 0o600 and not token_file.exists()

            # Forged events: no signature, a wrong one, one made with another secret; and Notion's
            # own, signed with a token not adopted yet.
            for headers in (
                {},
                {"X-Notion-Signature": "sha256=" + "0" * 64},
                _signed("secret_guess", forged),
                _signed(token, forged),
            ):
                answer = await http.post(setup.url, content=forged, headers=headers)
                assert answer.status_code == 401, headers
                assert token not in answer.text
        await asyncio.sleep(1.5)
        assert await setup.task() is None  # nothing woke intake
        assert setup.events("notion_webhook_intake") == []

        # The operator pasted it into Notion's Verify dialog (accepted) and adopts it: no restart.
        waiting.replace(token_file)
        took = await setup.seconds_until_task(await setup.set(Priority={"select": {"name": "High"}}))
        assert took < ACT_WITHIN_S, f"the edit was acted on {took:.2f} s after it"
    finally:
        await setup.stop()
    assert token not in setup.log() and stranger not in setup.log()


async def _holds(path: Path, token: str) -> bool:
    return path.exists() and path.read_text().strip() == token


def _signed(secret: str, body: bytes) -> dict[str, str]:
    return {"X-Notion-Signature": signature(secret, body), "Content-Type": "application/json"}


def _event(setup: Setup) -> dict[str, Any]:
    return {
        "id": "0b8f2a49-3f44-4a8e-9d0c-3c1e58f4f6a1",
        "timestamp": "2026-12-08T10:00:00.000Z",
        "type": "page.properties_updated",
        "authors": [{"id": "c7c11cca-1d73-471d-9b6e-bdef51470190", "type": "person"}],
        "attempt_number": 1,
        "entity": {"id": setup.page, "type": "page"},
        "data": {
            "parent": {
                "id": setup.seeded["database_id"],
                "type": "database",
                "data_source_id": setup.seeded["data_source_id"],
            },
            "updated_properties": ["Status"],
        },
    }
