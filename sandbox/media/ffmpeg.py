"""The bundled FFmpeg (imageio-ffmpeg wheel): running it and encoding audio."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg


class FFmpegError(RuntimeError):
    pass


def executable() -> str:
    return str(imageio_ffmpeg.get_ffmpeg_exe())


def run(args: list[str], stdin: bytes | None = None, timeout: float = 600) -> bytes:
    """Runs ffmpeg with `args`; returns stdout, raises FFmpegError with the tail of stderr."""
    # -nostdin keeps a background ffmpeg from reading the server's terminal; a piped input needs stdin.
    head = [executable(), "-hide_banner", "-v", "error", "-y", *(["-nostdin"] if stdin is None else [])]
    proc = subprocess.run(
        [*head, *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise FFmpegError(
            f"ffmpeg failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-1500:]}"
        )
    return proc.stdout


def output_args(output_format: str) -> list[str]:
    """Encoder arguments for an ElevenLabs-style output format such as mp3_44100_128 or pcm_16000."""
    codec, _, rest = output_format.partition("_")
    rate, _, bitrate = rest.partition("_")
    if codec == "mp3":
        return ["-ar", rate, "-c:a", "libmp3lame", "-b:a", f"{bitrate}k", "-f", "mp3"]
    return ["-ar", rate, "-f", "s16le", "-c:a", "pcm_s16le"]


def encode_pcm(samples: bytes, rate: int, output_format: str) -> bytes:
    """Mono s16le samples at `rate` encoded to `output_format`."""
    args = ["-f", "s16le", "-ar", str(rate), "-ac", "1", "-i", "pipe:0", "-ac", "1"]
    return run([*args, *output_args(output_format), "pipe:1"], stdin=samples)


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)
