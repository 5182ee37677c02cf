"""A 2-scene storyboard (all three assets) to a finished 1080p MP4 with the real scripts against the
sandbox, on both DBs."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageStat
from sqlalchemy import select

from daemon.app import App
from daemon.claim import ensure_slots
from daemon.clock import SystemClock
from daemon.costs import load_pricing_file
from daemon.db.models import Item
from daemon.paths import DEFAULT_PRICING_FILE
from services.pricing import to_micros
from services.storyboard import parse_storyboard
from tests.support.engine_kit import run_workers
from tests.support.media import audio_duration, frame_at, srt_cues, video_info
from tests.support.pg_watch import TransactionWatch
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import STORYBOARD, settings_for, write_channel

BOARD = {**STORYBOARD, "scenes": STORYBOARD["scenes"][:2]}  # scene 1: shallows + heron, 2: reeds
SCENES = (1, 2)

pytestmark = pytest.mark.slow  # a 1080p video end to end


async def test_a_storyboard_becomes_a_video_with_every_call_made_once(
    sandbox: SandboxProcess, db_url: str, tmp_path: Path
) -> None:
    slug = f"heron-{uuid.uuid4().hex[:8]}"
    channels = tmp_path / "channels"
    write_channel(channels)
    settings = settings_for(sandbox, tmp_path / "ws", channels, db_url, claim_poll_s=0.2, daemon_id="e2e")
    app = await App.build(settings)
    try:
        await ensure_slots(app.engine, app.limits)
        task_id = await app.pipeline.submit(
            "nature", slug, {"title": "Heron"}, SystemClock().now(), storyboard=parse_storyboard(BOARD)
        )

        done = _all_succeeded(app, task_id)

        if db_url.startswith("postgresql"):
            # While scripts run for seconds, no transaction may stay open longer than a claim or a
            # completion (milliseconds): nothing pins PostgreSQL's MVCC horizon.
            async with TransactionWatch(db_url.rsplit("/", 1)[1]) as watch:
                await run_workers([app.worker()], done, timeout=240)
            assert watch.samples > 100
            assert watch.longest_s < 1.0, watch.worst
        else:
            await run_workers([app.worker()], done, timeout=240)
        items = await _items(app, task_id)
    finally:
        await app.close()

    video = settings.workspace_dir / items["assembly"].output_path
    info = video_info(video)
    assert (info.width, info.height, info.video_codec, info.audio_codec) == (1920, 1080, "h264", "aac")
    narrations = [
        audio_duration(settings.workspace_dir / items[f"narration_s0{i}"].output_path) for i in SCENES
    ]
    # The narrations, each after its scene's crossfade (0.4 s; the first after the 0.5 s fade from
    # black) and before a 0.4 s tail (the last then fades out over 0.5 s), the scenes overlapping by
    # the crossfade; each scene a whole number of frames.
    edges = (0.5 + 0.4) + (len(SCENES) - 1) * (0.4 + 0.4) + 0.5 - (len(SCENES) - 1) * 0.4
    assert abs(info.duration - (sum(narrations) + edges)) <= len(SCENES) / 24 + 0.05

    calls = [c for c in sandbox.calls() if c["item"] and f":{slug}:" in c["item"]]
    by_item: dict[str, int] = {}
    for call in calls:
        key = call["item"].rsplit(":", 1)[1]
        by_item[key] = by_item.get(key, 0) + 1
    assert by_item == {
        "asset_heron": 1,
        "asset_shallows": 1,
        "asset_reeds": 1,
        **{f"{kind}_s0{i}": 1 for kind in ("clip", "narration", "sfx") for i in SCENES},
    }
    assert all(item.cost_micros > 0 for key, item in items.items() if key in by_item)
    # The task's cost is what the provider's own call log adds up to at the shipped price table's prices.
    billed = sum(to_micros(PRICING.actual_cost(_kind_of(call), call["usage"])) for call in calls)
    assert sum(item.cost_micros for item in items.values()) == billed


def _all_succeeded(app: App, task_id: int) -> Callable[[], Awaitable[bool]]:
    """Whether every item of the task succeeded (none may fail on the way)."""

    async def done() -> bool:
        async with app.engine.connect() as conn:
            states = {r[0] for r in await conn.execute(select(Item.state).where(Item.task_id == task_id))}
        assert "failed" not in states
        return states == {"succeeded"}

    return done


async def _items(app: App, task_id: int) -> dict[str, Any]:
    async with app.engine.connect() as conn:
        return {r.key: r for r in await conn.execute(select(Item).where(Item.task_id == task_id))}


PRICING = load_pricing_file(DEFAULT_PRICING_FILE)


def _kind_of(call: dict[str, Any]) -> str:
    """Which kind of item a billable call in the sandbox's log was for."""
    if call["provider"] == "gemini":
        return "asset" if call["usage"].get("images") else "storyboard"
    if call["provider"] == "kling":
        return "clip"
    return "sfx" if "sound-generation" in call["endpoint"] else "narration"


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_a_shorts_channel_makes_a_vertical_video_with_centred_captions(
    sandbox: SandboxProcess, database: str, tmp_path: Path
) -> None:
    """format: shorts: 9:16 environment images, 1080x1920 frames, portrait clips from Kling, a
    1080x1920 final cut with its captions in the middle of the frame, a portrait thumbnail."""
    slug = f"short-{uuid.uuid4().hex[:8]}"
    channels = tmp_path / "channels"
    write_channel(channels, format="shorts")
    settings = settings_for(sandbox, tmp_path / "ws", channels, database, claim_poll_s=0.2, daemon_id="short")
    app = await App.build(settings)
    one = {**STORYBOARD, "scenes": STORYBOARD["scenes"][:1]}
    try:
        await ensure_slots(app.engine, app.limits)
        task_id = await app.pipeline.submit(
            "nature", slug, {"title": "Heron"}, SystemClock().now(), storyboard=parse_storyboard(one)
        )

        done = _all_succeeded(app, task_id)

        await run_workers([app.worker()], done, timeout=240)
        items = await _items(app, task_id)
    finally:
        await app.close()

    workspace = settings.workspace_dir
    with Image.open(workspace / items["asset_shallows"].output_path) as environment:
        assert environment.height > environment.width  # asked of Gemini as 9:16
    with Image.open(workspace / items["composite_s01"].output_path) as frame:
        assert frame.size == (1080, 1920)
    clip = video_info(workspace / items["clip_s01"].output_path)
    assert clip.height > clip.width  # Kling kept the frame's orientation
    video = workspace / items["assembly"].output_path
    info = video_info(video)
    assert (info.width, info.height) == (1080, 1920)
    with Image.open(video.with_name(video.name + ".thumbnail.jpg")) as thumbnail:
        assert thumbnail.size == (720, 1280)
    # The captions are drawn in the middle of the tall frame: during the words its middle band has
    # far more white (the text) than the same band of the scene's frame, the bottom band does not.
    srt = video.with_name(video.name + ".srt")
    cues = srt_cues(srt)
    lines = [line for block in srt.read_text().split("\n\n") for line in block.splitlines()[2:]]
    assert cues and lines and all(len(line) <= 24 for line in lines)  # narrower lines for the tall frame
    moment = (cues[0][0] + cues[0][1]) / 2
    shown = Image.open(frame_at(video, moment, tmp_path / "short.png"))
    made = Image.open(workspace / items["composite_s01"].output_path)
    middle, bottom = (0, 810, 1080, 1110), (0, 1500, 1080, 1800)
    assert _white(shown.crop(middle)) > _white(made.crop(middle)) + 0.02
    assert _white(shown.crop(bottom)) < _white(made.crop(bottom)) + 0.01


def _white(picture: Image.Image) -> float:
    """The share of near-white pixels."""
    return float(ImageStat.Stat(picture.convert("L").point(lambda v: 255 if v >= 235 else 0)).mean[0] / 255)
