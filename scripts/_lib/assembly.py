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
    """Where a scene sits on the cut: it starts (fading in over the crossfade) at `start_s`, its
    narration `lead_s` later, and it lasts `length_s`, whole frames."""

    start_s: float
    narration_s: float
    length_s: float
    lead_s: float = 0.0

    @property
    def end_s(self) -> float:
        return self.start_s + self.length_s

    @property
    def narration_start_s(self) -> float:
        return self.start_s + self.lead_s

    def as_meta(self, index: int) -> dict[str, float | int]:
        return {
            "index": index,
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "narration_start_s": round(self.narration_start_s, 3),
            "narration_end_s": round(self.narration_start_s + self.narration_s, 3),
        }


@dataclass(frozen=True)
class Edges:
    """How scenes meet and how the cut begins and ends: a crossfade of picture and sound between
    scenes (0: hard cuts), and a fade from black (and silence) at the start and to black at the end."""

    crossfade_s: float = 0.4
    fade_s: float = 0.5


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


def timeline(
    narration_s: list[float], tail_s: float, fps: int, crossfade_s: float = 0.0, fade_s: float = 0.0
) -> list[SceneTiming]:
    """Scene lengths are whole frames, so video and audio never drift apart. With a crossfade
    (rounded to whole frames), each scene begins with it (the narration waits it out, the bed
    already plays) and overlaps the one before by it; the tail after the narration is at least as
    long, so a transition never covers words. The first narration waits out the fade from black
    too, and the last scene's tail runs `tail_s` before its fade to black begins."""
    overlap = round(crossfade_s * fps) / fps
    timings: list[SceneTiming] = []
    start = 0.0
    last = len(narration_s) - 1
    for n, seconds in enumerate(narration_s):
        lead = max(overlap, fade_s) if n == 0 else overlap
        tail = tail_s + fade_s if n == last else max(tail_s, overlap)
        frames = math.ceil((lead + seconds + tail) * fps - 1e-6)
        length = frames / fps
        timings.append(SceneTiming(start, seconds, length, lead))
        start += length - overlap
    return timings


def overlap_of(timings: list[SceneTiming]) -> float:
    """How long consecutive scenes overlap (the crossfade); 0 for one scene or hard cuts."""
    return 0.0 if len(timings) < 2 else round(timings[0].end_s - timings[1].start_s, 6)


def audio_chains(
    timings: list[SceneTiming], narration_input: list[int], sfx_input: list[int], sfx_db: float
) -> list[str]:
    """Per scene [a<i>]: the narration after the scene's lead, padded with silence to the scene's
    length, the (looped) bed at `sfx_db` under all of it, mixed without amix's halving."""
    chains = []
    for i, timing in enumerate(timings):
        length = f"{timing.length_s:.6f}"
        lead_ms = round(timing.lead_s * 1000)
        delay = f"adelay={lead_ms}:all=1," if lead_ms else ""
        chains.append(
            f"[{narration_input[i]}:a:0]{AUDIO_FORMAT},{delay}apad,atrim=duration={length},asetpts=PTS-STARTPTS[n{i}]"
        )
        chains.append(
            f"[{sfx_input[i]}:a:0]{AUDIO_FORMAT},volume={sfx_db}dB,apad,atrim=duration={length},asetpts=PTS-STARTPTS[s{i}]"
        )
        chains.append(f"[n{i}][s{i}]amix=inputs=2:duration=first:normalize=0[a{i}]")
    return chains


def joined(timings: list[SceneTiming], kind: str, out: str) -> list[str]:
    """The scenes' [v<i>] (kind 'v') or [a<i>] ('a') one after the other into [out]: crossfaded
    where the timeline overlaps them (equal-power for sound: the beds never dip), else concatenated."""
    n = len(timings)
    overlap = overlap_of(timings)
    if overlap <= 0:
        inputs = "".join(f"[{kind}{i}]" for i in range(n))
        return [f"{inputs}concat=n={n}:v={int(kind == 'v')}:a={int(kind == 'a')}[{out}]"]
    chains = []
    previous = f"{kind}0"
    for i in range(1, n):
        label = out if i == n - 1 else f"{kind}x{i}"
        if kind == "v":
            step = f"xfade=transition=fade:duration={overlap:.6f}:offset={timings[i].start_s:.6f}"
        else:
            step = f"acrossfade=d={overlap:.6f}:c1=qsin:c2=qsin"
        chains.append(f"[{previous}][{kind}{i}]{step}[{label}]")
        previous = label
    return chains


