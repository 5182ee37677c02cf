"""The final cut as one FFmpeg filtergraph: per scene a clip fitted to its narration plus a tail,
the SFX bed looped under the narration, scenes concatenated, loudness normalised."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

TRUE_PEAK_DB = -1.5
# loudnorm only scales linearly (keeping the narration/bed balance) when the target range is at least
# the measured one; documentary audio with pauses has a wide range, so the target is generous.
LOUDNESS_RANGE = 20.0
SILENT_LUFS = -70.0  # below this there is nothing to normalise
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
    """loudnorm's first-pass measurement, fed back for a linear second pass."""

    input_i: float
    input_tp: float
    input_lra: float
    input_thresh: float
    target_offset: float


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
            f"scale={fmt.width}:{fmt.height}:force_original_aspect_ratio=decrease,"
            f"pad={fmt.width}:{fmt.height}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1,format=yuv420p,"
            f"tpad=stop_mode=clone:stop_duration={length},trim=duration={length},setpts=PTS-STARTPTS[v{i}]"
        )
    return chains


def measure_graph(timings: list[SceneTiming], sfx_db: float, target_lufs: float) -> str:
    """Audio only (inputs: narration, sfx per scene): the mix as it will be, measured by loudnorm."""
    n = len(timings)
    chains = audio_chains(timings, [2 * i for i in range(n)], [2 * i + 1 for i in range(n)], sfx_db)
    joined = "".join(f"[a{i}]" for i in range(n))
    chains.append(f"{joined}concat=n={n}:v=0:a=1,{_loudnorm(target_lufs)}:print_format=json[out]")
    return ";".join(chains)


def final_graph(
    timings: list[SceneTiming],
    sfx_db: float,
    target_lufs: float,
    fmt: Format,
    measured: Loudness | None,
    burn: str | None = None,
) -> str:
    """Everything (inputs: clip, narration, sfx per scene) to [vout] and [aout]; `burn`, a video
    filter drawing the captions onto the cut."""
    n = len(timings)
    chains = video_chains(timings, [3 * i for i in range(n)], fmt)
    chains += audio_chains(timings, [3 * i + 1 for i in range(n)], [3 * i + 2 for i in range(n)], sfx_db)
    joined = "".join(f"[v{i}][a{i}]" for i in range(n))
    if burn is None:
        chains.append(f"{joined}concat=n={n}:v=1:a=1[vout][mix]")
    else:
        chains.append(f"{joined}concat=n={n}:v=1:a=1[cut][mix]")
        chains.append(f"[cut]{burn}[vout]")
    if measured is None:
        chains.append(f"[mix]{AUDIO_FORMAT}[aout]")
    else:
        second_pass = (
            f"{_loudnorm(target_lufs)}:measured_I={measured.input_i}:measured_TP={measured.input_tp}"
            f":measured_LRA={measured.input_lra}:measured_thresh={measured.input_thresh}"
            f":offset={measured.target_offset}:linear=true"
        )
        # loudnorm works at 192 kHz internally; bring it back to 48 kHz for AAC.
        chains.append(f"[mix]{second_pass},{AUDIO_FORMAT}[aout]")
    return ";".join(chains)


def parse_loudness(log: str) -> Loudness | None:
    """The JSON block loudnorm prints at the end of a pass; None for silence (nothing to scale)."""
    blocks = re.findall(r"\{[^{}]*\"input_i\"[^{}]*\}", log)
    if not blocks:
        raise ValueError("loudnorm printed no measurement")
    data = json.loads(blocks[-1])
    try:
        loudness = Loudness(
            input_i=float(data["input_i"]),
            input_tp=float(data["input_tp"]),
            input_lra=float(data["input_lra"]),
            input_thresh=float(data["input_thresh"]),
            target_offset=float(data["target_offset"]),
        )
    except (KeyError, ValueError):
        return None
    values = (
        loudness.input_i,
        loudness.input_tp,
        loudness.input_lra,
        loudness.input_thresh,
        loudness.target_offset,
    )
    if not all(math.isfinite(v) for v in values) or loudness.input_i < SILENT_LUFS:
        return None
    return loudness


def _loudnorm(target_lufs: float) -> str:
    return f"loudnorm=I={target_lufs}:TP={TRUE_PEAK_DB}:LRA={LOUDNESS_RANGE}"
