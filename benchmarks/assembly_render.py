"""assembly_render: how long the final cut takes to make, per second of video, at 1080p.

scripts/assemble_video.py runs as the daemon runs it (a new process) on media made here with
FFmpeg: per scene a 5 s 720p clip (Kling's standard mode, upscaled), a narration with its words
file (so the captions are burned in) and an ambience bed; a music bed, the title card and an end card
up to a 40 s floor; the channel's defaults (1920x1080, 24 fps, crossfades, fades, captions, every
file's loudness measured, the ducking, the mastering passes, the thumbnail). The figure is the script's wall
time over the video's length: under 1.0, a video takes less time to assemble than to watch.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import ROOT, Context, table, target
from tests.support.media import FFMPEG

NAME = "assembly_render"
TARGET = 1.0
WORDS = [
    "At",
    "first",
    "light",
    "the",
    "river",
    "wakes",
    "and",
    "every",
    "creature",
    "along",
    "its",
    "banks",
    "begins",
    "the",
    "patient",
    "work",
]


def _ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-v", "error", "-y", *args], check=True)


def _scene(folder: Path, n: int, narration_s: float) -> list[str]:
    clip, narration, bed = folder / f"clip{n}.mp4", folder / f"narration{n}.mp3", folder / f"bed{n}.mp3"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=24", "-t", "5", "-c:v", "libx264",
            "-preset", "veryfast", "-pix_fmt", "yuv420p", str(clip))  # fmt: skip
    _ffmpeg("-f", "lavfi", "-i", f"sine=frequency={170 + 20 * n}:duration={narration_s}",
            "-af", "volume=0.5,tremolo=f=3:d=0.6", "-c:a", "libmp3lame", str(narration))  # fmt: skip
    _ffmpeg("-f", "lavfi", "-i", f"anoisesrc=d=4:c=pink:a=0.4:seed={n}", "-c:a", "libmp3lame", str(bed))
    step = narration_s / len(WORDS)
    words = [{"text": w, "start": 0.1 + i * step, "end": 0.1 + (i + 0.8) * step} for i, w in enumerate(WORDS)]
    (folder / f"narration{n}.mp3.words.json").write_text(
        json.dumps({"text": " ".join(WORDS), "words": words})
    )
    return ["--scene", str(clip), str(narration), str(bed)]


async def run(ctx: Context) -> dict[str, Any]:
    return await asyncio.to_thread(_measure, ctx.folder("assembly-render"), ctx.quick)


def _measure(folder: Path, quick: bool) -> dict[str, Any]:
    scenes = 2 if quick else 6
    args: list[str] = []
    for n in range(1, scenes + 1):
        args += _scene(folder, n, 4.0 + (n % 3) * 0.7)
    # A music bed (looped by the assembly, ducked under the voice), the title over the opening and
    # an end card up to a 40 s floor: everything a channel may ask of the cut.
    music = folder / "music.mp3"
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=55:duration=20", "-f", "lavfi", "-i",
            "sine=frequency=330:duration=20", "-filter_complex", "amix=inputs=2", "-c:a", "libmp3lame",
            str(music))  # fmt: skip
    size = ["--width", "640", "--height", "360"] if quick else []
    command = [sys.executable, str(ROOT / "scripts" / "assemble_video.py"), *args, *size,
               "--music", str(music), "--title", "The Patient River", "--title-card",
               "--min-length", "40", "--output", str(folder / "final.mp4")]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"assemble_video.py failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    result = next(json.loads(line) for line in proc.stdout.splitlines() if '"event": "result"' in line)
    meta = result["meta"]
    ratio = wall / meta["duration_s"]
    return {
        "scenes": scenes,
        "size": f"{meta['width']}x{meta['height']}",
        "video_s": meta["duration_s"],
        "wall_s": round(wall, 2),
        "render_s_per_video_s": round(ratio, 3),
        "captions": meta["captions"],
        "end_card_s": meta["end_card_s"],
        "loudness_lufs": meta["loudness_lufs"],
        "target": TARGET,
        "met": ratio <= TARGET,
    }


def render(result: dict[str, Any]) -> str:
    row = [result[k] for k in ("scenes", "size", "video_s", "wall_s", "render_s_per_video_s")]
    text = table(
        "assembly_render: assemble_video.py on 720p clips, captions, music, crossfades, title and end "
        "card, mastering, thumbnail",
        ["scenes", "size", "video s", "wall s", "s per video s"],
        [row],
    )
    ratio = result["render_s_per_video_s"]
    return f"{text}\nrender seconds per video second = {ratio} (target <= {TARGET}: {target(result['met'])})"
