"""Writes a storyboard (JSON, DESIGN.md's format) from a title, topic and direction: one Gemini call."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scripts._lib import gemini, pricing
from scripts._lib import storyboard as sb
from scripts._lib.cli import ArgumentParser, Result, run
from scripts._lib.errors import transient
from scripts._lib.files import atomic_write_bytes


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="generate_storyboard.py", description=__doc__)
    p.add_argument("--title", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--direction", required=True, help="the Story Direction text")
    p.add_argument("--scenes", required=True, type=_scene_count, help="number of scenes (1-60)")
    p.add_argument("--output", required=True, type=Path, help="storyboard JSON file to write")
    p.add_argument("--model", default="gemini-2.5-flash")
    return p


def _scene_count(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 60:
        raise argparse.ArgumentTypeError(f"must be 1-60, got {text}")
    return value


def request_body(brief: sb.Brief) -> dict[str, Any]:
    return {
        "contents": [{"role": "user", "parts": [{"text": sb.instructions(brief)}]}],
        "generationConfig": {
            "responseMimeType": "application/json",
            "responseSchema": sb.response_schema(brief.scenes),
        },
    }


def body(args: argparse.Namespace) -> Result:
    brief = sb.Brief(title=args.title, topic=args.topic, direction=args.direction, scenes=args.scenes)
    with gemini.client_from_env() as client:
        answer = gemini.generate(client, args.model, request_body(brief))
    candidate = gemini.check_not_blocked(answer, "the storyboard (Topic / Story Direction)")
    try:
        storyboard = sb.build(sb.parse_answer(gemini.text_of(candidate)), brief)
    except sb.InvalidAnswer as exc:
        finish = gemini.finish_reason(candidate)
        raise transient(
            f"Gemini's storyboard answer was unusable ({exc}; finishReason {finish or 'none'}); "
            "a new attempt usually works.",
            "invalid_answer",
        ) from exc
    atomic_write_bytes(args.output, json.dumps(storyboard, indent=2, ensure_ascii=False).encode() + b"\n")
    usage = gemini.usage_of(answer)
    cost = pricing.gemini_cost(usage.prompt_tokens, usage.output_tokens, image=False)
    meta = {
        **usage.as_meta(),
        "model": args.model,
        "scenes": len(storyboard["scenes"]),
        "assets": len(storyboard["assets"]),
    }
    return Result(str(args.output), cost, gemini.PROVIDER, meta)


def main(argv: Sequence[str] | None = None) -> int:
    return run(parser(), body, argv, before=pricing.table)


if __name__ == "__main__":
    sys.exit(main())
