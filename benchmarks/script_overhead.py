"""script_overhead: what each provider script costs beyond its call, on a quiet machine.

Each script runs as the daemon runs it (forked by the daemon's fork server, daemon/runner.py), and
as a new `python scripts/....py` process (SCRIPT_FORK_SERVER=false), the sandbox as the provider,
answering at once. Its own overhead is the time from the process's start to its first
request reaching the sandbox, plus the time from the sandbox's last answer to the process's exit:
interpreter start-up, imports, argument and input checks, writing the output. The scripts get what
the daemon gives them: its environment, with the FFmpeg it found (IMAGEIO_FFMPEG_EXE). Both ends are read
from the sandbox's request log (every request, polls and downloads too) and this process's clock
(one host, one wall clock).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image

from benchmarks.harness import ROOT, Context, sandbox, table, target
from daemon.paths import FFMPEG_ENV, ffmpeg_executable
from daemon.runner import SubprocessRunner
from tests.integration.test_scripts_support import script_env
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import youtube_env

NAME = "script_overhead"
TARGET_S = 0.3


def _commands(folder: Path, frame: Path, run: int) -> dict[str, list[str]]:
    out = folder / f"run{run}"
    out.mkdir(exist_ok=True)
    return {
        "generate_storyboard": ["--title", "The Heron's Patience", "--topic", "A grey heron fishing at dawn",
                                "--direction", "Calm and observational", "--scenes", "2",
                                "--output", str(out / "storyboard.json")],
        "generate_asset": ["--prompt", "Misty river delta at dawn, still water",
                           "--output", str(out / "env.png")],
        "generate_video": ["--image", str(frame), "--prompt", "The heron lifts one foot slowly.",
                           "--duration", "5", "--external-id", f"bench_clip_{run}_{time.time_ns()}",
                           "--output", str(out / "clip.mp4"), "--poll-interval", "0.2"],
        "generate_audio": ["--text", "At first light, the delta belongs to the patient.",
                           "--voice-id", "JBFqnCBsd6RMkjVDRZzb", "--output", str(out / "narration.mp3")],
        "generate_sound_effects": ["--prompt", "Dawn river ambience, gentle water lapping", "--duration", "6",
                                   "--output", str(out / "sfx.mp3")],
        # The clip made above, published: the token, the session, its chunk, the thumbnail's and
        # captions' calls skipped (no files given), the marker a new one each run.
        "upload_youtube": ["--video", str(out / "clip.mp4"), "--title", "The Heron's Patience",
                           "--marker", f"nvd-bench{run}{time.time_ns() % 10**6}",
                           "--output", str(out / "upload.json")],
    }  # fmt: skip


async def _measure(
    box: SandboxProcess, script: str, args: list[str], env: dict[str, str], runner: SubprocessRunner
) -> dict[str, float]:
    """One run, started by `runner` as the daemon starts it (forked, or as a new interpreter)."""
    before = max((r["seq"] for r in box.get("/_sandbox/requests")["requests"]), default=0)
    argv = [sys.executable, str(ROOT / "scripts" / f"{script}.py"), *args]
    started = time.time()
    outcome = await runner.run(
        argv, env=env, timeout=120, on_event=_ignore, cancel=asyncio.Event(), label=script
    )
    ended = time.time()
    if outcome.exit_code != 0:
        raise RuntimeError(f"{script} exited {outcome.exit_code}: {outcome.message()}")
    calls = box.get("/_sandbox/requests", since=before)["requests"]
    first = min(c["received"] for c in calls)
    last = max(c["answered"] for c in calls)
    return {
        "start_s": first - started,
        "finish_s": ended - last,
        "overhead_s": (first - started) + (ended - last),
        "total_s": ended - started,
        "calls": len(calls),
    }


async def run(ctx: Context) -> dict[str, Any]:
    runs = 2 if ctx.quick else 7
    folder = ctx.folder("script-overhead")
    frame = folder / "frame.png"
    Image.new("RGB", (1920, 1080), (90, 120, 140)).save(frame)
    scripts: dict[str, Any] = {}
    with sandbox(ctx.folder("sandbox-overhead")) as box:
        box.configure(kling_seconds=1, gemini_image_seconds=0, gemini_text_seconds=0, tts_seconds=0,
                      sfx_seconds=0)  # fmt: skip
        token = box.post("/_sandbox/youtube/refresh-token", {})["refresh_token"]
        env = {**script_env(box), **youtube_env(box), "YOUTUBE_REFRESH_TOKEN": token}
        env[FFMPEG_ENV] = ffmpeg_executable()[0]  # as the daemon gives every script
        runners = {forked: SubprocessRunner(folder / "run", fork_server=forked) for forked in (True, False)}
        try:
            # The fork server starts with the first script a daemon runs: once, not measured.
            await _measure(
                box, "generate_asset", _commands(folder, frame, runs)["generate_asset"], env, runners[True]
            )
            for forked, runner in runners.items():
                samples: dict[str, list[dict[str, float]]] = {}
                for n in range(runs):
                    for script, args in _commands(folder, frame, n).items():
                        samples.setdefault(script, []).append(await _measure(box, script, args, env, runner))
                scripts[forked] = _medians(samples)
        finally:
            for runner in runners.values():
                await runner.close()
    worst = max(s["overhead_s"] for s in scripts[True].values())
    return {
        "runs": runs,
        "target_s": TARGET_S,
        "scripts": scripts[True],
        "worst_median_overhead_s": worst,
        "new_interpreter": {
            "scripts": scripts[False],
            "worst_median_overhead_s": max(s["overhead_s"] for s in scripts[False].values()),
        },
        "met": worst <= TARGET_S,
    }


def _medians(samples: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    return {
        script: {
            key: round(statistics.median(s[key] for s in got), 3)
            for key in ("start_s", "finish_s", "overhead_s", "total_s")
        }
        | {"max_overhead_s": round(max(s["overhead_s"] for s in got), 3), "calls": got[0]["calls"]}
        for script, got in samples.items()
    }


async def _ignore(event: dict[str, Any]) -> None:
    pass


def render(result: dict[str, Any]) -> str:
    fresh = (result.get("new_interpreter") or {}).get("scripts", {})
    rows = [
        [name, s["start_s"], s["finish_s"], s["overhead_s"], s["max_overhead_s"], s["total_s"], s["calls"],
         (fresh.get(name) or {}).get("overhead_s")]
        for name, s in result["scripts"].items()
    ]  # fmt: skip
    head = ["script", "start->1st request", "last answer->exit", "overhead", "max", "total", "requests",
            "overhead, new interpreter"]  # fmt: skip
    title = (
        f"script_overhead: medians of {result['runs']} runs against the sandbox (seconds), forked as the "
        "daemon starts them; the last column as a new interpreter (SCRIPT_FORK_SERVER=false)"
    )
    verdict = (
        f"worst median overhead = {result['worst_median_overhead_s']} s "
        f"(target <= {result['target_s']} s: {target(result['met'])}); as a new interpreter: "
        f"{(result.get('new_interpreter') or {}).get('worst_median_overhead_s')} s"
    )
    return table(title, head, rows) + "\n" + verdict
