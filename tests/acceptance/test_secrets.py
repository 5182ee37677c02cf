"""Secrets never leak: `python -m daemon demo` with recognisable keys (the run shared with
test_demo.py, see tests/support/demo_run.py), and a daemon whose Kling secret is wrong while the
provider echoes keys in its error answers. No key value appears in any log line, any file under the
workspace, anything in Notion (properties, blocks, comments), or the DB's error texts; no Kling
token (a JWT signed with the secret) is stored anywhere either.

Two files hold the keys by design and are left out: the sandbox's own `credentials.json` (the
provider's side of the accounts) and `daemon.env`, which `python -m sandbox seed` writes as the
daemon's settings file (mode 0600); both are secret stores, like a systemd EnvironmentFile.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from daemon.db.engine import make_engine
from daemon.db.models import Attempt, Comment, Item, Outbox, Task
from daemon.envfile import read_env_file
from daemon.notion.gateway import NotionApi
from daemon.youtube import accounts
from tests.support.daemon_proc import DaemonProcess
from tests.support.demo_run import KEYS, MARK, SHARED_DEMO, DemoRun
from tests.support.sandbox_proc import SandboxProcess

WRONG_KLING_SECRET = f"sk_WRONGCANARY{MARK}notthesecret0123456789"
SECRETS = [*KEYS.values(), WRONG_KLING_SECRET]
# The first characters of any HS256 JWT ({"alg":"HS256","typ":"JWT"} in base64url): a stored
# Kling token would carry the access key and could be replayed until it expires.
JWT_HEAD = b"eyJhbGciOiJIUzI1NiIs"
SECRET_STORES = ("credentials.json", "daemon.env")
SEED = [sys.executable, "-m", "sandbox", "seed", "--channel", "nature", "--projects", "1", "--queued"]


@SHARED_DEMO
@pytest.mark.timeout(420)  # the shared demo run (about a minute alone, minutes beside the suite) and more
def test_no_key_leaks_from_the_demo_or_from_a_daemon_with_a_refused_key(
    demo: DemoRun, tmp_path: Path
) -> None:
    done = demo.first
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert Path(done.stdout.strip().splitlines()[-1]).suffix == ".mp4"
    _no_secret_in("the demo's output", (done.stdout + done.stderr).encode())
    # Notion's echo, logged redacted, in the log file the demo names (its terminal is for the view).
    assert "unavailable for the integration [redacted]" in demo.log.read_text()

    refused = _run_with_a_refused_kling_secret(demo.state, demo.workspace, tmp_path)
    assert "put the right key in KLING_ACCESS_KEY and KLING_SECRET_KEY" in refused, refused
    # The keys Kling quoted reached the error path, and the script put their names in their place.
    assert "Authentication failed for <KLING_ACCESS_KEY> signed with <KLING_SECRET_KEY>" in refused

    for path in sorted(p for p in demo.workspace.rglob("*") if p.is_file()):
        if path.name in SECRET_STORES and path.parent == demo.state:
            continue
        _no_secret_in(str(path.relative_to(demo.workspace)), path.read_bytes())
    sandbox = SandboxProcess(demo.state).start()
    try:
        _no_secret_in("Notion", asyncio.run(_everything_in_notion(sandbox)).encode())
    finally:
        sandbox.stop()
    _no_secret_in("the DB's texts", asyncio.run(_db_texts(demo.database)).encode())
    _no_sign_in_secret_leaks(demo)


def _no_sign_in_secret_leaks(demo: DemoRun) -> None:
    """The daemon's TOKEN_KEY and the channel's YouTube refresh token (stored encrypted with it) are
    nowhere but where they belong: the key in daemon.env, the token in the sandbox's own state."""
    key = read_env_file(demo.state / "daemon.env")["TOKEN_KEY"]
    refresh = asyncio.run(_refresh_token(demo.database, key))
    assert refresh and key
    for needle, home in ((key, demo.state / "daemon.env"), (refresh, demo.state / "sandbox.db")):
        for path in sorted(p for p in demo.workspace.rglob("*") if p.is_file()):
            if path != home and not path.name.startswith(home.name):
                assert needle.encode() not in path.read_bytes(), f"{path} holds a sign-in secret"
        assert needle not in demo.first.stdout + demo.first.stderr


async def _refresh_token(db: Path, key: str) -> str:
    engine = make_engine(f"sqlite+aiosqlite:///{db}")
    try:
        account = await accounts.load(engine, key, "nature")
    finally:
        await engine.dispose()
    assert account is not None
    return account.refresh_token


