"""Assembles the final MP4 from per-scene clip, narration and SFX bed, and an optional music bed
(FFmpeg, local: no network).

Each narration, bed and the music is measured first and brought to its level (the voice at the
target, the beds and the music so many LU under it); the music is ducked under the voice.

The sound is mixed once, to a float WAV in a scratch folder, and measured on the way; short passes
over that file measure it through the limiter for one linear mastering gain; one render makes the
picture in one filtergraph (crossfades, fades, captions burned in) and masters the mixed sound (the
gain and a true-peak limiter), H.264 + AAC as YouTube advises, faststart; a last pass measures the
encoded file. Captions come from each narration's words (`<narration>.words.json`,
written by generate_audio.py): burned into the picture, a soft subtitle track in the MP4, and
`<output>.srt` beside it for the upload."""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from scripts._lib import assembly, captions, ffmpeg, thumbnail
from scripts._lib.cli import ArgumentParser, Result, bounded_float, run
from scripts._lib.errors import permanent
from scripts._lib.files import atomic_path, atomic_write_bytes, require_file

MASTERING_PASSES = 3  # audio-only measurements through the limiter, at most


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
    p.add_argument("--music", type=Path, help="a music bed, looped or trimmed to the cut (none: no music)")
    levels = assembly.Levels()
    p.add_argument(
        "--loudness",
        type=bounded_float(-40.0, -5.0),
        default=levels.voice_lufs,
        help="target LUFS of the cut, and of each narration",
    )
    p.add_argument(
        "--ambience-lu",
        type=bounded_float(-40.0, 0.0),
        default=levels.ambience_lu,
        help="each SFX bed's loudness, LU relative to the voice",
    )
    p.add_argument(
        "--music-lu",
        type=bounded_float(-40.0, 0.0),
        default=levels.music_lu,
        help="the music's loudness while the voice speaks, LU relative to the voice",
    )
    p.add_argument(
        "--duck-db",
        type=bounded_float(0.0, 24.0),
        default=levels.duck_db,
        help="how much louder the music is between the words than under them",
    )
    p.add_argument("--tail", type=bounded_float(0.0, 5.0), default=0.4, help="seconds after each narration")
    edges = assembly.Edges()
    p.add_argument(
        "--crossfade",
        type=bounded_float(0.0, 1.0),
        default=edges.crossfade_s,
        help="seconds of picture and sound crossfade between scenes (0: hard cuts)",
    )
    p.add_argument(
        "--fade", type=bounded_float(0.0, 2.0), default=edges.fade_s, help="fade from and to black, seconds"
    )
    p.add_argument("--width", type=_even_size, default=1920)
    p.add_argument("--height", type=_even_size, default=1080)
    p.add_argument("--fps", type=int, choices=range(1, 121), default=24, metavar="FPS")
    p.add_argument("--preset", default="veryfast", help="libx264 preset")
    p.add_argument(
        "--burn-captions",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="draw the captions onto the picture (the soft track and the .srt are made either way)",
    )
    style = captions.Style()
    p.add_argument(
        "--caption-size",
        type=bounded_float(0.02, 0.15),
        default=style.size,
        help="text height, share of the frame's",
    )
    p.add_argument("--caption-colour", type=_colour, default=style.colour, help="#RRGGBB")
    p.add_argument("--caption-outline-colour", type=_colour, default=style.outline_colour, help="#RRGGBB")
    p.add_argument(
        "--caption-outline",
        type=bounded_float(0.0, 0.02),
        default=style.outline,
        help="share of the frame's height",
    )
    p.add_argument("--caption-position", choices=("bottom", "middle", "top"), default=style.position)
    p.add_argument(
        "--caption-weight",
        choices=tuple(captions.FONTS),
        default=style.weight,
        help="Source Sans Pro's weight",
    )
    p.add_argument("--caption-language", default="eng", help="ISO 639-2 code of the subtitle track")
    p.add_argument("--title", default="", help="drawn on the thumbnail (<output>.thumbnail.jpg)")
    p.add_argument(
        "--title-card",
        action="store_true",
        help=f"show --title over the opening {assembly.TITLE_CARD_S:g} s (after the fade from black)",
    )
    p.add_argument(
        "--outro",
        type=bounded_float(0.0, 15.0),
        default=0.0,
        help="seconds of end card after the last scene (the strongest frame, blurred, with --outro-text)",
    )
    p.add_argument("--outro-text", default="", help="on the end card (default: --title)")
    p.add_argument(
        "--min-length",
        type=bounded_float(0.0, 120.0),
        default=0.0,
        help="seconds the cut lasts at least: the end card grows to it (25 allows YouTube end screens)",
    )
    p.add_argument(
        "--max-slowdown",
        type=bounded_float(1.0, 3.0),
        default=1.5,
        help="how much slower a clip shorter than its scene may play (1: never); then its last frame holds",
    )
    return p


