"""The final cut as one FFmpeg filtergraph: per scene a clip fitted to its narration plus a tail,
the SFX bed looped under the narration, scenes concatenated, mastered to its loudness by a linear
gain and a true-peak limiter."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

TRUE_PEAK_MAX_DB = -1.0  # the final file's true peak may not pass this (YouTube's loudness advice)
# The limiter's ceiling, at 4x oversampling (so it catches the peaks between samples too); the
# margin to TRUE_PEAK_MAX_DB is room for the AAC encode's overshoot.
LIMIT_DB = -2.0
OVERSAMPLE_HZ = 192_000
LOUDNESS_TOLERANCE = 0.5  # the final file's integrated loudness is the target +- this
SILENT_LUFS = -70.0  # below this there is nothing to bring up
AUDIO_FORMAT = "aresample=48000,aformat=sample_fmts=fltp:channel_layouts=stereo"


@dataclass(frozen=True)
class SceneFiles:
    clip: Path
    narration: Path
    sfx: Path


@dataclass(frozen=True)
class SceneTiming:
    start_s: float
    narration_s: float
    length_s: float

    @property
    def end_s(self) -> float:
        return self.start_s + self.length_s

    def as_meta(self, index: int) -> dict[str, float | int]:
        return {
            "index": index,
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "narration_end_s": round(self.start_s + self.narration_s, 3),
        }


@dataclass(frozen=True)
class Format:
    width: int = 1920
    height: int = 1080
    fps: int = 24


@dataclass(frozen=True)
class Loudness:
    """EBU R128 as FFmpeg's ebur128 filter measures it."""

    integrated: float  # LUFS
    true_peak: float  # dBTP


def timeline(narration_s: list[float], tail_s: float, fps: int) -> list[SceneTiming]:
    """Scene lengths are whole frames, so concatenated video and audio never drift apart."""
    timings: list[SceneTiming] = []
    start = 0.0
    for seconds in narration_s:
        frames = math.ceil((seconds + tail_s) * fps - 1e-6)
        length = frames / fps
        timings.append(SceneTiming(start, seconds, length))
        start += length
    return timings


def audio_chains(
    timings: list[SceneTiming], narration_input: list[int], sfx_input: list[int], sfx_db: float
) -> list[str]:
    """Per scene: the narration padded with silence to the scene's length, the (looped) bed at
    `sfx_db` under it, mixed without amix's default halving of each input."""
    chains = []
    for i, timing in enumerate(timings):
        length = f"{timing.length_s:.6f}"
        chains.append(
            f"[{narration_input[i]}:a:0]{AUDIO_FORMAT},apad,atrim=duration={length},asetpts=PTS-STARTPTS[n{i}]"
        )
        chains.append(
            f"[{sfx_input[i]}:a:0]{AUDIO_FORMAT},volume={sfx_db}dB,apad,atrim=duration={length},asetpts=PTS-STARTPTS[s{i}]"
        )
        chains.append(f"[n{i}][s{i}]amix=inputs=2:duration=first:normalize=0[a{i}]")
    return chains


def video_chains(timings: list[SceneTiming], clip_input: list[int], fmt: Format) -> list[str]:
    """Per scene: the clip at the output size (letterboxed if its aspect differs), its last frame
    held when the narration runs longer, trimmed to the scene's length."""
    chains = []
    for i, timing in enumerate(timings):
        length = f"{timing.length_s:.6f}"
        chains.append(
            f"[{clip_input[i]}:v:0]setpts=PTS-STARTPTS,fps={fmt.fps},"
            f"scale={fmt.width}:{fmt.height}:force_original_aspect_ratio=decrease"
            ":out_color_matrix=bt709:out_range=tv,"
            f"pad={fmt.width}:{fmt.height}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1,format=yuv420p,"
            f"tpad=stop_mode=clone:stop_duration={length},trim=duration={length},setpts=PTS-STARTPTS[v{i}]"
        )
    return chains


def master(gain_db: float) -> str:
    """The mix to its loudness: one linear gain, then a limiter at 4x oversampling that only touches
    the peaks the gain would push past LIMIT_DB (so the level never pumps), back to 48 kHz."""
    ceiling = 10 ** (LIMIT_DB / 20)
    return (
        f"volume={gain_db:.2f}dB,aresample={OVERSAMPLE_HZ},"
        f"alimiter=limit={ceiling:.4f}:attack=5:release=50:level=false:latency=true,{AUDIO_FORMAT}"
    )


def measure_graph(timings: list[SceneTiming], sfx_db: float, gain_db: float | None) -> str:
    """Audio only (inputs: narration, sfx per scene): the mix as it will be (mastered with
    `gain_db`, or as it is), measured by ebur128."""
    n = len(timings)
    chains = audio_chains(timings, [2 * i for i in range(n)], [2 * i + 1 for i in range(n)], sfx_db)
    joined = "".join(f"[a{i}]" for i in range(n))
    mastered = "" if gain_db is None else f",{master(gain_db)}"
    chains.append(f"{joined}concat=n={n}:v=0:a=1{mastered},{METER}[out]")
    return ";".join(chains)


METER = "ebur128=peak=true:framelog=verbose"


def final_graph(
    timings: list[SceneTiming],
    sfx_db: float,
    fmt: Format,
    gain_db: float | None,
    burn: str | None = None,
) -> str:
    """Everything (inputs: clip, narration, sfx per scene) to [vout] and [aout]; `gain_db` the
    mastering gain (None: silence, left as it is); `burn`, a video filter drawing the captions."""
    n = len(timings)
    chains = video_chains(timings, [3 * i for i in range(n)], fmt)
    chains += audio_chains(timings, [3 * i + 1 for i in range(n)], [3 * i + 2 for i in range(n)], sfx_db)
    joined = "".join(f"[v{i}][a{i}]" for i in range(n))
    if burn is None:
        chains.append(f"{joined}concat=n={n}:v=1:a=1[vout][mix]")
    else:
        chains.append(f"{joined}concat=n={n}:v=1:a=1[cut][mix]")
        chains.append(f"[cut]{burn}[vout]")
    chains.append(f"[mix]{AUDIO_FORMAT if gain_db is None else master(gain_db)}[aout]")
    return ";".join(chains)


def parse_ebur128(log: str) -> Loudness | None:
    """The summary ebur128 prints at the end; None for silence (nothing to bring up)."""
    summaries = log.split("Summary:")
    if len(summaries) < 2:
        raise ValueError("ebur128 printed no summary")
    summary = summaries[-1]
    integrated = re.search(r"I:\s+(-?[\d.]+|-inf) LUFS", summary)
    peak = re.search(r"True peak:\s+Peak:\s+(-?[\d.]+|-inf) dBFS", summary)
    if integrated is None or peak is None:
        raise ValueError(f"ebur128's summary has no loudness or peak: {summary[:300]}")
    loudness = Loudness(float(integrated[1]), float(peak[1]))
    if not math.isfinite(loudness.integrated) or loudness.integrated < SILENT_LUFS:
        return None
    return loudness
