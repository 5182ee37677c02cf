"""The daemon's uploads against the sandbox's Notion: a file over 20 MB goes in parts, an image
over the workspace's cap goes as a JPEG under it, the same content is sent once, and a changed
file is a new upload."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from PIL import Image

from daemon.db.engine import make_engine
from daemon.notion.gateway import NotionApi
from daemon.notion.uploads import PART_SIZE, Uploads
from tests.support.db import ON_SQLITE
from tests.support.sandbox_proc import SandboxProcess

MB = 1024 * 1024


@pytest.fixture
async def uploads(fresh_sandbox: SandboxProcess, database: str, tmp_path: Path) -> AsyncIterator[Uploads]:
    token = json.loads((fresh_sandbox.state_dir / "credentials.json").read_text())["notion_token"]
    notion = NotionApi(token, fresh_sandbox.base("notion"), rate=100, burst=100, timeout_s=120)
    engine = make_engine(database)
    workspace = tmp_path / "ws"
    (workspace / "channels/c/projects/p/final").mkdir(parents=True)
    (workspace / "channels/c/projects/p/assets").mkdir(parents=True)
    try:
        yield Uploads(engine, notion, workspace)
    finally:
        await notion.close()
        await engine.dispose()


async def _shown_bytes(sandbox: SandboxProcess, upload_id: str) -> bytes:
    async with httpx.AsyncClient(timeout=60) as http:
        response = await http.get(f"{sandbox.url}/_sandbox/files/{upload_id}/file")
    response.raise_for_status()
    return response.content


@ON_SQLITE
async def test_a_file_over_20_mb_goes_in_parts_and_once(
    uploads: Uploads, fresh_sandbox: SandboxProcess
) -> None:
    relative = "channels/c/projects/p/final/p.mp4"
    data = os.urandom(2 * PART_SIZE + 123_456)  # three parts, the last one small
    (uploads.workspace / relative).write_bytes(data)
    now = datetime.now(UTC)
    sent = await uploads.send(relative, now)
    assert sent.preview is None and sent.filename.startswith("p-") and sent.filename.endswith(".mp4")
    assert await _shown_bytes(fresh_sandbox, sent.upload_id) == data
    assert fresh_sandbox.file_sends() == {sent.upload_id: 3}
    # The same content again (a later board write, a restart): found, not sent.
    again = await Uploads(uploads.engine, uploads.notion, uploads.workspace).send(relative, now)
    assert again.upload_id == sent.upload_id and fresh_sandbox.file_sends() == {sent.upload_id: 3}
    # A changed file is a new upload.
    (uploads.workspace / relative).write_bytes(data[:1000])
    changed = await uploads.send(relative, now)
    assert changed.upload_id != sent.upload_id
    assert await _shown_bytes(fresh_sandbox, changed.upload_id) == data[:1000]


@ON_SQLITE
async def test_an_image_over_the_cap_goes_as_a_jpeg_under_it(
    uploads: Uploads, fresh_sandbox: SandboxProcess
) -> None:
    cap = 300_000
    fresh_sandbox.configure(notion_upload_cap=cap)
    relative = "channels/c/projects/p/assets/hero.png"
    Image.frombytes("RGB", (1920, 1080), os.urandom(1920 * 1080 * 3)).save(uploads.workspace / relative)
    assert (uploads.workspace / relative).stat().st_size > cap
    sent = await uploads.send(relative, datetime.now(UTC))
    assert sent.preview is not None and sent.filename.endswith(".jpg")
    assert "over this workspace's upload limit of 0.3 MB" in sent.preview.note()
    shown = await _shown_bytes(fresh_sandbox, sent.upload_id)
    assert len(shown) <= cap and shown[:3] == b"\xff\xd8\xff"  # a JPEG
    assert sent.preview.path == uploads.workspace / "channels/c/projects/p/previews/hero.jpg"
