"""Makes one sound-effects bed with ElevenLabs sound generation (MP3): one call."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from scripts._lib import elevenlabs, pricing
from scripts._lib.audio import (
    SCENE_EDGES_S,
    require_narration,
    seconds_or_auto,
    spoken_seconds,
    write_checked,
)
from scripts._lib.cli import ArgumentParser, Result, bounded_float, run

MAX_SECONDS = 30.0


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="generate_sound_effects.py", description=__doc__)
    p.add_argument("--prompt", required=True, help="what the bed sounds like")
    p.add_argument(
        "--duration",
        required=True,
        type=seconds_or_auto(0.5, MAX_SECONDS),
        help="seconds, 0.5 to 30; auto: as long as --narration's scene",
    )
    p.add_argument("--narration", type=Path, help="with --duration auto: the scene's narration (audio)")
    p.add_argument("--loop", action="store_true", help="a bed that loops seamlessly (the assembly loops it)")
    p.add_argument("--output", required=True, type=Path, help="MP3 file to write")
    p.add_argument("--prompt-influence", type=bounded_float(0.0, 1.0), default=0.3)
    p.add_argument("--model-id", default="eleven_text_to_sound_v2")
    return p


def bed_seconds(args: argparse.Namespace) -> float:
    """As asked, or (auto) the scene's length: the measured words, the lead-in and tail, a margin."""
    require_narration(args, "generate_sound_effects.py")
    if args.duration != "auto":
        return float(args.duration)
    spoken = spoken_seconds([args.narration])[0]
    return round(min(MAX_SECONDS, max(1.0, spoken + SCENE_EDGES_S + 0.3)), 1)


def body(args: argparse.Namespace) -> Result:
    seconds = bed_seconds(args)
    request: dict[str, object] = {
        "text": args.prompt,
        "duration_seconds": seconds,
        "prompt_influence": args.prompt_influence,
        "model_id": args.model_id,
    }
    if args.loop:
        request["loop"] = True
    with elevenlabs.client_from_env() as client:
        response = elevenlabs.post_audio(client, "/v1/sound-generation", request)
    duration = write_checked(response.content, args.output, "ElevenLabs")
    # Billed on the duration asked for (40 credits a second), not on what came back.
    credits = pricing.sfx_credits(seconds)
    meta = {
        "duration_s": round(duration, 3),
        "requested_duration_s": seconds,
        "credits": credits,
        "model_id": args.model_id,
        "request_id": response.headers.get("request-id"),
    }
    return Result(str(args.output), pricing.elevenlabs_cost(credits), elevenlabs.PROVIDER, meta)


def main(argv: Sequence[str] | None = None) -> int:
    return run(parser(), body, argv, before=pricing.table)


if __name__ == "__main__":
    sys.exit(main())
