"""Speaks one narration line with ElevenLabs text-to-speech (MP3) and its timing: one call.

Beside the MP3, `<output>.words.json` holds each word and when it is spoken in the file (from the
answer's character alignment), for the captions; it is written first, so an MP3 always has it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from provider_facts import ELEVENLABS_TTS_FAST_LIMIT, ELEVENLABS_TTS_LIMIT
from scripts._lib import captions, elevenlabs, pricing
from scripts._lib.audio import write_checked
from scripts._lib.cli import ArgumentParser, Result, bounded_float, run
from scripts._lib.errors import ScriptError, transient
from scripts._lib.files import atomic_write_bytes


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="generate_audio.py", description=__doc__)
    p.add_argument("--text", required=True, help="the narration text")
    p.add_argument("--voice-id", required=True)
    p.add_argument("--output", required=True, type=Path, help="MP3 file to write")
    p.add_argument("--model-id", default="eleven_multilingual_v2")
    p.add_argument("--stability", type=bounded_float(0.0, 1.0))
    p.add_argument("--similarity-boost", type=bounded_float(0.0, 1.0))
    p.add_argument("--style", type=bounded_float(0.0, 1.0))
    p.add_argument("--speed", type=bounded_float(0.7, 1.2))
    return p


def request_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"text": args.text, "model_id": args.model_id}
    settings = {
        name: getattr(args, name)
        for name in ("stability", "similarity_boost", "style", "speed")
        if getattr(args, name) is not None
    }
    # Only the settings given: the voice's own defaults apply to the rest.
    if settings:
        body["voice_settings"] = settings
    return body


def body(args: argparse.Namespace) -> Result:
    text = args.text.strip()
    if not text:
        raise ScriptError("usage", "generate_audio.py: --text is empty")
    fast = "flash" in args.model_id or "turbo" in args.model_id
    limit = ELEVENLABS_TTS_FAST_LIMIT if fast else ELEVENLABS_TTS_LIMIT
    if len(text) > limit:
        raise ScriptError(
            "permanent",
            f"The narration is {len(text)} characters; {args.model_id} takes {limit}. Shorten it.",
        )
    with elevenlabs.client_from_env() as client:
        audio, response, alignment = elevenlabs.post_speech_with_timestamps(
            client, args.voice_id, request_body(args)
        )
    try:
        words = captions.words_from_alignment(alignment)
    except (KeyError, TypeError, ValueError) as exc:
        raise transient(
            f"ElevenLabs' alignment is not readable ({exc}); retry later.", "bad_alignment"
        ) from exc
    atomic_write_bytes(captions.words_path(args.output), captions.words_json(text, words))
    duration = write_checked(audio, args.output, "ElevenLabs")
    characters = _int(response.headers.get("character-cost")) or len(args.text)
    credits = pricing.tts_credits(args.model_id, characters)
    meta = {
        "duration_s": round(duration, 3),
        "words": len(words),
        "speech_end_s": round(words[-1].end, 3) if words else 0.0,
        "characters": characters,
        "credits": credits,
        "voice_id": args.voice_id,
        "model_id": args.model_id,
        "request_id": response.headers.get("request-id"),
    }
    return Result(str(args.output), pricing.elevenlabs_cost(credits), elevenlabs.PROVIDER, meta)


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(parser(), body, argv, before=pricing.table)


if __name__ == "__main__":
    sys.exit(main())
