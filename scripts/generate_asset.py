"""Generates one image (PNG) from a final prompt: one Gemini image call."""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from scripts._lib import gemini, pricing
from scripts._lib.cli import ArgumentParser, Result, run
from scripts._lib.errors import transient
from scripts._lib.files import atomic_write_bytes

ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="generate_asset.py", description=__doc__)
    p.add_argument("--prompt", required=True, help="the final image prompt")
    p.add_argument("--output", required=True, type=Path, help="PNG file to write")
    p.add_argument("--aspect-ratio", default="16:9", choices=ASPECT_RATIOS)
    p.add_argument("--model", default="gemini-2.5-flash-image")
    return p


def request_body(prompt: str, aspect_ratio: str) -> dict[str, object]:
    return {
        "contents": [{"role": "user", "parts": [{"text": prompt}]}],
        "generationConfig": {"responseModalities": ["IMAGE"], "imageConfig": {"aspectRatio": aspect_ratio}},
    }


def to_png(data: bytes) -> tuple[bytes, int, int]:
    """PNG bytes and size of a decoded image; a truncated or bogus image is transient (ask again)."""
    try:
        with Image.open(io.BytesIO(data)) as probe:
            probe.verify()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.format == "PNG":
                return data, image.width, image.height
            out = io.BytesIO()
            image.save(out, format="PNG", compress_level=1)  # fast, as the composites
            return out.getvalue(), image.width, image.height
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise transient(f"Gemini's image does not decode ({exc}); retry later.", "bad_image") from exc


def body(args: argparse.Namespace) -> Result:
    with gemini.client_from_env() as client:
        answer = gemini.generate(client, args.model, request_body(args.prompt, args.aspect_ratio))
    candidate = gemini.check_not_blocked(answer, "this asset")
    image = gemini.image_of(candidate)
    if image is None:
        # A text-only answer with finishReason STOP happens now and then; a new call usually draws.
        said = gemini.text_of(candidate)[:200]
        finish = gemini.finish_reason(candidate) or "none"
        raise transient(
            f"Gemini answered with text instead of an image (finishReason {finish}); retry later. "
            f"It said: {said!r}",
            "no_image",
        )
    png, width, height = to_png(image.data)
    atomic_write_bytes(args.output, png)
    usage = gemini.usage_of(answer)
    cost = pricing.gemini_cost(usage.prompt_tokens, usage.output_tokens, image=True)
    meta = {
        **usage.as_meta(),
        "model": args.model,
        "width": width,
        "height": height,
        "aspect_ratio": args.aspect_ratio,
        "mime_type": image.mime_type,
    }
    return Result(str(args.output), cost, gemini.PROVIDER, meta)


def main(argv: Sequence[str] | None = None) -> int:
    return run(parser(), body, argv, before=pricing.table)


if __name__ == "__main__":
    sys.exit(main())