def _colour(text: str) -> str:
    if not captions.HEX_COLOUR.fullmatch(text):
        raise argparse.ArgumentTypeError(f"must be a #RRGGBB colour, got {text}")
    return text


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


def clip_lengths(scenes: list[assembly.SceneFiles]) -> list[float]:
    lengths = []
    for number, scene in enumerate(scenes, start=1):
        try:
            lengths.append(ffmpeg.probe_video(scene.clip).duration_s)
        except ffmpeg.DecodeError as exc:
            raise permanent(
                f"Scene {number}: the clip {scene.clip} does not decode ({exc}); regenerate it, then requeue."
            ) from exc
    return lengths


@dataclass(frozen=True)
class Heard:
    """An audio file decoded once: its length and its loudness (None: silent)."""

    seconds: float
    lufs: float | None


def meter(paths: list[Path]) -> list[Heard]:
    """Each file decoded once for its length and loudness, all in one FFmpeg run (a run per file
    cost about as much to start as to decode); DecodeError or ValueError when the run fails."""
    inputs = [arg for path in paths for arg in ("-i", str(path))]
    maps = [arg for i in range(len(paths)) for arg in ("-map", f"[o{i}]")]
    graph = assembly.meters_graph(len(paths))
    # -nostats: no progress lines (carriage-return ended) among the meters' summaries.
    command = ["-v", "info", "-nostats", *inputs, "-filter_complex", graph, *maps, "-f", "null", "-"]
    proc = ffmpeg.run(command)
    return [Heard(seconds, lufs) for seconds, lufs in assembly.parse_meters(proc.stderr, len(paths))]


def hear(path: Path, what: str) -> Heard:
    """One file's length and loudness; one that does not decode or has no sound is permanent,
    named by `what`."""
    try:
        [heard] = meter([path])
    except (ffmpeg.DecodeError, ValueError) as exc:
        raise permanent(f"{what} {path} does not decode ({exc}); regenerate it, then requeue.") from exc
    if heard.seconds <= 0:
        raise permanent(f"{what} {path} holds no sound; regenerate it, then requeue.")
    return heard


def hear_all(files: list[tuple[Path, str]]) -> list[Heard]:
    """Each file's (a path, and how to name it) length and loudness, in one run; when that run
    fails or a file has no sound, each is heard alone, so the one at fault is named."""
    try:
        heard = meter([path for path, _ in files])
    except (ffmpeg.DecodeError, ValueError):
        heard = []
    if len(heard) == len(files) and all(h.seconds > 0 for h in heard):
        return heard
    return [hear(path, what) for path, what in files]


def levels_of(args: argparse.Namespace) -> assembly.Levels:
    return assembly.Levels(args.loudness, args.ambience_lu, args.music_lu, args.duck_db)


@dataclass(frozen=True)
class Mix:
    """Everything the sound of the cut depends on."""

    scenes: list[assembly.SceneFiles]
    timings: list[assembly.SceneTiming]
    gains: assembly.Gains
    levels: assembly.Levels
    edges: assembly.Edges
    music: Path | None


def edges_of(args: argparse.Namespace) -> assembly.Edges:
    return assembly.Edges(crossfade_s=args.crossfade, fade_s=args.fade)


def measure_file(path: Path) -> assembly.Loudness | None:
    """The encoded file's loudness and true peak: what a viewer (and YouTube) will measure."""
    proc = ffmpeg.run(
        ["-v", "info", "-i", str(path), "-map", "0:a:0", "-af", assembly.METER, "-f", "null", "-"]
    )
    return assembly.parse_ebur128(proc.stderr)


def premix(mix: Mix, path: Path) -> assembly.Loudness | None:
    """Mixes the sound once into `path`: every narration, bed and the music at their gains, the
    music ducked, the fades; 32-bit float, so nothing clips before the mastering gain. Returns its
    loudness as it is (None: silence). The mastering passes and the render read this file, not the
    scenes' files again."""
    inputs: list[str] = []
    for scene in mix.scenes:
        inputs += ["-i", str(scene.narration), "-stream_loop", "-1", "-i", str(scene.sfx)]
    if mix.music is not None:
        inputs += ["-stream_loop", "-1", "-i", str(mix.music)]
    graph = assembly.mix_graph(mix.timings, mix.gains, mix.edges, mix.levels)
    out = ["-map", "[out]", "-c:a", "pcm_f32le", "-y", str(path)]
    proc = ffmpeg.run(["-v", "info", *inputs, "-filter_complex", graph, *out])
    return assembly.parse_ebur128(proc.stderr)


