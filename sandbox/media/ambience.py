"""Ambience beds synthesized by FFmpeg from the prompt's words: a filtered-noise bed with slow
movement, layers for water, wind and rain, and a few soft events (bird chirps, low knocks).

Everything comes from lavfi sources with seeds taken from the prompt, so a prompt always gives the
same bed, and `-t` makes the length exact.
"""

from __future__ import annotations

import hashlib
import random

from sandbox.media import ffmpeg

DEFAULT_SECONDS = 5.0  # what the real API roughly picks when no duration is asked
_WORDS = {
    "water": (
        "water",
        "river",
        "stream",
        "lapping",
        "waves",
        "lake",
        "shore",
        "brook",
        "splash",
        "ocean",
        "sea",
    ),
    "wind": ("wind", "breeze", "gust", "windy", "air", "storm"),
    "rain": ("rain", "drizzle", "drops", "shower", "rainfall", "storm"),
    "birds": ("bird", "birds", "birdsong", "chirp", "chirping", "song", "heron", "dawn", "forest"),
}


def layers_for(prompt: str) -> list[str]:
    """The layers a prompt asks for, beyond the bed that is always there."""
    text = prompt.lower()
    return [name for name, words in _WORDS.items() if any(word in text for word in words)]


def render(
    prompt: str, seconds: float, output_format: str, loop: bool = False, influence: float = 0.3
) -> bytes:
    """`seconds` of ambience for `prompt`, encoded as `output_format` (e.g. mp3_44100_128)."""
    seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big")
    rng = random.Random(seed)
    rate = int(output_format.split("_")[1])
    sources = [_bed(rng, rate)]
    for layer in layers_for(prompt):
        sources.append(_LAYERS[layer](rng, rate, influence))
    sources.append(_knocks(rng, rate))
    graph = ";".join(f"{source}[s{i}]" for i, source in enumerate(sources))
    inputs = "".join(f"[s{i}]" for i in range(len(sources)))
    graph += f";{inputs}amix=inputs={len(sources)}:normalize=0,volume=0.7"
    if not loop:  # a looping bed must join seamlessly; a one-shot fades in and out
        fade = min(0.4, seconds / 4)
        graph += f",afade=t=in:d={fade:.3f},afade=t=out:st={seconds - fade:.3f}:d={fade:.3f}"
    graph += f",atrim=duration={seconds:.3f}[out]"
    args = ["-filter_complex", graph, "-map", "[out]", "-t", f"{seconds:.3f}", "-ac", "1"]
    return ffmpeg.run([*args, *ffmpeg.output_args(output_format), "pipe:1"])


def _noise(rng: random.Random, rate: int, colour: str, amplitude: float) -> str:
    return f"anoisesrc=color={colour}:amplitude={amplitude}:seed={rng.randrange(1 << 30)}:sample_rate={rate}"


def _bed(rng: random.Random, rate: int) -> str:
    """Low brown noise that breathes slowly: the room tone of the outdoors, with the rumble below
    90 Hz cut as a field recordist's low-cut filter would (which leaves the lowest octave to music)."""
    cutoff = rng.randint(250, 600)
    return (
        f"{_noise(rng, rate, 'brown', 0.35)},highpass=f=90,highpass=f=90,lowpass=f={cutoff},"
        f"tremolo=f={rng.uniform(0.1, 0.25):.2f}:d=0.35"
    )


def _water(rng: random.Random, rate: int, influence: float) -> str:
    centre = rng.randint(600, 1200)
    return (
        f"{_noise(rng, rate, 'pink', 0.12 + 0.1 * influence)},bandpass=f={centre}:width_type=o:w=1.5,"
        f"tremolo=f={rng.uniform(1.2, 2.5):.2f}:d=0.6"
    )


def _wind(rng: random.Random, rate: int, influence: float) -> str:
    return (
        f"{_noise(rng, rate, 'pink', 0.15 + 0.1 * influence)},"
        f"bandpass=f={rng.randint(300, 700)}:width_type=o:w=1,"
        f"tremolo=f={rng.uniform(0.1, 0.2):.2f}:d=0.8"
    )


def _rain(rng: random.Random, rate: int, influence: float) -> str:
    return f"{_noise(rng, rate, 'white', 0.04 + 0.04 * influence)},highpass=f=2500,lowpass=f=9000"


def _birds(rng: random.Random, rate: int, influence: float) -> str:
    """Short frequency-modulated chirps repeating at a seeded period, each with a smooth envelope."""
    base = rng.randint(2500, 4200)
    period = rng.uniform(1.3, 2.6) / (0.7 + influence)
    offset = rng.uniform(0, period)
    length = 0.22
    phase = f"mod(t+{offset:.3f},{period:.3f})"
    chirp = f"sin(2*PI*{base}*t+{rng.randint(40, 90)}*sin(2*PI*{rng.randint(8, 14)}*t))"
    envelope = f"between({phase},0,{length})*sin(PI*{phase}/{length})"
    return f"aevalsrc='0.08*{chirp}*{envelope}':sample_rate={rate}"


def _knocks(rng: random.Random, rate: int) -> str:
    """A few soft low knocks (a branch, a distant step) that decay quickly."""
    period = rng.uniform(2.5, 4.5)
    phase = f"mod(t+{rng.uniform(0, period):.3f},{period:.3f})"
    return f"aevalsrc='0.12*sin(2*PI*{rng.randint(90, 180)}*t)*exp(-9*{phase})':sample_rate={rate}"


_LAYERS = {"water": _water, "wind": _wind, "rain": _rain, "birds": _birds}
