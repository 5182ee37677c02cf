"""Instrumental music synthesized by FFmpeg from the prompt: a four-chord progression in a key and
tempo taken from the prompt (its mood words choose major or minor, slow or lively), played as a
soft pad, a plucked arpeggio on the eighth notes and a bass on each beat.

One `aevalsrc` expression; the seed comes from the prompt, so a prompt always gives the same piece,
and `-t` makes the length exact. The bass sits low (41-62 Hz, below any voice), which is where the
tests listen for the music under the narration.
"""

from __future__ import annotations

import hashlib
import random

from sandbox.media import ffmpeg

_MINOR_WORDS = ("mysterious", "tense", "melancholic", "sad", "dark", "suspense", "ominous")
_LIVELY_WORDS = ("playful", "upbeat", "epic", "energetic", "hopeful", "tense")
# Semitones above the key's root of each chord's root, and whether the chord is minor.
_MAJOR_PROGRESSION = ((0, False), (7, False), (9, True), (5, False))  # I V vi IV
_MINOR_PROGRESSION = ((0, True), (8, False), (3, False), (10, False))  # i VI III VII


def _hz(midi: float) -> float:
    return float(440.0 * 2 ** ((midi - 69) / 12))


def _note(length: float, decay: float) -> str:
    """A note's envelope, repeating every `length` seconds: a 10 ms rise, an exponential decay and
    a 10 ms release before the next (no click at either end)."""
    phase = f"mod(t,{length:.4f})"
    return f"min(1,100*{phase})*min(1,100*({length:.4f}-{phase}))*exp(-{decay}*{phase})"


def render(prompt: str, seconds: float, output_format: str) -> bytes:
    """`seconds` of music for `prompt`, encoded as `output_format` (e.g. mp3_44100_128), stereo."""
    text = prompt.lower()
    rng = random.Random(int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:4], "big"))
    minor = any(word in text for word in _MINOR_WORDS)
    lively = any(word in text for word in _LIVELY_WORDS)
    bpm = rng.randint(96, 112) if lively else rng.randint(66, 80)
    beat = 60.0 / bpm
    bar = 4 * beat
    root = 28 + rng.randrange(8)  # E1 to B1: the bass between 41 and 62 Hz
    progression = _MINOR_PROGRESSION if minor else _MAJOR_PROGRESSION
    cycle = bar * len(progression)
    terms = []
    for index, (step, chord_minor) in enumerate(progression):
        chord_root = root + step
        tones = [chord_root, chord_root + (3 if chord_minor else 4), chord_root + 7]
        start = index * bar
        phase = f"(mod(t,{cycle:.4f})-{start:.4f})"
        inside = f"between(mod(t,{cycle:.4f}),{start:.4f},{start + bar:.4f})"
        # A pad that swells in and out within the bar (no click at the chord change).
        swell = f"sin(PI*{phase}/{bar:.4f})"
        pad = "+".join(f"sin(2*PI*{_hz(tone + 36):.3f}*t)" for tone in tones)
        # The arpeggio: one chord tone per eighth note, decaying fast.
        eighth = beat / 2
        step_of = f"mod(floor(t/{eighth:.4f}),3)"
        pluck = "+".join(
            f"eq({step_of},{k})*sin(2*PI*{_hz(tone + 48):.3f}*t)" for k, tone in enumerate(tones)
        )
        pluck_env = _note(eighth, 7.0)
        bass_env = _note(beat, 2.2)
        bass = f"sin(2*PI*{_hz(chord_root):.3f}*t)*{bass_env}"
        terms.append(f"{inside}*(0.05*({pad})*{swell}+0.06*({pluck})*{pluck_env}+0.3*{bass})")
    expression = "+".join(terms)
    fade = min(1.5, seconds / 4)
    graph = (
        f"aevalsrc='{expression}':sample_rate=44100:duration={seconds:.3f},"
        f"afade=t=in:d={fade:.3f},afade=t=out:st={seconds - fade:.3f}:d={fade:.3f}[out]"
    )
    rate_args = ffmpeg.output_args(output_format)
    args = ["-filter_complex", graph, "-map", "[out]", "-t", f"{seconds:.3f}", "-ac", "2"]
    return ffmpeg.run([*args, *rate_args, "pipe:1"])
