"""Makes one instrumental music bed with ElevenLabs music (MP3): one call.

The assembly loops or trims it to the video's length, fades it and ducks it under the narration."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from provider_facts import ELEVENLABS_MUSIC_MAX_S, ELEVENLABS_MUSIC_MIN_S
from scripts._lib import elevenlabs, pricing
from scripts._lib.audio import write_checked
from scripts._lib.cli import ArgumentParser, Result, bounded_float, run


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="generate_music.py", description=__doc__)
    p.add_argument("--prompt", required=True, help="what the music sounds like (genre, mood, instruments)")
    p.add_argument(
        "--duration",
        required=True,
        type=bounded_float(ELEVENLABS_MUSIC_MIN_S, ELEVENLABS_MUSIC_MAX_S),
        help=f"seconds, {ELEVENLABS_MUSIC_MIN_S} to {ELEVENLABS_MUSIC_MAX_S}",
    )
    p.add_argument("--output", required=True, type=Path, help="MP3 file to write")
    p.add_argument("--model-id", default="music_v1")
    return p


def body(args: argparse.Namespace) -> Result:
    request = {
        "prompt": args.prompt,
        "music_length_ms": round(args.duration * 1000),
        "model_id": args.model_id,
        "force_instrumental": True,  # a bed under a narration: no singing over the words
    }
    with elevenlabs.client_from_env() as client:
        response = elevenlabs.post_audio(client, "/v1/music", request)
    duration = write_checked(response.content, args.output, "ElevenLabs")
    meta = {
        "duration_s": round(duration, 3),
        "requested_duration_s": args.duration,
        "seconds": args.duration,  # priced on the length asked for
        "model_id": args.model_id,
        "request_id": response.headers.get("request-id"),
    }
    return Result(str(args.output), pricing.music_cost(args.duration), elevenlabs.PROVIDER, meta)


def main(argv: Sequence[str] | None = None) -> int:
    return run(parser(), body, argv, before=pricing.table)


if __name__ == "__main__":
    sys.exit(main())
