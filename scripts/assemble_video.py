"""Assembles the final MP4 from per-scene clip, narration and SFX bed (FFmpeg, local: no network).

Two FFmpeg runs: an audio-only pass measures the mix's loudness, the second renders everything in
one filtergraph with a linear loudness correction, H.264 + AAC, faststart."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from scripts._lib import assembly, ffmpeg
from scripts._lib.cli import ArgumentParser, Result, bounded_float, run
from scripts._lib.errors import permanent
from scripts._lib.files import atomic_path, require_file


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="assemble_video.py", description=__doc__)
    p.add_argument(
        "--scene",
        required=True,
        action="append",
        nargs=3,
        type=Path,
        metavar=("CLIP", "NARRATION", "SFX"),
        help="one scene's files, repeated in order",
    )
    p.add_argument("--output", required=True, type=Path, help="MP4 file to write")
    p.add_argument(
        "--sfx-level-db", type=bounded_float(-60.0, 0.0), default=-18.0, help="gain of the SFX bed"
    )
    p.add_argument("--loudness", type=bounded_float(-40.0, -5.0), default=-14.0, help="target LUFS")
    p.add_argument("--tail", type=bounded_float(0.0, 5.0), default=0.4, help="seconds after each narration")
    p.add_argument("--width", type=_even_size, default=1920)
    p.add_argument("--height", type=_even_size, default=1080)
    p.add_argument("--fps", type=int, choices=range(1, 121), default=24, metavar="FPS")
    p.add_argument("--preset", default="veryfast", help="libx264 preset")
    return p


def _even_size(text: str) -> int:
    value = int(text)
    # H.264 in yuv420p needs even sides.
    if value < 16 or value > 7680 or value % 2:
        raise argparse.ArgumentTypeError(f"must be an even number of pixels between 16 and 7680, got {text}")
    return value


def scenes_of(args: argparse.Namespace) -> list[assembly.SceneFiles]:
    scenes = []
    for number, (clip, narration, sfx) in enumerate(args.scene, start=1):
        scenes.append(
            assembly.SceneFiles(
                clip=require_file(clip, f"clip of scene {number}"),
                narration=require_file(narration, f"narration of scene {number}"),
                sfx=require_file(sfx, f"SFX bed of scene {number}"),
            )
        )
    return scenes


def narration_lengths(scenes: list[assembly.SceneFiles]) -> list[float]:
    lengths = []
    for number, scene in enumerate(scenes, start=1):
        try:
            lengths.append(ffmpeg.audio_duration(scene.narration))
            ffmpeg.audio_duration(scene.sfx)  # decodes: a broken bed fails here with its name, not later
        except ffmpeg.DecodeError as exc:
            raise permanent(
                f"Scene {number}: an audio file does not decode ({exc}); regenerate it, then requeue."
            ) from exc
    return lengths


def measure(
    scenes: list[assembly.SceneFiles], timings: list[assembly.SceneTiming], args: argparse.Namespace
) -> assembly.Loudness | None:
    inputs: list[str] = []
    for scene in scenes:
        inputs += ["-i", str(scene.narration), "-stream_loop", "-1", "-i", str(scene.sfx)]
    graph = assembly.measure_graph(timings, args.sfx_level_db, args.loudness)
    proc = ffmpeg.run(["-v", "info", *inputs, "-filter_complex", graph, "-map", "[out]", "-f", "null", "-"])
    return assembly.parse_loudness(proc.stderr)


def render(scenes: list[assembly.SceneFiles], graph: str, fps: int, preset: str, output: Path) -> None:
    inputs: list[str] = []
    for scene in scenes:
        inputs += [
            "-i",
            str(scene.clip),
            "-i",
            str(scene.narration),
            "-stream_loop",
            "-1",
            "-i",
            str(scene.sfx),
        ]
    encode = ["-c:v", "libx264", "-preset", preset, "-crf", "20", "-pix_fmt", "yuv420p", "-r", str(fps)]
    encode += ["-c:a", "aac", "-b:a", "192k", "-ar", "48000", "-movflags", "+faststart"]
    with atomic_path(output) as tmp:
        ffmpeg.run(
            [
                "-v",
                "error",
                *inputs,
                "-filter_complex",
                graph,
                "-map",
                "[vout]",
                "-map",
                "[aout]",
                *encode,
                "-y",
                str(tmp),
            ]
        )


def body(args: argparse.Namespace) -> Result:
    started = time.monotonic()
    fmt = assembly.Format(args.width, args.height, args.fps)
    scenes = scenes_of(args)
    timings = assembly.timeline(narration_lengths(scenes), args.tail, fmt.fps)
    try:
        measured = measure(scenes, timings, args)
        graph = assembly.final_graph(timings, args.sfx_level_db, args.loudness, fmt, measured)
        render(scenes, graph, fmt.fps, args.preset, args.output)
    except ffmpeg.DecodeError as exc:
        raise permanent(
            f"FFmpeg could not assemble the video ({exc}); check that every clip decodes."
        ) from exc
    meta = {
        "duration_s": round(timings[-1].end_s, 3),
        "scenes": len(timings),
        "timeline": [t.as_meta(i) for i, t in enumerate(timings, start=1)],
        "width": fmt.width,
        "height": fmt.height,
        "fps": fmt.fps,
        "loudness_lufs": args.loudness,
        "measured_lufs": measured.input_i if measured else None,
        "render_s": round(time.monotonic() - started, 2),
    }
    return Result(str(args.output), 0.0, "local", meta)


def main(argv: Sequence[str] | None = None) -> int:
    return run(parser(), body, argv)


if __name__ == "__main__":
    sys.exit(main())