def _fades(kind: str, total_s: float, fade_s: float) -> str:
    """A fade in at the start and out at the end ('' when none); `kind` 'v' or 'a'."""
    if fade_s <= 0:
        return ""
    name = "fade" if kind == "v" else "afade"
    return f"{name}=t=in:st=0:d={fade_s:.3f},{name}=t=out:st={max(0.0, total_s - fade_s):.6f}:d={fade_s:.3f},"


def slowdowns(timings: list[SceneTiming], clip_s: list[float], most: float) -> list[float]:
    """Per scene, how much its clip is slowed to last the scene (1.0: not at all), at most `most`:
    a clip shorter than its narration plays slower rather than stopping on a frozen frame."""
    return [
        1.0 if have <= 0 or have >= timing.length_s else min(timing.length_s / have, most)
        for timing, have in zip(timings, clip_s, strict=True)
    ]


def video_chains(
    timings: list[SceneTiming], clip_input: list[int], fmt: Format, slow: list[float] | None = None
) -> list[str]:
    """Per scene: the clip at the output size (letterboxed if its aspect differs), slowed by its
    factor where it is shorter than the scene, its last frame held only for what is left beyond
    that, trimmed to the scene's length."""
    chains = []
    for i, timing in enumerate(timings):
        length = f"{timing.length_s:.6f}"
        factor = slow[i] if slow else 1.0
        pts = "PTS-STARTPTS" if factor == 1.0 else f"{factor:.6f}*(PTS-STARTPTS)"
        chains.append(
            f"[{clip_input[i]}:v:0]setpts={pts},fps={fmt.fps},"
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


def measure_graph(
    timings: list[SceneTiming], sfx_db: float, gain_db: float | None, edges: Edges = Edges(0, 0)
) -> str:
    """Audio only (inputs: narration, sfx per scene): the mix as it will be (mastered with
    `gain_db`, or as it is), measured by ebur128."""
    n = len(timings)
    chains = audio_chains(timings, [2 * i for i in range(n)], [2 * i + 1 for i in range(n)], sfx_db)
    chains += joined(timings, "a", "mix")
    mastered = AUDIO_FORMAT if gain_db is None else master(gain_db)
    fades = _fades("a", timings[-1].end_s, edges.fade_s)
    chains.append(f"[mix]{fades}{mastered},{METER}[out]")
    return ";".join(chains)


METER = "ebur128=peak=true:framelog=verbose"
# The frames' colour description, which the encoder writes into the stream (YouTube assumes BT.709
# for HD, and players differ on untagged video).
BT709 = "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv"


def final_graph(
    timings: list[SceneTiming],
    sfx_db: float,
    fmt: Format,
    gain_db: float | None,
    burn: str | None = None,
    edges: Edges = Edges(0, 0),
    slow: list[float] | None = None,
) -> str:
    """Everything (inputs: clip, narration, sfx per scene) to [vout] and [aout]; `gain_db` the
    mastering gain (None: silence, left as it is); `burn`, a video filter drawing the captions;
    `edges`, the fades (the crossfades are in the timeline)."""
    n = len(timings)
    total = timings[-1].end_s
    chains = video_chains(timings, [3 * i for i in range(n)], fmt, slow)
    chains += audio_chains(timings, [3 * i + 1 for i in range(n)], [3 * i + 2 for i in range(n)], sfx_db)
    chains += joined(timings, "v", "cut")
    chains += joined(timings, "a", "mix")
    picture = [_fades("v", total, edges.fade_s).rstrip(","), burn or "", BT709]
    chains.append(f"[cut]{','.join(p for p in picture if p)}[vout]")
    mastered = AUDIO_FORMAT if gain_db is None else master(gain_db)
    chains.append(f"[mix]{_fades('a', total, edges.fade_s)}{mastered}[aout]")
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
