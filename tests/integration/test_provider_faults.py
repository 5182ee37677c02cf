"""Provider faults through the daemon, with the real scripts against the sandbox: each class of
error in ../shared/reference/provider-apis.md is retried or stops the task as it should.

Transient (429, Kling 1302/1303, ElevenLabs too_many_concurrent_requests and system_busy, 5xx):
the item is retried, its attempts read 'transient' then 'succeeded', the video is made and nothing
is paid twice. Permanent (content blocks, quota or credit exhausted, a wrong key): the task stops in
'error' and task.error says in plain words what the operator should do.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from daemon.app import App
from daemon.claim import ensure_slots
from daemon.clock import SystemClock
from daemon.db.models import Attempt, Item, Task
from services.storyboard import parse_storyboard
from tests.support import db as testdb
from tests.support.engine_kit import run_workers
from tests.support.media import video_info
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import settings_for, small_cut_scripts, write_channel

pytestmark = pytest.mark.slow  # videos made through provider faults

# Kling's and ElevenLabs' endpoints, as the sandbox's fault matcher sees them ("METHOD /path").
KLING_CREATE = r"^POST /kling/v1/videos/image2video$"
TTS = r"^POST /elevenlabs/v1/text-to-speech/"
SFX = r"^POST /elevenlabs/v1/sound-generation"
GEMINI = r"^POST /gemini/"
RESTART = "in the daemon's settings, restart the daemon, then requeue."


def one_scene(*, asset_prompt: str = "Reed-lined shallows, still water", motion: str = "Slow push in") -> Any:
    """One scene on one environment: one image, composite, clip, narration and sound bed."""
    return parse_storyboard(
        {
            "title": "Heron",
            "atmosphere": "Misty river delta at dawn",
            "assets": [{"key": "shallows", "kind": "environment", "prompt": asset_prompt}],
            "scenes": [
                {
                    "key": "s01",
                    "frame": {"environment": "shallows"},
                    "motion": motion,
                    "narration": "At first light the delta belongs to the patient.",
                    "sfx": "Dawn river ambience",
                }
            ],
        }
    )


@pytest.fixture
def cheap_sandbox(fresh_sandbox: SandboxProcess) -> SandboxProcess:
    """A sandbox of this test's own (its faults stay here), making tiny media at once."""
    fresh_sandbox.configure(
        cheap_media=True, kling_seconds=60, gemini_image_seconds=0, tts_seconds=0, sfx_seconds=0
    )
    return fresh_sandbox


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """The permanent failures run on SQLite only: they end in fail(), whose DB side runs on both
    databases in test_engine and in the transient test here; what they prove is the scripts'
    classification and words, and each pipeline run costs seconds (a clip polls Kling every 10 s)."""
    return testdb.sqlite_url_from_template(sqlite_template, tmp_path)


@dataclass
class Outcome:
    task: Any
    items: dict[str, Any]
    attempts: dict[str, list[Any]]  # item key -> its attempts in order
    workspace: Path

    def outcomes(self, key: str) -> list[str]:
        return [a.outcome for a in self.attempts[key]]


async def produce(
    sandbox: SandboxProcess, tmp_path: Path, db_url: str, *boards: Any, **keys: str
) -> list[Outcome]:
    """Runs a daemon's worker on the given storyboards (one task each) until every task is done or
    stopped and nothing runs any more; `keys` replace the sandbox's (kling_secret_key="...")."""
    channels = tmp_path / "channels"
    write_channel(channels)
    config = settings_for(
        sandbox,
        tmp_path / "ws",
        channels,
        db_url,
        daemon_id=f"faults-{uuid.uuid4().hex[:6]}",
        scripts_dir=small_cut_scripts(tmp_path),
        claim_poll_s=0.1,
        retry_base_s=0.05,
        retry_cap_s=0.3,
    )
    config = config.model_copy(update={name: SecretStr(value) for name, value in keys.items()})
    app = await App.build(config)
    try:
        await ensure_slots(app.engine, app.limits)
        ids = [
            await app.pipeline.submit(
                "nature",
                f"p{uuid.uuid4().hex[:10]}",
                {"title": "Heron"},
                SystemClock().now(),
                storyboard=board,
            )
            for board in boards
        ]

        async def settled() -> bool:
            async with app.engine.connect() as conn:
                states = {r[0] for r in await conn.execute(select(Task.state).where(Task.id.in_(ids)))}
                running = await conn.scalar(
                    select(Item.id).where(Item.task_id.in_(ids), Item.state == "running").limit(1)
                )
            return states <= {"done", "error"} and running is None

        await run_workers([app.worker()], settled, timeout=120)
        return [await _outcome(app, task_id) for task_id in ids]
    finally:
        await app.close()


