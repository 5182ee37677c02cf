"""The daemon killed at every point of an upload: each video ends on the channel exactly once,
complete, with its thumbnail and one caption track, and the quota the daemon booked never counts
less than YouTube charged."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from daemon.db.engine import make_engine
from daemon.db.models import YouTubeQuota
from tests.support.chaos import audit
from tests.support.daemon_proc import DaemonProcess, run_cli
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import STORYBOARD, daemon_env, script_shims, sign_in_youtube, write_channel

# In the order one upload passes them; each kills the daemon once (CRASH_KILLS_PARENT).
POINTS = (
    "youtube.before_session",
    "youtube.after_session",
    "youtube.mid_upload",
    "youtube.after_last_chunk",
    "youtube.before_thumbnail",
    "youtube.before_captions",
)
PROJECTS = ("heron-one", "heron-two")


@pytest.mark.parametrize("database", ["sqlite", "postgres"], indirect=True)
@pytest.mark.timeout(600)
async def test_the_daemon_killed_at_every_point_of_an_upload_publishes_each_video_once(
    fresh_sandbox: SandboxProcess, database: str, tmp_path: Path
) -> None:
    fresh_sandbox.configure(cheap_media=True, kling_seconds=120)
    channels = tmp_path / "channels"
    write_channel(channels, youtube={"privacy": "unlisted", "tags": ["herons"]})
    # 256 KiB chunks: the 1080p cut of one scene is several chunks, so a kill can come mid-upload.
    scripts = script_shims(tmp_path / "scripts", {"upload_youtube": ["--chunk-kib", "256"]})
    env = {
        **daemon_env(fresh_sandbox, tmp_path / "ws", channels, database, scripts_dir=scripts),
        "CLAIM_POLL_S": "0.2",
        "LEASE_TTL_S": "5",
        "RETRY_BASE_S": "0.2",
        "RETRY_CAP_S": "1",
    }
    await sign_in_youtube(fresh_sandbox, env, "nature")
    for slug in PROJECTS:
        board = {**STORYBOARD, "title": f"The Heron, {slug}", "scenes": STORYBOARD["scenes"][:1]}
        (tmp_path / f"{slug}.yaml").write_text(yaml.safe_dump(board))
        done = run_cli(
            env,
            "enqueue",
            "--channel",
            "nature",
            "--storyboard",
            str(tmp_path / f"{slug}.yaml"),
            "--slug",
            slug,
        )
        assert done.returncode == 0, done.stderr

    crashing = {
        **env,
        "CRASH_AT": ",".join(POINTS),
        "CRASH_ONCE": str(tmp_path / "killed"),
        "CRASH_KILLS_PARENT": "1",
    }
    deaths = 0
    deadline = time.monotonic() + 420
    while True:
        assert time.monotonic() < deadline, f"not every upload finished ({deaths} kills so far)"
        daemon = DaemonProcess(crashing, tmp_path / "daemon.log", "machine-1").start()
        try:
            while (
                daemon.proc is not None
                and daemon.proc.poll() is None
                and not await _all_done(database, fresh_sandbox, tmp_path)
            ):
                assert time.monotonic() < deadline, "the uploads did not finish"
                time.sleep(0.3)
        finally:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.signal()
                daemon.wait(timeout=30)
        code = daemon.proc.returncode if daemon.proc else 0
        if code == -9:
            deaths += 1
            continue
        break

    # Sessions were stored as they were made (a session URL is longer than a Kling task id: on
    # PostgreSQL it once did not fit, and the run counted as crashed).
    assert [e for e in daemon.events() if e["event"] == "item_run_crashed"] == []
    killed_at = sorted(p.name.removeprefix("killed.") for p in tmp_path.glob("killed.*"))
    assert killed_at == sorted(POINTS)
    assert deaths >= len(POINTS) // 2  # two uploads at once may share a kill
    result = await audit(database, fresh_sandbox, tmp_path / "ws")
    assert result.problems == []
    assert [t.state for t in result.tasks] == ["done", "done"]

    videos = fresh_sandbox.get("/_sandbox/youtube/videos")["videos"]
    complete = [v for v in videos if v["complete"]]
    by_title: dict[str, list[dict[str, Any]]] = {}
    for video in complete:
        by_title.setdefault(video["snippet"]["title"], []).append(video)
    assert sorted(by_title) == [f"The Heron, {slug}" for slug in PROJECTS]
    for slug, video in ((s, by_title[f"The Heron, {s}"]) for s in PROJECTS):
        assert len(video) == 1, f"{slug} is on the channel {len(video)} times"
        published = video[0]
        assert published["thumbnail"] is not None
        assert len(published["captions"]) == 1
        assert published["status"]["privacyStatus"] == "unlisted"
        assert "herons" in published["snippet"]["tags"]
        final = next(t for t in result.tasks if t.project_slug == slug).final_video_path
        assert published["size"] == (tmp_path / "ws" / final).stat().st_size  # every byte arrived
    # Booked before each call, set right after: never less than YouTube charged the project.
    charged = fresh_sandbox.get("/_sandbox/youtube/quota")["usage"]
    engine = make_engine(database)
    try:
        async with engine.connect() as conn:
            booked = (await conn.execute(select(YouTubeQuota))).all()
    finally:
        await engine.dispose()
    assert sum(b.uploads for b in booked) >= sum(c["uploads"] for c in charged) >= len(PROJECTS)
    assert sum(b.units for b in booked) >= sum(c["units"] for c in charged)


async def _all_done(database: str, sandbox: SandboxProcess, tmp_path: Path) -> bool:
    result = await audit(database, sandbox, tmp_path / "ws")
    return len(result.tasks) == len(PROJECTS) and all(t.state == "done" for t in result.tasks)
