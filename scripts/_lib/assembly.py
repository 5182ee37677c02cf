"""The final cut as one FFmpeg filtergraph: per scene a clip fitted to its narration plus a tail,
the SFX bed looped under the narration, scenes crossfaded, the music ducked under the voice, mastered
to its loudness by a linear gain and a true-peak limiter."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

TRUE_PEAK_MAX_DB = -1.0  # the final file's true peak may not pass this (YouTube's loudness advice)
# The limiter's ceiling, at 4x oversampling (so it catches the peaks between samples too); the
# margin to TRUE_PEAK_MAX_DB is room for the AAC encode's overshoot.
LIMIT_DB = -2.0
OVERSAMPLE_HZ = 192_000
LOUDNESS_TOLERANCE = 0.5  # the final file's integrated loudness is the target +- this
SILENT_LUFS = -70.0  # at or below this there is nothing to bring up (ebur128's floor)
MIX_RATE = 48_000  # Hz: the mix, the mastering and the final cut's sound
AUDIO_FORMAT = f"aresample={MIX_RATE},aformat=sample_fmts=fltp:channel_layouts=stereo"


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
    # The end card's share at the end of the (last) scene, its fade to black included, and how long
    # the clip crossfades into it.
    card_s: float = 0.0
    card_in_s: float = 0.0

    @property
    def end_s(self) -> float:
        return self.start_s + self.length_s

    @property
    def picture_s(self) -> float:
        """How long the scene's clip shows: all of it, but for an end card."""
        return self.length_s - self.card_s

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
    narration_s: list[float],
    tail_s: float,
    fps: int,
    crossfade_s: float = 0.0,
    fade_s: float = 0.0,
    *,
    outro_s: float = 0.0,
    min_length_s: float = 0.0,
) -> list[SceneTiming]:
    """Scene lengths are whole frames, so video and audio never drift apart. With a crossfade
    (rounded to whole frames), each scene begins with it (the narration waits it out, the bed
    already plays) and overlaps the one before by it; the tail after the narration is at least as
    long, so a transition never covers words. The first narration waits out the fade from black
    too, and the last scene's tail runs `tail_s` before its fade to black begins.

    An end card (`outro_s`, or as long as the cut needs to last `min_length_s`) ends the last
    scene: its clip crossfades into the card after the tail, and the card fades to black."""
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
    if not timings:
        return timings
    closing = timings[-1]
    # Without the card and the fade: the cut up to the end of the last tail.
    before_card = closing.start_s + closing.lead_s + closing.narration_s + max(tail_s, overlap)
    card = max(outro_s, min_length_s - before_card - fade_s)
    if card <= 0:
        return timings
    frames = math.ceil(
        (closing.lead_s + closing.narration_s + max(tail_s, overlap) + card + fade_s) * fps - 1e-6
    )
    length = frames / fps
    picture = math.ceil((closing.lead_s + closing.narration_s + max(tail_s, overlap)) * fps - 1e-6) / fps
    timings[-1] = replace(closing, length_s=length, card_s=length - picture, card_in_s=overlap)
    return timings


def overlap_of(timings: list[SceneTiming]) -> float:
    """How long consecutive scenes overlap (the crossfade); 0 for one scene or hard cuts."""
    return 0.0 if len(timings) < 2 else round(timings[0].end_s - timings[1].start_s, 6)


@dataclass(frozen=True)
class Levels:
    """The mix's levels: each narration brought to `voice_lufs` (the final cut's target too), each
    ambience bed to `ambience_lu` under it, and the music to `music_lu` under it while the voice
    speaks: it plays `duck_db` louder between the words and a sidechain compressor keyed by the
    voice pulls it down under them."""

    voice_lufs: float = -14.0
    ambience_lu: float = -13.0
    music_lu: float = -18.0
    duck_db: float = 6.0

    def ambience_lufs(self) -> float:
        return self.voice_lufs + self.ambience_lu

    def music_lufs(self) -> float:
        """The music's own level, before the voice ducks it."""
        return self.voice_lufs + self.music_lu + self.duck_db


@dataclass(frozen=True)
class Gains:
    """Per scene the gains (dB) that bring its narration and its bed to their levels, and the
    music's; each measured on its own file first (`normalising_gain`)."""

    narration_db: tuple[float, ...]
    sfx_db: tuple[float, ...]
    music_db: float | None = None  # None: no music

    @classmethod
    def for_levels(
        cls,
        levels: Levels,
        voices: list[float | None],
        beds: list[float | None],
        music: float | None,
        has_music: bool,
    ) -> Gains:
        """From each file's measured loudness (LUFS, None for silence)."""
        return cls(
            tuple(normalising_gain(v, levels.voice_lufs) for v in voices),
            tuple(normalising_gain(b, levels.ambience_lufs()) for b in beds),
            normalising_gain(music, levels.music_lufs()) if has_music else None,
        )