async def _outcome(app: App, task_id: int) -> Outcome:
    async with app.engine.connect() as conn:
        task = (await conn.execute(select(Task).where(Task.id == task_id))).one()
        items = {r.key: r for r in await conn.execute(select(Item).where(Item.task_id == task_id))}
        attempts: dict[str, list[Any]] = {key: [] for key in items}
        rows = await conn.execute(
            select(Attempt, Item.key)
            .join(Item, Item.id == Attempt.item_id)
            .where(Item.task_id == task_id)
            .order_by(Attempt.number)
        )
        for row in rows:
            attempts[row.key].append(row)
    return Outcome(task, items, attempts, app.settings.workspace_dir)


async def test_rate_limits_busy_answers_and_server_errors_are_retried_and_the_video_is_made(
    cheap_sandbox: SandboxProcess, db_url: str, tmp_path: Path
) -> None:
    sandbox = cheap_sandbox
    sandbox.fault(provider="gemini", endpoint=GEMINI, status=429, code="RESOURCE_EXHAUSTED", count=1)
    sandbox.fault(provider="gemini", endpoint=GEMINI, status=503, count=1)
    sandbox.fault(provider="kling", endpoint=KLING_CREATE, status=429, code=1302, count=1)
    sandbox.fault(provider="kling", endpoint=KLING_CREATE, status=429, code=1303, count=1)
    sandbox.fault(provider="kling", endpoint=KLING_CREATE, status=500, code=5000, count=1)
    sandbox.fault(
        provider="elevenlabs", endpoint=TTS, status=429, code="too_many_concurrent_requests", count=1
    )
    sandbox.fault(provider="elevenlabs", endpoint=TTS, status=503, count=1)
    sandbox.fault(provider="elevenlabs", endpoint=SFX, status=429, code="system_busy", count=1)

    (done,) = await produce(sandbox, tmp_path, db_url, one_scene())

    assert done.task.state == "done", done.task.error
    assert done.outcomes("asset_shallows") == ["transient", "transient", "succeeded"]
    assert done.outcomes("clip_s01") == ["transient", "transient", "transient", "succeeded"]
    assert done.outcomes("narration_s01") == ["transient", "transient", "succeeded"]
    assert done.outcomes("sfx_s01") == ["transient", "succeeded"]
    assert done.outcomes("composite_s01") == done.outcomes("assembly") == ["succeeded"]
    messages = [a.message for key in done.attempts for a in done.attempts[key] if a.outcome == "transient"]
    assert all("retry later" in m for m in messages), messages
    assert any("Kling rate or concurrency limit (code 1302)" in m for m in messages)
    assert any("ElevenLabs is busy (too_many_concurrent_requests" in m for m in messages)
    info = video_info(done.workspace / done.task.final_video_path)
    assert info.video_codec == "h264" and info.audio_codec == "aac"
    # Refused calls cost nothing and were not repeated once they succeeded: one Kling task, made once.
    assert sandbox.stats()["kling"]["tasks"] == 1
    assert sum(1 for c in sandbox.calls("kling") if c["status"] == 200) == 1


CONTENT_AND_QUOTA = [
    (
        "gemini blocks the prompt",
        {"asset_prompt": "Reed-lined shallows [sandbox:block-prompt]"},
        "asset_shallows",
        ["Gemini blocked the prompt", "reword the prompt of this asset and requeue"],
    ),
    (
        "gemini's daily quota is used up",
        {"asset_prompt": "Reed-lined shallows [sandbox:quota-day]"},
        "asset_shallows",
        ["Gemini's daily quota is used up", "resets at midnight Pacific time", "or requeue tomorrow"],
    ),
    (
        "kling fails the task",
        {"motion": "Slow push in [sandbox:fail]"},
        "clip_s01",
        ["Kling could not make the clip", "Change the motion prompt or the frame, then requeue"],
    ),
    (
        "kling's content safety refuses",
        {"motion": "Slow push in [sandbox:unsafe]"},
        "clip_s01",
        ["Kling's content safety refused the image or prompt (code 1301)", "change the motion prompt"],
    ),
]