def _run_with_a_refused_kling_secret(state: Path, workspace: Path, tmp_path: Path) -> str:
    """A daemon whose KLING_SECRET_KEY is wrong, on the demo's sandbox, DB and workspace, takes a new
    Queued page; Kling refuses it, echoing the access key and the wrong secret. Returns task.error."""
    sandbox = SandboxProcess(state).start()
    daemon = None
    try:
        seeded = subprocess.run(
            [*SEED, "--state", str(state), "--url", sandbox.url],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        page = json.loads(seeded.stdout.strip().splitlines()[-1])["page_ids"][0]
        channels = tmp_path / "channels"
        channels.mkdir()
        config = yaml.safe_load((state / "channels" / "nature.yaml").read_text())
        (channels / "nature.yaml").write_text(yaml.safe_dump({**config, "scenes": 1}))
        echoed = f"Authentication failed for {KEYS['kling_access_key']} signed with {WRONG_KLING_SECRET}"
        sandbox.fault(provider="kling", status=401, code=1000, message=echoed, count=1)
        # Notion refuses the daemon's first property write, quoting its token: the write is put off
        # and its error kept in the outbox.
        sandbox.fault(
            provider="notion",
            status=400,
            code="validation_error",
            endpoint="^PATCH /notion/v1/pages/",
            message=f"body failed validation for the integration {KEYS['notion_token']}",
            count=1,
        )
        settings = read_env_file(state / "daemon.env")
        settings.update(
            KLING_SECRET_KEY=WRONG_KLING_SECRET,
            WORKSPACE_DIR=str(workspace / "demo" / "workspace"),
            CHANNELS_DIR=str(channels),
            DEMO_AUTO_APPROVE="true",
            NOTION_POLL_S="0.5",
            CLAIM_POLL_S="0.2",
        )
        daemon = DaemonProcess(settings, tmp_path / "daemon.log", "refused").start()
        error = asyncio.run(_wait_for_error(sandbox, page))
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
        log = (tmp_path / "daemon.log").read_bytes()
        _no_secret_in("the daemon's log", log)
        assert b"body failed validation for the integration [redacted]" in log
        return error
    finally:
        if daemon:
            daemon.stop()
        sandbox.stop()


async def _wait_for_error(sandbox: SandboxProcess, page: str) -> str:
    """Waits until the page shows Status Error (the outbox wrote it) and returns its Error Log."""
    operator = NotionApi(KEYS["notion_operator_token"], sandbox.base("notion"), rate=50, burst=10)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            props = (await operator.call("GET", f"pages/{page}"))["properties"]
            status = (props["Status"].get("select") or {}).get("name")
            if status == "Error":
                return "".join(p["plain_text"] for p in props["Error Log"]["rich_text"])
            await asyncio.sleep(0.5)
    finally:
        await operator.close()
    raise AssertionError("the page never showed Error")


async def _everything_in_notion(sandbox: SandboxProcess) -> str:
    """Every page and data source the operator can find, with its properties, all its blocks
    (nested) and its comments, as one JSON text."""
    operator = NotionApi(KEYS["notion_operator_token"], sandbox.base("notion"), rate=100, burst=20)
    dump: list[Any] = []
    try:
        objects = await _all(operator, "POST", "search", body={"page_size": 100})
        assert sum(o["object"] == "page" for o in objects) >= 3  # the root, the demo's page, the refused one
        for obj in objects:
            dump.append(obj)
            if obj["object"] != "page":
                continue
            dump += await _blocks(operator, obj["id"])
            dump += await _all(operator, "GET", "comments", query={"block_id": obj["id"], "page_size": 100})
    finally:
        await operator.close()
    text = json.dumps(dump, ensure_ascii=False)
    assert "Storyboard" in text and "The video is on YouTube" in text  # the daemon's writes are in there
    return text


async def _blocks(operator: NotionApi, parent: str) -> list[Any]:
    found = []
    for block in await _all(operator, "GET", f"blocks/{parent}/children", query={"page_size": 100}):
        found.append(block)
        if block.get("has_children"):
            found += await _blocks(operator, block["id"])
    return found


async def _all(operator: NotionApi, method: str, path: str, **request: Any) -> list[Any]:
    results: list[Any] = []
    cursor = None
    while True:
        if cursor:
            if method == "GET":
                request["query"] = {**request["query"], "start_cursor": cursor}
            else:
                request["body"] = {**request["body"], "start_cursor": cursor}
        answer = await operator.call(method, path, **request)
        results += answer["results"]
        cursor = answer.get("next_cursor")
        if not answer.get("has_more") or not cursor:
            return results


async def _db_texts(db: Path) -> str:
    """The DB's error texts and everything bound for Notion (the file itself is searched too)."""
    engine = make_engine(f"sqlite+aiosqlite:///{db}")
    try:
        async with engine.connect() as conn:
            texts = [
                *(await conn.scalars(select(Task.error))),
                *(await conn.scalars(select(Item.error))),
                *(await conn.scalars(select(Attempt.message))),
                *(json.dumps(v) for v in await conn.scalars(select(Outbox.value))),
                *(await conn.scalars(select(Comment.body))),
            ]
            errors = [t for t in await conn.scalars(select(Task.error)) if t]
    finally:
        await engine.dispose()
    assert any("Kling refused the credentials" in e for e in errors), errors
    # The demo's ElevenLabs answer that quoted keys was retried; its attempt keeps the names only.
    assert any("busy; key <ELEVENLABS_API_KEY> (kling <KLING_ACCESS_KEY>)" in (t or "") for t in texts)
    return "\n".join(t for t in texts if t)


def _no_secret_in(where: str, data: bytes) -> None:
    for needle in [s.encode() for s in SECRETS] + [JWT_HEAD]:
        at = data.find(needle)
        assert at < 0, f"{where} holds {needle[:16]!r}...: {data[max(0, at - 300) : at + 100]!r}"
