"""Makes one instrumental music bed with ElevenLabs music (MP3): one call.

The assembly loops or trims it to the video's length, fades it and ducks it under the narration."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from provider_facts import ELEVENLABS_MUSIC_MAX_S, ELEVENLABS_MUSIC_MIN_S
from scripts._lib import elevenlabs, pricing
from scripts._lib.audio import (
    SCENE_EDGES_S,
    require_narration,
    seconds_or_auto,
    spoken_seconds,
    write_checked,
)
from scripts._lib.cli import ArgumentParser, Result, run


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="generate_music.py", description=__doc__)
    p.add_argument("--prompt", required=True, help="what the music sounds like (genre, mood, instruments)")
    p.add_argument(
        "--duration",
        required=True,
        type=seconds_or_auto(ELEVENLABS_MUSIC_MIN_S, ELEVENLABS_MUSIC_MAX_S),
        help=f"seconds, {ELEVENLABS_MUSIC_MIN_S} to {ELEVENLABS_MUSIC_MAX_S}; auto: as long as the "
        "--narration files' scenes together, with room for an end card",
    )
    p.add_argument(
        "--narration",
        type=Path,
        action="append",
        default=[],
        help="with --duration auto: a scene's narration",
    )
    p.add_argument("--output", required=True, type=Path, help="MP3 file to write")
    p.add_argument("--model-id", default="music_v1")
    return p


# Beyond the scenes: the fade out, and room for a short end card (a longer cut loops the music).
MUSIC_MARGIN_S = 6.0


def music_seconds(args: argparse.Namespace) -> int:
    require_narration(args, "generate_music.py")
    if args.duration != "auto":
        return math.ceil(float(args.duration))
    scenes = sum(s + SCENE_EDGES_S for s in spoken_seconds(args.narration))
    return max(ELEVENLABS_MUSIC_MIN_S, min(ELEVENLABS_MUSIC_MAX_S, math.ceil(scenes + MUSIC_MARGIN_S)))


def body(args: argparse.Namespace) -> Result:
    seconds = music_seconds(args)
    request = {
        "prompt": args.prompt,
        "music_length_ms": seconds * 1000,
        "model_id": args.model_id,
        "force_instrumental": True,  # a bed under a narration: no singing over the words
    }
    with elevenlabs.client_from_env() as client:
        response = elevenlabs.post_audio(client, "/v1/music", request)
    duration = write_checked(response.content, args.output, "ElevenLabs")
    meta = {
        "duration_s": round(duration, 3),
        "requested_duration_s": seconds,
        "seconds": seconds,  # priced on the length asked for
        "model_id": args.model_id,
        "request_id": response.headers.get("request-id"),
    }
    return Result(str(args.output), pricing.music_cost(seconds), elevenlabs.PROVIDER, meta)


def main(argv: Sequence[str] | None = None) -> int:
    return run(parser(), body, argv, before=pricing.table)


if __name__ == "__main__":
    sys.exit(main())