def measure_mastered(mixed: Path, gain_db: float) -> assembly.Loudness | None:
    """The mix's loudness and true peak mastered with that gain."""
    chain = f"{assembly.master(gain_db)},{assembly.METER}"
    proc = ffmpeg.run(["-v", "info", "-i", str(mixed), "-af", chain, "-f", "null", "-"])
    return assembly.parse_ebur128(proc.stderr)


def mastering_gain(raw: assembly.Loudness | None, mixed: Path, target: float) -> float | None:
    """The gain that brings the mix (`raw` its loudness as it is) to the target through the
    limiter, whose trimmed peaks cost a little loudness that the gain makes up (each pass pushes a
    little more into it, so up to MASTERING_PASSES, until within 0.1 LU). None: silence."""
    if raw is None:
        return None
    gain = target - raw.integrated
    for _ in range(MASTERING_PASSES):
        limited = measure_mastered(mixed, gain)
        if limited is None or abs(target - limited.integrated) < 0.1:
            break
        gain += target - limited.integrated
    return gain


def caption_cues(
    scenes: list[assembly.SceneFiles], timings: list[assembly.SceneTiming], width: int = captions.LINE_CHARS
) -> tuple[list[captions.Cue], list[int]]:
    """Every scene's cues on the cut's timeline, and the scenes whose narration has no words file."""
    cues: list[captions.Cue] = []
    missing: list[int] = []
    for number, (scene, timing) in enumerate(zip(scenes, timings, strict=True), start=1):
        try:
            words = captions.read_words(scene.narration)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise permanent(
                f"Scene {number}: the narration's words file {captions.words_path(scene.narration)} is "
                f"not readable ({exc}); regenerate the narration, then requeue."
            ) from exc
        if words is None:
            missing.append(number)
            continue
        cues += captions.cues(words, offset=timing.narration_start_s, until=timing.end_s, width=width)
    return cues, missing


def burn_filter(srt: Path, folder: Path, style: captions.Style) -> str:
    """libass' subtitles filter for `srt`, with the pip-installed font copied beside it."""
    font = captions.font_file(style.weight)
    shutil.copyfile(font, folder / font.name)
    for path in (srt, folder):
        if not re.fullmatch(r"[A-Za-z0-9_./-]+", str(path)):
            raise permanent(
                f"The temporary folder {folder} has characters FFmpeg's filter syntax would need escaped; "
                "set TMPDIR to a plain path (letters, digits, /._-), then requeue."
            )
    return f"subtitles=filename={srt}:fontsdir={folder}:force_style='{style.force_style(style.font_name)}'"


def best_frame(
    scenes: list[assembly.SceneFiles], clip_s: list[float], folder: Path
) -> tuple[int, Image.Image] | None:
    """The strongest of the clips' frames, one from the middle of each clip (no captions on them);
    None when no clip gives one."""
    best: tuple[float, int, Image.Image] | None = None
    for number, (scene, length) in enumerate(zip(scenes, clip_s, strict=True), start=1):
        still = folder / f"frame{number}.png"
        ffmpeg.run(
            [
                "-v",
                "error",
                "-ss",
                f"{length / 2:.3f}",
                "-i",
                str(scene.clip),
                "-frames:v",
                "1",
                "-y",
                str(still),
            ]
        )
        if not still.is_file():
            continue
        with Image.open(still) as image:
            image.load()
            score = thumbnail.strength(image)
            if best is None or score > best[0]:
                best = (score, number, image.copy())
    return None if best is None else (best[1], best[2])


@dataclass(frozen=True)
class StillFiles:
    card: Path | None = None
    title: Path | None = None

    @property
    def paths(self) -> list[Path]:
        """The stills there are, in their input order (render's)."""
        return [p for p in (self.card, self.title) if p is not None]

    def numbered(self, first: int) -> assembly.Stills:
        """Their FFmpeg input numbers, the first of them being input `first`."""
        card = first if self.card else None
        return assembly.Stills(card, first + (card is not None) if self.title else None)


