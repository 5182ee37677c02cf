"""Makes one sound-effects bed with ElevenLabs sound generation (MP3): one call."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from scripts._lib import elevenlabs, pricing
from scripts._lib.audio import write_checked
from scripts._lib.cli import ArgumentParser, Result, bounded_float, run


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="generate_sound_effects.py", description=__doc__)
    p.add_argument("--prompt", required=True, help="what the bed sounds like")
    p.add_argument("--duration", required=True, type=bounded_float(0.5, 30.0), help="seconds, 0.5 to 30")
    p.add_argument("--output", required=True, type=Path, help="MP3 file to write")
    p.add_argument("--prompt-influence", type=bounded_float(0.0, 1.0), default=0.3)
    p.add_argument("--model-id", default="eleven_text_to_sound_v2")
    return p


def body(args: argparse.Namespace) -> Result:
    request = {
        "text": args.prompt,
        "duration_seconds": args.duration,
        "prompt_influence": args.prompt_influence,
        "model_id": args.model_id,
    }
    with elevenlabs.client_from_env() as client:
        response = elevenlabs.post_audio(client, "/v1/sound-generation", request)
    duration = write_checked(response.content, args.output, "ElevenLabs")
    # Billed on the duration asked for (40 credits a second), not on what came back.
    credits = pricing.sfx_credits(args.duration)
    meta = {
        "duration_s": round(duration, 3),
        "requested_duration_s": args.duration,
        "credits": credits,
        "model_id": args.model_id,
        "request_id": response.headers.get("request-id"),
    }
    return Result(str(args.output), pricing.elevenlabs_cost(credits), elevenlabs.PROVIDER, meta)


def main(argv: Sequence[str] | None = None) -> int:
    return run(parser(), body, argv, before=pricing.table)


if __name__ == "__main__":
    sys.exit(main())
