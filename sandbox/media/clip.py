"""Video clips from a still: a slow push-in (FFmpeg zoompan), H.264 yuv420p, no audio, like Kling's."""

from __future__ import annotations

from pathlib import Path

from sandbox.media import ffmpeg

PUSH_IN = 0.12  # the zoom reached at the last frame: slow enough to read as a camera move
# zoompan rounds its crop window to whole pixels; working at twice the output size halves the jitter.
_OVERSAMPLE = 2


def render(
    image: Path,
    output: Path,
    seconds: int,
    width: int,
    height: int,
    fps: int,
    children: ffmpeg.Children | None = None,
) -> None:
    """Writes `output` atomically: `seconds` of a push-in on `image` at `width`x`height`, `fps`."""
    frames = seconds * fps
    big_w, big_h = width * _OVERSAMPLE, height * _OVERSAMPLE
    zoom = f"1+{PUSH_IN}*on/{max(1, frames - 1)}"
    # One decoded frame, scaled once; zoompan's d= makes every output frame from it (looping the
    # input instead would decode and scale the still again for each frame: twice the CPU).
    graph = (
        f"scale={big_w}:{big_h}:force_original_aspect_ratio=increase,crop={big_w}:{big_h},"
        f"zoompan=z='{zoom}':x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':d={frames}:s={width}x{height}:fps={fps},"
        "format=yuv420p"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".part")
    ffmpeg.run(
        [
            "-i", str(image),
            "-vf", graph, "-frames:v", str(frames),
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
            "-movflags", "+faststart", "-f", "mp4", str(partial),
        ],
        children=children,
    )  # fmt: skip
    partial.replace(output)
