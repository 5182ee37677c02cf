"""The bundled FFmpeg (imageio-ffmpeg wheel): running it and encoding audio."""

from __future__ import annotations

import subprocess
import threading

import imageio_ffmpeg


class FFmpegError(RuntimeError):
    pass


def executable() -> str:
    return str(imageio_ffmpeg.get_ffmpeg_exe())


class Children:
    """Running FFmpeg processes, so a stopping sandbox can end its renders instead of orphaning them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen[bytes]] = set()
        self.closed = False

    def add(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._procs.add(proc)
            if self.closed:
                proc.kill()

    def discard(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._procs.discard(proc)

    def kill_all(self) -> None:
        with self._lock:
            self.closed = True
            for proc in self._procs:
                proc.kill()


def run(
    args: list[str], stdin: bytes | None = None, timeout: float = 600, children: Children | None = None
) -> bytes:
    """Runs ffmpeg with `args`; returns stdout, raises FFmpegError with the tail of stderr."""
    # -nostdin keeps a background ffmpeg from reading the server's terminal; a piped input needs stdin.
    head = [executable(), "-hide_banner", "-v", "error", "-y", *(["-nostdin"] if stdin is None else [])]
    feed = subprocess.PIPE if stdin is not None else None
    command = [*head, *args]
    with subprocess.Popen(command, stdin=feed, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        if children is not None:
            children.add(proc)
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            proc.communicate()
            raise FFmpegError(f"ffmpeg took longer than {timeout:.0f}s") from exc
        finally:
            if children is not None:
                children.discard(proc)
    if proc.returncode != 0:
        raise FFmpegError(f"ffmpeg failed ({proc.returncode}): {err.decode(errors='replace')[-1500:]}")
    return out


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