def first_still(scenes: int) -> int:
    """The input number of the first still: after each scene's clip and the mixed sound."""
    return scenes + 1


def write_stills(
    args: argparse.Namespace,
    timings: list[assembly.SceneTiming],
    fmt: assembly.Format,
    best: Image.Image | None,
    folder: Path,
) -> StillFiles:
    """The end card (when the timeline has one) and the title overlay (when asked), as PNGs."""
    card = title = None
    size = (fmt.width, fmt.height)
    if timings[-1].card_s > 0:
        card = folder / "card.png"
        thumbnail.end_card(best, args.outro_text or args.title, size).save(card)
    if args.title_card and args.title.strip():
        title = folder / "title.png"
        thumbnail.title_overlay(args.title.strip(), size).save(title)
    return StillFiles(card, title)


def render(
    clips: list[Path],
    mixed: Path,
    graph: str,
    fps: int,
    preset: str,
    output: Path,
    subtitles: tuple[Path, str] | None = None,
    stills: StillFiles = StillFiles(),
) -> None:
    """The scenes' `clips` and the `mixed` sound (`premix`) through `graph` into `output`;
    `subtitles`, an SRT file and its language, muxed as the MP4's soft subtitle track; `stills`,
    the end card and the title overlay, looped as video inputs after the sound."""
    inputs: list[str] = []
    for clip in clips:
        inputs += ["-i", str(clip)]
    inputs += ["-i", str(mixed)]
    for still in stills.paths:
        inputs += ["-loop", "1", "-framerate", str(fps), "-i", str(still)]
    maps = ["-map", "[vout]", "-map", "[aout]"]
    if subtitles is not None:
        srt, language = subtitles
        maps += ["-map", f"{first_still(len(clips)) + len(stills.paths)}:s"]  # after the stills
        inputs += ["-i", str(srt)]
    # YouTube's upload advice: H.264 High, 2 consecutive B-frames, a closed GOP of half the frame
    # rate, BT.709; AAC-LC 48 kHz stereo at 384 kb/s; the index first (faststart).
    encode = ["-c:v", "libx264", "-preset", preset, "-crf", "20", "-pix_fmt", "yuv420p", "-r", str(fps)]
    encode += ["-profile:v", "high", "-bf", "2", "-g", str(max(1, fps // 2)), "-flags", "+cgop"]
    encode += [
        "-color_primaries",
        "bt709",
        "-color_trc",
        "bt709",
        "-colorspace",
        "bt709",
        "-color_range",
        "tv",
    ]
    # FFmpeg's AAC encoder spent most of the render's CPU at this bitrate: its default coder
    # (twoloop) searches harder than the fast one for no closer result, and its mid/side stereo
    # search cost 8 of the 9.6 s it took to encode 134 s of sound while leaving the file at 280 of
    # the 384 kb/s asked. Without it the encode takes 1.7 s, fills the bitrate and stays as close
    # to the mix (SNR 54 dB against 56).
    encode += [
        "-c:a",
        "aac",
        "-aac_coder",
        "fast",
        "-aac_ms",
        "0",
        "-b:a",
        "384k",
        "-ar",
        "48000",
        "-ac",
        "2",
    ]
    encode += ["-movflags", "+faststart"]
    if subtitles is not None:
        encode += ["-c:s", "mov_text", "-metadata:s:s:0", f"language={language}"]
    with atomic_path(output) as tmp:
        ffmpeg.run(
            [
                "-v",
                "error",
                *inputs,
                "-filter_complex",
                graph,
                *maps,
                *encode,
                "-y",
                str(tmp),
            ]
        )


def body(args: argparse.Namespace) -> Result:
    started = time.monotonic()
    fmt = assembly.Format(args.width, args.height, args.fps)
    scenes = scenes_of(args)
    music = require_file(args.music, "music bed") if args.music else None
    files = [(s.narration, f"Scene {n}: the narration") for n, s in enumerate(scenes, start=1)]
    files += [(s.sfx, f"Scene {n}: the SFX bed") for n, s in enumerate(scenes, start=1)]
    heard = hear_all(files + ([(music, "The music bed")] if music else []))
    voices, beds = heard[: len(scenes)], heard[len(scenes) : 2 * len(scenes)]
    music_heard = heard[-1] if music else None
    timings = assembly.timeline(
        [v.seconds for v in voices],
        args.tail,
        fmt.fps,
        args.crossfade,
        args.fade,
        outro_s=args.outro,
        min_length_s=args.min_length,
    )
    portrait = fmt.height > fmt.width
    cues, missing = caption_cues(
        scenes, timings, captions.PORTRAIT_LINE_CHARS if portrait else captions.LINE_CHARS
    )
    clips = clip_lengths(scenes)
    slow = assembly.slowdowns(timings, clips, args.max_slowdown)
    # What is left after slowing, held on the last frame (seconds per scene, 0 for most).
    held = [max(0.0, t.picture_s - c * f) for t, c, f in zip(timings, clips, slow, strict=True)]
    style = captions.Style(
        size=args.caption_size,
        colour=args.caption_colour,
        outline_colour=args.caption_outline_colour,
        outline=args.caption_outline,
        position=args.caption_position,
        weight=args.caption_weight,
    )
    srt_beside = args.output.with_name(args.output.name + ".srt")
    thumb_beside = args.output.with_name(args.output.name + ".thumbnail.jpg")
    with tempfile.TemporaryDirectory(prefix="assembly-") as scratch:
        folder = Path(scratch)
        subtitles: tuple[Path, str] | None = None
        burn: str | None = None
        if cues:
            srt = folder / "captions.srt"
            srt.write_text(captions.srt(cues), encoding="utf-8")
            subtitles = (srt, args.caption_language)
            burn = burn_filter(srt, folder, style) if args.burn_captions else None
            # Before the video: a final cut in place always has its captions beside it.
            atomic_write_bytes(srt_beside, srt.read_bytes())
        best = best_frame(scenes, clips, folder)
        if best is not None:
            shape = thumbnail.PORTRAIT_SIZE if portrait else thumbnail.SIZE
            atomic_write_bytes(thumb_beside, thumbnail.make(best[1], args.title, shape))
        stills = write_stills(args, timings, fmt, best[1] if best else None, folder)
        try:
            levels = levels_of(args)
            gains = assembly.Gains.for_levels(
                levels,
                [v.lufs for v in voices],
                [b.lufs for b in beds],
                music_heard.lufs if music_heard else None,
                has_music=music is not None,
            )
            mix = Mix(scenes, timings, gains, levels, edges_of(args), music)
            mixed = folder / "mix.wav"
            gain = mastering_gain(premix(mix, mixed), mixed, levels.voice_lufs)
            inputs = stills.numbered(first_still(len(scenes)))
            graph = assembly.final_graph(timings, fmt, gain, burn, mix.edges, slow, inputs)
            clips_in = [scene.clip for scene in scenes]
            render(clips_in, mixed, graph, fmt.fps, args.preset, args.output, subtitles, stills)
            final = measure_file(args.output)
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
        "crossfade_s": assembly.overlap_of(timings),
        "fade_s": args.fade,
        "loudness_target_lufs": args.loudness,
        "gain_db": None if gain is None else round(gain, 2),
        "music": str(music) if music else None,
        "music_gain_db": None if mix.gains.music_db is None else round(mix.gains.music_db, 2),
        "levels": {
            "voice_lufs": levels.voice_lufs,
            "ambience_lu": levels.ambience_lu,
            "music_lu": levels.music_lu if music else None,
            "duck_db": levels.duck_db if music else None,
        },
        "bed_gains_db": [round(g, 1) for g in mix.gains.sfx_db],
        # Measured on the encoded file.
        "loudness_lufs": None if final is None else round(final.integrated, 1),
        "true_peak_dbtp": None if final is None else round(final.true_peak, 1),
        "loudness_in_spec": final is not None
        and abs(final.integrated - float(args.loudness)) <= assembly.LOUDNESS_TOLERANCE
        and final.true_peak <= assembly.TRUE_PEAK_MAX_DB,
        "captions": len(cues),
        "captions_burned": bool(cues) and args.burn_captions,
        "captions_file": str(srt_beside) if cues else None,
        "scenes_without_words": missing,
        "end_card_s": round(timings[-1].card_s, 3),
        "title_card": stills.title is not None,
        "slowed": {str(n): round(f, 3) for n, f in enumerate(slow, start=1) if f > 1.0},
        "held_s": {str(n): round(h, 2) for n, h in enumerate(held, start=1) if h > 0.05},
        "thumbnail": str(thumb_beside) if best is not None else None,
        "thumbnail_scene": best[0] if best is not None else None,
        "render_s": round(time.monotonic() - started, 2),
    }
    return Result(str(args.output), 0.0, "local", meta)


def main(argv: Sequence[str] | None = None) -> int:
    return run(parser(), body, argv)


if __name__ == "__main__":
    sys.exit(main())
