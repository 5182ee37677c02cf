"""Writing provider audio: check it decodes and measure it before it lands at the output path."""

from __future__ import annotations

from pathlib import Path

from scripts._lib import ffmpeg
from scripts._lib.errors import transient
from scripts._lib.files import atomic_path


def write_checked(data: bytes, output: Path, provider: str) -> float:
    """Writes `data` atomically to `output` and returns its decoded duration in seconds; audio that
    does not decode is transient (a truncated answer: ask again)."""
    with atomic_path(output) as tmp:
        tmp.write_bytes(data)
        try:
            return ffmpeg.audio_duration(tmp)
        except ffmpeg.DecodeError as exc:
            raise transient(f"{provider}'s audio does not decode ({exc}); retry later.", "bad_audio") from exc
