"""Writing provider audio: check it decodes and measure it before it lands at the output path; and
measuring the narrations a clip, a bed or the music is made to cover (`--duration auto`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from scripts._lib import ffmpeg
from scripts._lib.cli import bounded_float
from scripts._lib.errors import permanent, transient, usage
from scripts._lib.files import atomic_path, require_file

# What the assembly puts around a scene's words: the crossfade (or the fade from black) before,
# the tail after (assembly.py's timeline, with its defaults).
SCENE_EDGES_S = 0.9


def write_checked(data: bytes, output: Path, provider: str) -> float:
    """Writes `data` atomically to `output` and returns its decoded duration in seconds; audio that
    does not decode is transient (a truncated answer: ask again)."""
    with atomic_path(output) as tmp:
        tmp.write_bytes(data)
        try:
            return ffmpeg.audio_duration(tmp)
        except ffmpeg.DecodeError as exc:
            raise transient(f"{provider}'s audio does not decode ({exc}); retry later.", "bad_audio") from exc


def spoken_seconds(narrations: Sequence[Path]) -> list[float]:
    """The measured length of each narration; one that does not decode is permanent (make it again)."""
    lengths = []
    for path in narrations:
        require_file(path, "narration")
        try:
            lengths.append(ffmpeg.audio_duration(path))
        except ffmpeg.DecodeError as exc:
            raise permanent(
                f"The narration {path} does not decode ({exc}); regenerate it, then requeue."
            ) from exc
    return lengths


def seconds_or_auto(low: float, high: float) -> Callable[[str], float | str]:
    """An argparse type: a number of seconds within [low, high], or "auto" (from the narration)."""
    number = bounded_float(low, high)

    def parse(text: str) -> float | str:
        return "auto" if text == "auto" else number(text)

    parse.__name__ = "seconds or auto"
    return parse


def require_narration(args: argparse.Namespace, prog: str) -> None:
    if args.duration == "auto" and not args.narration:
        raise usage(f"{prog}: --duration auto needs --narration")
