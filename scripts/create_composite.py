"""Makes one 1920x1080 frame (1080x1920 for Shorts): the environment cover-fitted, the character
keyed on at the bottom, left, centre or right, at the asked height.
Local only: no network, no cost."""

from __future__ import annotations

import argparse
import io
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from scripts._lib import keying
from scripts._lib.cli import ArgumentParser, Result, bounded_float, run
from scripts._lib.errors import permanent
from scripts._lib.files import atomic_path, require_file
from scripts._lib.output import emit


def _key_color(text: str) -> keying.KeyColor:
    try:
        return keying.KeyColor.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="create_composite.py", description=__doc__)
    p.add_argument("--environment", required=True, type=Path, help="environment image")
    p.add_argument("--character", type=Path, help="character image on a flat key colour")
    p.add_argument(
        "--key-color", default=keying.KeyColor((0, 255, 0)), type=_key_color, help="default #00FF00"
    )
    p.add_argument(
        "--character-scale", default=0.55, type=bounded_float(0.05, 1.0), help="height share of the frame"
    )
    p.add_argument(
        "--character-position", choices=keying.POSITIONS, default="centre", help="where the subject stands"
    )
    p.add_argument(
        "--size",
        type=frame_size,
        default=keying.FRAME_SIZE,
        help="WIDTHxHEIGHT of the frame: 1920x1080, or 1080x1920 for Shorts",
    )
    p.add_argument("--output", required=True, type=Path, help="PNG file to write")
    return p


def frame_size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d{2,4})x(\d{2,4})", text)
    if match is None or int(match[1]) % 2 or int(match[2]) % 2:
        raise argparse.ArgumentTypeError(f"must be WIDTHxHEIGHT in even pixels, e.g. 1080x1920, got {text}")
    return int(match[1]), int(match[2])


def _open(path: Path, what: str) -> Image.Image:
    require_file(path, what)
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (UnidentifiedImageError, OSError) as exc:
        raise permanent(
            f"The {what} {path} is not a readable image ({exc}); regenerate it, then requeue."
        ) from exc


def body(args: argparse.Namespace) -> Result:
    environment = _open(args.environment, "environment image")
    character = _open(args.character, "character image") if args.character else None
    try:
        frame, placement = keying.composite(
            environment, character, args.key_color, args.character_scale, args.character_position, args.size
        )
    except keying.KeyingError as exc:
        raise permanent(
            f"The character image {args.character} cannot be keyed: {exc}. Regenerate it on a flat "
            f"{_hex(args.key_color)} background, then requeue."
        ) from exc
    data = io.BytesIO()
    # zlib's fastest level: a 1080p frame encodes in 0.14 s instead of 1.0 s (level 6), and is
    # about 7 % larger; the encode was most of a composite's time, on the way to every clip.
    frame.save(data, format="PNG", compress_level=1)
    with atomic_path(args.output) as tmp:
        tmp.write_bytes(data.getvalue())
    meta: dict[str, object] = {
        "width": frame.width,
        "height": frame.height,
        "key_color": _hex(args.key_color),
    }
    if placement is not None:
        meta |= {"character_box": list(placement.box), "key_fraction": round(placement.key_fraction, 4)}
        if placement.key_fraction < 0.05:
            # Not an error (the frame is made), but the subject probably came with its background.
            emit(
                "warning",
                message=f"Little of the character image was {_hex(args.key_color)}: "
                "was it generated on the key colour?",
            )
    return Result(str(args.output), 0.0, "local", meta)


def _hex(key: keying.KeyColor) -> str:
    return "#{:02X}{:02X}{:02X}".format(*key.rgb)


def main(argv: Sequence[str] | None = None) -> int:
    return run(parser(), body, argv)


if __name__ == "__main__":
    sys.exit(main())