@dataclass(frozen=True)
class AudioInputs:
    """The FFmpeg input index of each scene's narration and bed, and of the music (or None)."""

    narration: tuple[int, ...]
    sfx: tuple[int, ...]
    music: int | None = None


_COUNT = "metadata=0:measure_perchannel=none:measure_overall=Number_of_samples"


def meters_graph(count: int) -> str:
    """Inputs 0 to count-1, each decoded once as the mix will hear it, to [o<i>]: its integrated
    loudness (the ebur128 named m<i>; no true peak, which only the mix's mastering needs) and its
    length in samples (the astats named c<i>), for `parse_meters`: one FFmpeg run measures every
    file of the cut."""
    return ";".join(
        f"[{i}:a:0]{AUDIO_FORMAT},ebur128@m{i}=framelog=quiet,astats@c{i}={_COUNT}[o{i}]"
        for i in range(count)
    )


def parse_meters(log: str, count: int) -> list[tuple[float, float | None]]:
    """Per input of `meters_graph`, its seconds and its integrated loudness (None: silent), from
    FFmpeg's log; ValueError when the log lacks one."""
    samples = {
        int(i): int(n) for i, n in re.findall(r"\[astats@c(\d+) @ [^\]]+\] Number of samples: (\d+)", log)
    }
    summaries = {
        int(i): body
        for i, body in re.findall(r"\[ebur128@m(\d+) @ [^\]]+\] Summary:\n(.*?)(?=^\[|\Z)", log, re.S | re.M)
    }
    missing = [i for i in range(count) if i not in samples or i not in summaries]
    if missing:
        raise ValueError(f"FFmpeg measured no length or loudness for input {missing[0]}")
    return [(samples[i] / MIX_RATE, _integrated(summaries[i])) for i in range(count)]


MAX_BED_GAIN_DB = 30.0  # a near-silent file is not brought up further than this


def normalising_gain(measured_lufs: float | None, target_lufs: float) -> float:
    """The gain that brings a file measured at `measured_lufs` to `target_lufs`, within
    +-MAX_BED_GAIN_DB; a silent file (None) is left as it is."""
    if measured_lufs is None:
        return 0.0
    return max(-MAX_BED_GAIN_DB, min(MAX_BED_GAIN_DB, target_lufs - measured_lufs))


# How the voice ducks the music: a compressor keyed by the voice, near-limiting (so the dip is about
# the voice's level over the threshold), quick to duck and slow to come back (no pumping).
_DUCK = "sidechaincompress=ratio=20:attack=15:release=350:knee=4:detection=rms:makeup=1"
MUSIC_FADE_IN_S, MUSIC_FADE_OUT_S = 1.0, 2.0


def _duck_threshold(levels: Levels) -> float:
    """The compressor's threshold (linear): `duck_db` under the voice's typical short-term level
    (about 3 dB under its integrated loudness), so speech pulls the music down by about `duck_db`."""
    return float(10 ** ((levels.voice_lufs - 3.0 - levels.duck_db) / 20))


def audio_chains(
    timings: list[SceneTiming], inputs: AudioInputs, gains: Gains, levels: Levels = Levels()
) -> list[str]:
    """Per scene the narration after the scene's lead and the (looped) bed, each at its gain and
    the scene's length; the narrations joined into [voice], the beds into [beds] (crossfaded, so
    the ambience carries across each cut), and the music (looped or trimmed to the cut, faded,
    ducked by the voice), all mixed into [mix] without amix's halving."""
    chains = []
    for i, timing in enumerate(timings):
        length = f"{timing.length_s:.6f}"
        lead_ms = round(timing.lead_s * 1000)
        delay = f"adelay={lead_ms}:all=1," if lead_ms else ""
        chains.append(
            f"[{inputs.narration[i]}:a:0]{AUDIO_FORMAT},volume={gains.narration_db[i]:.2f}dB,{delay}"
            f"apad,atrim=duration={length},asetpts=PTS-STARTPTS[n{i}]"
        )
        chains.append(
            f"[{inputs.sfx[i]}:a:0]{AUDIO_FORMAT},volume={gains.sfx_db[i]:.2f}dB,"
            f"apad,atrim=duration={length},asetpts=PTS-STARTPTS[s{i}]"
        )
    chains += joined(timings, "n", "voice")
    chains += joined(timings, "s", "beds")
    if inputs.music is None or gains.music_db is None:
        chains.append("[voice][beds]amix=inputs=2:duration=first:normalize=0[mix]")
        return chains
    total = timings[-1].end_s
    fade_out = max(0.0, total - MUSIC_FADE_OUT_S)
    chains.append(
        f"[{inputs.music}:a:0]{AUDIO_FORMAT},volume={gains.music_db:.2f}dB,apad,"
        f"atrim=duration={total:.6f},asetpts=PTS-STARTPTS,afade=t=in:d={MUSIC_FADE_IN_S},"
        f"afade=t=out:st={fade_out:.6f}:d={MUSIC_FADE_OUT_S}[music]"
    )
    chains.append("[voice]asplit=2[speech][key]")
    chains.append(f"[music][key]{_DUCK}:threshold={_duck_threshold(levels):.6f}[ducked]")
    chains.append("[speech][beds][ducked]amix=inputs=3:duration=first:normalize=0[mix]")
    return chains