async def test_content_blocks_and_a_used_up_daily_quota_stop_the_task_saying_what_to_do(
    cheap_sandbox: SandboxProcess, sqlite_url: str, tmp_path: Path
) -> None:
    boards = [one_scene(**tweak) for _, tweak, _, _ in CONTENT_AND_QUOTA]
    outcomes = await produce(cheap_sandbox, tmp_path, sqlite_url, *boards)
    for (name, _, key, phrases), out in zip(CONTENT_AND_QUOTA, outcomes, strict=True):
        assert out.task.state == "error", name
        assert out.task.error.startswith(f"{key}: "), (name, out.task.error)
        for phrase in phrases:
            assert phrase in out.task.error, (name, out.task.error)
        # Permanent at once: one attempt, no retry.
        assert out.outcomes(key) == ["permanent"], (name, out.outcomes(key))
        assert out.items[key].state == "failed"


async def test_out_of_credit_stops_the_task_and_says_to_top_up(
    cheap_sandbox: SandboxProcess, sqlite_url: str, tmp_path: Path
) -> None:
    sandbox = cheap_sandbox
    sandbox.fault(provider="elevenlabs", endpoint=TTS, status=401, code="quota_exceeded", count=1)
    (voice,) = await produce(sandbox, tmp_path / "elevenlabs", sqlite_url, one_scene())
    sandbox.fault(provider="kling", endpoint=KLING_CREATE, status=429, code=1102, count=1)
    (clip,) = await produce(sandbox, tmp_path / "kling", sqlite_url, one_scene())

    assert voice.task.state == "error"
    assert voice.task.error.startswith(
        "narration_s01: The ElevenLabs account is out of credits (quota_exceeded)"
    )
    assert "top up or upgrade the plan, then requeue" in voice.task.error
    assert voice.outcomes("narration_s01") == ["permanent"]
    assert clip.task.state == "error"
    assert clip.task.error.startswith("clip_s01: The Kling account cannot pay for this task (code 1102")
    assert "top up the Kling account, then requeue" in clip.task.error
    assert clip.outcomes("clip_s01") == ["permanent"]


async def test_a_wrong_key_stops_the_task_naming_the_setting_to_fix(
    cheap_sandbox: SandboxProcess, sqlite_url: str, tmp_path: Path
) -> None:
    sandbox = cheap_sandbox
    (kling,) = await produce(
        sandbox, tmp_path / "kling", sqlite_url, one_scene(), kling_secret_key="sk_not_the_key"
    )
    assert kling.task.state == "error"
    assert kling.task.error.startswith("clip_s01: Kling refused the credentials")
    assert (
        f"put the right key in KLING_ACCESS_KEY and KLING_SECRET_KEY (a pair from one account) {RESTART}"
        in (kling.task.error)
    )
    assert kling.outcomes("clip_s01") == ["permanent"]

    (others,) = await produce(
        sandbox,
        tmp_path / "others",
        sqlite_url,
        one_scene(),
        gemini_api_key="AIza-not-the-key",
        elevenlabs_api_key="sk_not_the_key",
    )
    assert others.task.state == "error"
    gemini = f"Gemini refused the API key (API_KEY_INVALID): put the right key in GEMINI_API_KEY {RESTART}"
    voice = (
        f"ElevenLabs refused the API key (invalid_api_key): put the right key in ELEVENLABS_API_KEY {RESTART}"
    )
    wanted = {"asset_shallows": gemini, "narration_s01": voice, "sfx_s01": voice}
    # The first failure stops the task; the items already running end the same way.
    assert any(others.task.error.startswith(f"{key}: {text}") for key, text in wanted.items()), (
        others.task.error
    )
    failed = {key: item.error for key, item in others.items.items() if item.state == "failed"}
    assert failed, others.items
    for key, error in failed.items():
        assert error.startswith(wanted[key]), (key, error)
        assert others.outcomes(key) == ["permanent"]
