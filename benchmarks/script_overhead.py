"""script_overhead: what each provider script costs beyond its call, on a quiet machine.

Each script runs as the daemon runs it (a new `python scripts/....py` process, the sandbox as the
provider, answering at once). Its own overhead is the time from the process's start to its first
request reaching the sandbox, plus the time from the sandbox's last answer to the process's exit:
interpreter start-up, imports, argument and input checks, writing the output. The scripts get what
the daemon gives them: its environment, with the FFmpeg it found (IMAGEIO_FFMPEG_EXE). Both ends are read
from the sandbox's request log (every request, polls and downloads too) and this process's clock
(one host, one wall clock).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image

from benchmarks.harness import ROOT, Context, sandbox, table, target
from daemon.paths import FFMPEG_ENV, ffmpeg_executable
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


def _measure(box: SandboxProcess, script: str, args: list[str], env: dict[str, str]) -> dict[str, float]:
    before = max((r["seq"] for r in box.get("/_sandbox/requests")["requests"]), default=0)
    started = time.time()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / f"{script}.py"), *args],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    ended = time.time()
    if proc.returncode != 0:
        raise RuntimeError(f"{script} exited {proc.returncode}: {proc.stdout[-500:]} {proc.stderr[-500:]}")
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
        samples: dict[str, list[dict[str, float]]] = {}
        for n in range(runs):
            for script, args in _commands(folder, frame, n).items():
                samples.setdefault(script, []).append(_measure(box, script, args, env))
    for script, got in samples.items():
        scripts[script] = {
            key: round(statistics.median(s[key] for s in got), 3)
            for key in ("start_s", "finish_s", "overhead_s", "total_s")
        } | {"max_overhead_s": round(max(s["overhead_s"] for s in got), 3), "calls": got[0]["calls"]}
    worst = max(s["overhead_s"] for s in scripts.values())
    return {
        "runs": runs,
        "target_s": TARGET_S,
        "scripts": scripts,
        "worst_median_overhead_s": worst,
        "met": worst <= TARGET_S,
    }


def render(result: dict[str, Any]) -> str:
    rows = [
        [name, s["start_s"], s["finish_s"], s["overhead_s"], s["max_overhead_s"], s["total_s"], s["calls"]]
        for name, s in result["scripts"].items()
    ]
    head = ["script", "start->1st request", "last answer->exit", "overhead", "max", "total", "requests"]
    title = f"script_overhead: medians of {result['runs']} runs against the sandbox (seconds)"
    verdict = (
        f"worst median overhead = {result['worst_median_overhead_s']} s "
        f"(target <= {result['target_s']} s: {target(result['met'])})"
    )
    return table(title, head, rows) + "\n" + verdict
