"""FFmpeg: find it, run it, and measure media by decoding (the bundled build has no ffprobe)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

MEASURE_RATE = 8000  # Hz; plenty to count samples, cheap to decode


class DecodeError(Exception):
    """FFmpeg could not decode a file; the message holds the end of its log."""


@dataclass
class VideoProbe:
    width: int
    height: int
    frames: int
    fps: float
    video_codec: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps if self.fps else 0.0


@cache
def executable() -> str:
    """IMAGEIO_FFMPEG_EXE when set (the daemon passes the one it found: no search, no import at each
    script's start), else a system ffmpeg on PATH, else the one shipped in the imageio-ffmpeg wheel."""
    chosen = os.environ.get("IMAGEIO_FFMPEG_EXE")
    if chosen:
        return chosen
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def run(args: list[str], timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Runs ffmpeg with the given arguments; raises DecodeError on a non-zero exit."""
    cmd = [executable(), "-hide_banner", "-nostdin", *args]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, errors="replace", timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise DecodeError(f"ffmpeg took longer than {timeout} s") from exc
    if proc.returncode != 0:
        raise DecodeError(_tail(proc.stderr))
    return proc


def audio_duration(path: Path) -> float:
    """Seconds of audio, by decoding every sample (container headers of MP3s can lie)."""
    cmd = [executable(), "-v", "error", "-nostdin", "-i", str(path), "-map", "0:a:0"]
    cmd += ["-ac", "1", "-ar", str(MEASURE_RATE), "-f", "s16le", "-"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0 or not proc.stdout:
        raise DecodeError(_tail(proc.stderr.decode(errors="replace")) or "no audio samples")
    return len(proc.stdout) / 2 / MEASURE_RATE


def probe_video(path: Path) -> VideoProbe:
    """Decodes every frame of the first video stream; raises DecodeError when it does not decode."""
    proc = run(["-v", "info", "-i", str(path), "-map", "0:v:0", "-f", "null", "-"])
    log = proc.stderr
    stream = re.search(r"Stream #\S+: Video: (\w+).*?, (\d{2,5})x(\d{2,5})", log)
    frames = re.findall(r"frame=\s*(\d+)", log)
    fps = re.search(r"(\d+(?:\.\d+)?) fps", log)
    if stream is None or not frames or int(frames[-1]) == 0:
        raise DecodeError("no decodable video frames")
    return VideoProbe(
        width=int(stream.group(2)),
        height=int(stream.group(3)),
        frames=int(frames[-1]),
        fps=float(fps.group(1)) if fps else 0.0,
        video_codec=stream.group(1),
    )


def _tail(log: str, lines: int = 6) -> str:
    return " | ".join(line.strip() for line in log.strip().splitlines()[-lines:])