def joined(timings: list[SceneTiming], kind: str, out: str) -> list[str]:
    """The scenes' [<kind><i>] one after the other into [out], pictures (kind 'v') or sound (any
    other): crossfaded where the timeline overlaps them (equal-power for sound: the beds never dip),
    else concatenated."""
    n = len(timings)
    overlap = overlap_of(timings)
    if overlap <= 0:
        inputs = "".join(f"[{kind}{i}]" for i in range(n))
        return [f"{inputs}concat=n={n}:v={int(kind == 'v')}:a={int(kind != 'v')}[{out}]"]
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
        1.0 if have <= 0 or have >= timing.picture_s else min(timing.picture_s / have, most)
        for timing, have in zip(timings, clip_s, strict=True)
    ]


def video_chains(
    timings: list[SceneTiming],
    clip_input: list[int],
    fmt: Format,
    slow: list[float] | None = None,
    card_input: int | None = None,
) -> list[str]:
    """Per scene: the clip at the output size (letterboxed if its aspect differs), slowed by its
    factor where it is shorter than the scene, its last frame held only for what is left beyond
    that, trimmed to the scene's length; a scene with an end card crossfades into the card (input
    `card_input`, a still), which slowly pushes in (never a frozen picture)."""
    chains = []
    for i, timing in enumerate(timings):
        picture = f"{timing.picture_s:.6f}"
        factor = slow[i] if slow else 1.0
        pts = "PTS-STARTPTS" if factor == 1.0 else f"{factor:.6f}*(PTS-STARTPTS)"
        label = f"v{i}" if not timing.card_s or card_input is None else f"c{i}"
        chains.append(
            f"[{clip_input[i]}:v:0]setpts={pts},fps={fmt.fps},"
            f"scale={fmt.width}:{fmt.height}:force_original_aspect_ratio=decrease"
            ":out_color_matrix=bt709:out_range=tv,"
            f"pad={fmt.width}:{fmt.height}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1,format=yuv420p,"
            f"tpad=stop_mode=clone:stop_duration={picture},trim=duration={picture},setpts=PTS-STARTPTS[{label}]"
        )
        if label == f"c{i}" and card_input is not None:
            chains += _card_chains(timing, i, card_input, fmt)
    return chains


CARD_PUSH_IN = 0.06  # the end card's zoom by its last frame


def _card_chains(timing: SceneTiming, i: int, card_input: int, fmt: Format) -> list[str]:
    """The end card: the still, pushed in slowly (at twice the size, so the crop never jitters),
    crossfaded in after the scene's clip ([c<i>] -> [v<i>])."""
    length = timing.card_s + timing.card_in_s
    frames = max(1, math.ceil(length * fmt.fps))
    zoom = f"1+{CARD_PUSH_IN}*on/{frames}"
    card = (
        f"[{card_input}:v:0]scale={2 * fmt.width}:{2 * fmt.height},setsar=1,"
        f"zoompan=z='{zoom}':x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':d={frames}:s={fmt.width}x{fmt.height}"
        f":fps={fmt.fps},trim=duration={length:.6f},setpts=PTS-STARTPTS,format=yuv420p,setsar=1[k{i}]"
    )
    if timing.card_in_s > 0:
        offset = timing.picture_s - timing.card_in_s
        join = f"[c{i}][k{i}]xfade=transition=fade:duration={timing.card_in_s:.6f}:offset={offset:.6f}[v{i}]"
    else:
        join = f"[c{i}][k{i}]concat=n=2:v=1:a=0[v{i}]"
    return [card, join]


TITLE_CARD_S = 3.0  # the title over the opening, its fades in and out included
TITLE_FADE_S = 0.4


