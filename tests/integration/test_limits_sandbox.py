"""Two daemons on one database never go over a provider's limit, as the provider itself saw it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from daemon.app import App
from daemon.claim import ensure_slots
from daemon.clock import SystemClock
from daemon.db.models import Item, Task
from services.storyboard import parse_storyboard
from tests.support.engine_kit import run_workers
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import STORYBOARD, settings_for, small_cut_scripts, write_channel

pytestmark = pytest.mark.slow  # two daemons through a video's provider work


async def test_two_daemons_keep_kling_and_elevenlabs_within_their_limits(
    fresh_sandbox: SandboxProcess, db_url: str, tmp_path: Path
) -> None:
    fresh_sandbox.configure(cheap_media=True, kling_seconds=120, tts_seconds=30, sfx_seconds=30)
    channels = tmp_path / "channels"
    write_channel(channels)
    (tmp_path / "providers.yaml").write_text(
        "max_concurrent: {kling: 2, elevenlabs: 3, gemini: 2, local: 2}\n"
    )
    apps = []
    for name in ("daemon-a", "daemon-b"):
        settings = settings_for(
            fresh_sandbox,
            tmp_path / "ws",
            channels,
            db_url,
            daemon_id=name,
            claim_poll_s=0.2,
            scripts_dir=small_cut_scripts(tmp_path),
            providers_file=tmp_path / "providers.yaml",
        )
        apps.append(await App.build(settings))
    try:
        await ensure_slots(apps[0].engine, apps[0].limits)
        # Four scenes: twice as many clips as Kling's 2 slots, 8 ElevenLabs steps for its 3.
        await apps[0].pipeline.submit(
            "nature",
            "limits",
            {"title": "Limits"},
            SystemClock().now(),
            storyboard=parse_storyboard(STORYBOARD),
        )

        async def provider_work_done() -> bool:
            async with apps[0].engine.connect() as conn:
                assert await conn.scalar(select(Task.state)) != "error"
                states = {
                    r[0]
                    for r in await conn.execute(
                        select(Item.state).where(Item.provider.in_(("kling", "elevenlabs", "gemini")))
                    )
                }
            return states == {"succeeded"}

        await run_workers([apps[0].worker(), apps[1].worker()], provider_work_done, timeout=240)
    finally:
        for app in apps:
            await app.close()
    stats = fresh_sandbox.stats()
    assert stats["kling"]["tasks"] == 4
    assert stats["kling"]["max_task_concurrency"] == 2  # the limit was used, and never exceeded
    assert 1 < stats["elevenlabs"]["max_concurrency"] <= 3
    assert stats["gemini"]["max_concurrency"] <= 2
