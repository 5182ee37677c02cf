"""A smaller stand-in for a file over the workspace's upload cap: a lower-bitrate proxy of a video,
a JPEG of an image, sized to fit under the cap. Made once per source (kept beside the project's
folders, services/paths.py: preview_of) and made again only when the source is newer."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from daemon.paths import ffmpeg_executable
from services.paths import preview_of

FILL = 0.8  # of the cap: room for the container and the encoder's overshoot
AUDIO_BPS = 64_000
MIN_VIDEO_BPS = 60_000


class PreviewFailed(Exception):
    """No preview under the cap could be made (the board names the file instead)."""


@dataclass(frozen=True)
class Preview:
    path: Path
    full_bytes: int
    cap: int

    def note(self) -> str:
        return (
            f"Shown here as a smaller preview: the full file is {_mb(self.full_bytes)}, over this "
            f"workspace's upload limit of {_mb(self.cap)}. The full file is where Output points."
        )


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"


class NoPreviewYet(Exception):
    """The preview is not made yet, and the caller asked not to make it (a lookup under a lock)."""


async def make_preview(source: Path, cap: int, workspace: Path, *, make: bool = True) -> Preview:
    """The file's preview under `cap`, made when missing or older than the file (unless not `make`:
    then NoPreviewYet)."""
    video = source.suffix.lower() == ".mp4"
    relative = source.relative_to(workspace).as_posix()
    target = workspace / preview_of(relative, ".mp4" if video else ".jpg")
    size = source.stat().st_size
    if target.exists() and target.stat().st_mtime >= source.stat().st_mtime and target.stat().st_size <= cap:
        return Preview(target, size, cap)
    if not make:
        raise NoPreviewYet(relative)
    target.parent.mkdir(parents=True, exist_ok=True)
    if video:
        await _video_proxy(source, target, cap)
    else:
        await asyncio.to_thread(_small_jpeg, source, target, cap)
    if target.stat().st_size > cap:
        raise PreviewFailed(f"{source.name}: no preview under {_mb(cap)} could be made")
    return Preview(target, size, cap)


async def _run(*args: str, check: bool = True) -> str:
    proc = await asyncio.create_subprocess_exec(
        ffmpeg_executable()[0],
        "-hide_banner",
        "-nostdin",
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    text = err.decode(errors="replace")
    if check and proc.returncode != 0:
        raise PreviewFailed(text.strip().splitlines()[-1] if text.strip() else "ffmpeg failed")
    return text


async def _duration(source: Path) -> float:
    text = await _run("-i", str(source), check=False)  # no output named: ffmpeg describes the input
    found = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", text)
    if found is None:
        raise PreviewFailed(f"{source.name}: its duration could not be read")
    h, m, s = found.groups()
    return int(h) * 3600 + int(m) * 60 + float(s)


async def _video_proxy(source: Path, target: Path, cap: int) -> None:
    """Fits the whole video under the cap: the bitrate the cap allows for its length, 480p."""
    seconds = max(1.0, await _duration(source))
    for fill in (FILL, FILL * 0.7, FILL * 0.5):
        video_bps = int(cap * fill * 8 / seconds) - AUDIO_BPS
        if video_bps < MIN_VIDEO_BPS:
            raise PreviewFailed(f"{source.name}: {seconds:.0f} s of video cannot fit under {_mb(cap)}")
        partial = target.with_suffix(".part.mp4")
        await _run(
            "-y",
            "-i",
            str(source),
            "-vf",
            "scale=-2:'min(480,ih)'",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-b:v",
            str(video_bps),
            "-maxrate",
            str(video_bps),
            "-bufsize",
            str(video_bps * 2),
            "-c:a",
            "aac",
            "-b:a",
            str(AUDIO_BPS),
            "-movflags",
            "+faststart",
            str(partial),
        )
        partial.replace(target)
        if target.stat().st_size <= cap:
            return


def _small_jpeg(source: Path, target: Path, cap: int) -> None:
    with Image.open(source) as opened:
        image = opened.convert("RGB")
    for _ in range(8):
        image.save(target, "JPEG", quality=85, optimize=True)
        if target.stat().st_size <= cap:
            return
        image = image.resize((max(1, image.width * 3 // 4), max(1, image.height * 3 // 4)))