def title_chain(title_input: int, start_s: float) -> str:
    """The title (a transparent still, input `title_input`) over [cut] from `start_s`, faded in and
    out, into [titled]."""
    out = TITLE_CARD_S - TITLE_FADE_S
    return (
        f"[{title_input}:v:0]format=rgba,trim=duration={TITLE_CARD_S},"
        f"fade=t=in:st=0:d={TITLE_FADE_S}:alpha=1,fade=t=out:st={out}:d={TITLE_FADE_S}:alpha=1,"
        f"setpts=PTS-STARTPTS+{start_s:.3f}/TB[title];[cut][title]overlay=x=0:y=0:eof_action=pass[titled]"
    )


def master(gain_db: float) -> str:
    """The mix to its loudness: one linear gain, then a limiter at 4x oversampling that only touches
    the peaks the gain would push past LIMIT_DB (so the level never pumps), back to 48 kHz."""
    ceiling = 10 ** (LIMIT_DB / 20)
    return (
        f"volume={gain_db:.2f}dB,aresample={OVERSAMPLE_HZ},"
        f"alimiter=limit={ceiling:.4f}:attack=5:release=50:level=false:latency=true,{AUDIO_FORMAT}"
    )


METER = "ebur128=peak=true:framelog=verbose"


def mix_graph(
    timings: list[SceneTiming], gains: Gains, edges: Edges = Edges(0, 0), levels: Levels = Levels()
) -> str:
    """Audio only (inputs: narration, sfx per scene, then the music if any): the mix with its fades,
    as it is (before the mastering gain), measured by ebur128 on its way to [out]. It is made once:
    the mastering passes and the render start from it."""
    n = len(timings)
    inputs = AudioInputs(
        tuple(2 * i for i in range(n)),
        tuple(2 * i + 1 for i in range(n)),
        2 * n if gains.music_db is not None else None,
    )
    chains = audio_chains(timings, inputs, gains, levels)
    fades = _fades("a", timings[-1].end_s, edges.fade_s)
    chains.append(f"[mix]{fades}{AUDIO_FORMAT},{METER}[out]")
    return ";".join(chains)


def mastered(gain_db: float | None) -> str:
    """The filters that take the mix to the cut's sound: `master(gain_db)`, or for silence (None)
    the mix left as it is."""
    return AUDIO_FORMAT if gain_db is None else master(gain_db)


@dataclass(frozen=True)
class Stills:
    """The FFmpeg inputs of the end card and the title overlay, where the cut has them."""

    card: int | None = None
    title: int | None = None


# The frames' colour description, which the encoder writes into the stream (YouTube assumes BT.709
# for HD, and players differ on untagged video).
BT709 = "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv"


def final_graph(
    timings: list[SceneTiming],
    fmt: Format,
    gain_db: float | None,
    burn: str | None = None,
    edges: Edges = Edges(0, 0),
    slow: list[float] | None = None,
    stills: Stills = Stills(),
) -> str:
    """Everything (inputs: each scene's clip, then the mix `mix_graph` made, then the stills'
    inputs) to [vout] and [aout]; `gain_db` the mastering gain (None: silence, left as it is);
    `burn`, a video filter drawing the captions; `edges`, the fades (the crossfades are in the
    timeline; the mix has its own fades)."""
    n = len(timings)
    total = timings[-1].end_s
    chains = video_chains(timings, list(range(n)), fmt, slow, stills.card)
    chains += joined(timings, "v", "cut")
    cut = "cut"
    if stills.title is not None:
        chains.append(title_chain(stills.title, max(edges.fade_s, 0.2)))
        cut = "titled"
    picture = [_fades("v", total, edges.fade_s).rstrip(","), burn or "", BT709]
    chains.append(f"[{cut}]{','.join(p for p in picture if p)}[vout]")
    chains.append(f"[{n}:a:0]{mastered(gain_db)}[aout]")
    return ";".join(chains)


def parse_ebur128(log: str) -> Loudness | None:
    """The summary ebur128 prints at the end; None for silence (nothing to bring up)."""
    summaries = log.split("Summary:")
    if len(summaries) < 2:
        raise ValueError("ebur128 printed no summary")
    summary = summaries[-1]
    peak = re.search(r"True peak:\s+Peak:\s+(-?[\d.]+|-inf) dBFS", summary)
    if peak is None:
        raise ValueError(f"ebur128's summary has no true peak: {summary[:300]}")
    integrated = _integrated(summary)
    return None if integrated is None else Loudness(integrated, float(peak[1]))


def _integrated(summary: str) -> float | None:
    """The integrated loudness in an ebur128 summary; None for silence (nothing to bring up)."""
    found = re.search(r"I:\s+(-?[\d.]+|-inf) LUFS", summary)
    if found is None:
        raise ValueError(f"ebur128's summary has no loudness: {summary[:300]}")
    integrated = float(found[1])
    # ebur128 prints its floor, -70.0, for digital silence: that is silence too.
    return integrated if math.isfinite(integrated) and integrated > SILENT_LUFS else None
