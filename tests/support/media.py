"""Decode media with the bundled FFmpeg and measure it: duration, size, loudness per window."""

from __future__ import annotations

import array
import math
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
RATE = 16000


@dataclass
class VideoInfo:
    width: int
    height: int
    frames: int
    fps: float
    duration: float
    video_codec: str
    audio_codec: str | None


def decode_audio(path: Path, stream: str = "a:0", band: str | None = None) -> array.array[int]:
    """Mono 16 kHz signed 16-bit samples of the file's audio (through the FFmpeg audio filter
    `band`, e.g. a low-pass to hear only the bass); raises if it does not decode."""
    out = subprocess.run(
        [
            FFMPEG,
            "-v",
            "error",
            "-i",
            str(path),
            "-map",
            f"0:{stream}",
            *(["-af", band] if band else []),
            "-ac",
            "1",
            "-ar",
            str(RATE),
            "-f",
            "s16le",
            "-",
        ],
        capture_output=True,
        check=True,
    ).stdout
    samples = array.array("h")
    samples.frombytes(out)
    return samples


def audio_duration(path: Path) -> float:
    return len(decode_audio(path)) / RATE


def rms_dbfs(samples: array.array[int], start: float = 0.0, end: float | None = None) -> float:
    """RMS level of [start, end) seconds in dBFS (-inf for digital silence)."""
    lo = int(start * RATE)
    hi = len(samples) if end is None else min(len(samples), int(end * RATE))
    if hi <= lo:
        return -math.inf
    total = sum(s * s for s in samples[lo:hi])
    rms = math.sqrt(total / (hi - lo))
    return -math.inf if rms == 0 else 20 * math.log10(rms / 32768)


def video_info(path: Path) -> VideoInfo:
    """Decodes every frame of the first video stream (a file that does not decode raises)."""
    proc = subprocess.run(
        [FFMPEG, "-v", "info", "-i", str(path), "-map", "0:v:0", "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    err = proc.stderr
    vm = re.search(r"Stream #\S+: Video: (\w+).*?, (\d{2,5})x(\d{2,5})", err)
    fm = re.findall(r"frame=\s*(\d+)", err)
    fps_m = re.search(r"(\d+(?:\.\d+)?) fps", err)
    am = re.search(r"Stream #\S+: Audio: (\w+)", err)
    if vm is None or not fm:
        raise ValueError(f"{path} has no decodable video stream:\n{err[-2000:]}")
    frames = int(fm[-1])
    fps = float(fps_m.group(1)) if fps_m else 0.0
    return VideoInfo(
        width=int(vm.group(2)),
        height=int(vm.group(3)),
        frames=frames,
        fps=fps,
        duration=frames / fps if fps else 0.0,
        video_codec=vm.group(1),
        audio_codec=am.group(1) if am else None,
    )


def frame_at(path: Path, seconds: float, out: Path) -> Path:
    """Extracts one frame as PNG (for comparing pictures)."""
    subprocess.run(
        [FFMPEG, "-v", "error", "-y", "-ss", f"{seconds:.3f}", "-i", str(path), "-frames:v", "1", str(out)],
        check=True,
    )
    return out


def moov_before_mdat(path: Path) -> bool:
    """True for a faststart MP4 (the index precedes the media data)."""
    data = path.read_bytes()
    moov, mdat = data.find(b"moov"), data.find(b"mdat")
    return 0 <= moov < mdat


def srt_cues(path: Path) -> list[tuple[float, float, str]]:
    """A SubRip file's cues: (start s, end s, text with its lines joined by a space)."""
    stamp = r"(\d\d):(\d\d):(\d\d),(\d{3})"
    cues = []
    for block in path.read_text(encoding="utf-8").strip().split("\n\n"):
        lines = block.strip().splitlines()
        m = re.fullmatch(f"{stamp} --> {stamp}", lines[1])
        assert lines[0].isdigit() and m is not None, block
        h, mi, s, ms, h2, mi2, s2, ms2 = (int(g) for g in m.groups())
        start = h * 3600 + mi * 60 + s + ms / 1000
        end = h2 * 3600 + mi2 * 60 + s2 + ms2 / 1000
        cues.append((start, end, " ".join(lines[2:])))
    return cues


def subtitle_tracks(path: Path) -> list[str]:
    """The MP4's subtitle streams, as '<codec> <language>' (e.g. 'mov_text eng')."""
    err = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    return [
        f"{codec} {lang}"
        for lang, codec in re.findall(r"Stream #\d+:\d+(?:\[0x\w+\])?\((\w+)\): Subtitle: (\w+)", err)
    ]


def loudness(path: Path) -> tuple[float, float]:
    """(integrated LUFS, true peak dBTP) of the file's audio, as FFmpeg's ebur128 measures them."""
    err = subprocess.run(
        [
            FFMPEG,
            "-hide_banner",
            "-i",
            str(path),
            "-map",
            "0:a:0",
            "-af",
            "ebur128=peak=true",
            "-f",
            "null",
            "-",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    summary = err.split("Summary:")[-1]
    integrated = re.search(r"I:\s+(-?[\d.]+) LUFS", summary)
    peak = re.search(r"True peak:\s+Peak:\s+(-?[\d.]+) dBFS", summary)
    assert integrated is not None and peak is not None, summary
    return float(integrated[1]), float(peak[1])


def keyframe_times(path: Path) -> list[float]:
    """The presentation times of the video's keyframes."""
    err = subprocess.run(
        [FFMPEG, "-hide_banner", "-skip_frame", "nokey", "-i", str(path), "-map", "0:v:0", "-vf", "showinfo",
         "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr  # fmt: skip
    return [float(t) for t in re.findall(r"pts_time:\s*([\d.]+)", err)]


def stream_lines(path: Path) -> list[str]:
    """FFmpeg's one-line description of each stream (codec, profile, colour, rate, bitrate)."""
    err = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    return [line.strip() for line in err.splitlines() if line.strip().startswith("Stream #")]


def frame_types(path: Path) -> str:
    """The video's picture types in decoding order, one letter each (I, P, B)."""
    err = subprocess.run(
        [FFMPEG, "-hide_banner", "-i", str(path), "-map", "0:v:0", "-vf", "showinfo", "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    return "".join(re.findall(r"\btype:([IPB])\b", err))


def frozen_runs(path: Path, min_frames: int = 4, fps: float = 24.0) -> list[tuple[float, float]]:
    """Runs of at least `min_frames` identical frames, as (start s, seconds), by FFmpeg's freezedetect."""
    err = subprocess.run(
        [FFMPEG, "-hide_banner", "-i", str(path), "-map", "0:v:0", "-vf",
         f"freezedetect=n=0.0005:d={(min_frames - 0.5) / fps:.4f}", "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr  # fmt: skip
    starts = [float(t) for t in re.findall(r"freeze_start: ([\d.]+)", err)]
    lengths = [float(t) for t in re.findall(r"freeze_duration: ([\d.]+)", err)]
    return list(zip(starts, [*lengths, *([math.inf] * (len(starts) - len(lengths)))], strict=True))
