"""Chroma keying and compositing with Pillow: a subject shot on a flat key colour onto a frame.

The matte is "keyness": how much the key's strong channel(s) exceed its weak ones (for green,
g - max(r, b)). Unlike a plain distance to the key colour, it keeps working on the shaded,
uneven greens image models actually paint, and it never keys out greys, whites or blacks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageFilter, ImageOps

FRAME_SIZE = (1920, 1080)
# Keyness as a fraction of the key colour's own: above TRANSPARENT the pixel is background, below
# OPAQUE it is subject, between the two the edge is soft.
TRANSPARENT_AT = 0.45
OPAQUE_AT = 0.15
BOTTOM_MARGIN = 0.04  # of the frame height, so the subject does not sit on the frame's edge
MAX_WIDTH = 0.95  # of the frame width


class KeyingError(ValueError):
    """The character image cannot be keyed (e.g. nothing is left once the key colour is removed)."""


@dataclass(frozen=True)
class KeyColor:
    rgb: tuple[int, int, int]

    @classmethod
    def parse(cls, text: str) -> KeyColor:
        m = re.fullmatch(r"#?([0-9a-fA-F]{6})", text.strip())
        if m is None:
            raise ValueError(f"not a colour like #00FF00: {text!r}")
        value = m.group(1)
        return cls((int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)))

    @property
    def strong(self) -> list[int]:
        return [i for i, v in enumerate(self.rgb) if v >= 128]

    @property
    def weak(self) -> list[int]:
        return [i for i, v in enumerate(self.rgb) if v < 128]

    @property
    def is_chroma(self) -> bool:
        """Keyness needs both strong and weak channels (green, blue, magenta...; not grey)."""
        return bool(self.strong) and bool(self.weak)

    def keyness(self) -> int:
        return min(self.rgb[i] for i in self.strong) - max(self.rgb[i] for i in self.weak)


@dataclass
class Placement:
    box: tuple[int, int, int, int]  # where the subject landed in the frame: x0, y0, x1, y1
    key_fraction: float  # share of the character image that was key colour


def cover(image: Image.Image, size: tuple[int, int] = FRAME_SIZE) -> Image.Image:
    """Scales and centre-crops to fill `size` (no bars)."""
    return ImageOps.fit(image.convert("RGB"), size, Image.Resampling.LANCZOS, centering=(0.5, 0.5))


def matte(image: Image.Image, key: KeyColor) -> Image.Image:
    """Alpha ("L"): 255 for subject, 0 for key colour, a ramp in between, slightly eroded and feathered."""
    bands = image.convert("RGB").split()
    if key.is_chroma:
        strong = _combine(ImageChops.darker, [bands[i] for i in key.strong])
        weak = _combine(ImageChops.lighter, [bands[i] for i in key.weak])
        score = ImageChops.subtract(strong, weak)  # clips at 0: pixels unlike the key score 0
        full = max(1, key.keyness())
    else:  # grey keys: plain distance to the colour, reversed so "more like the key" scores higher
        diffs = [
            ImageChops.difference(band, Image.new("L", image.size, v))
            for band, v in zip(bands, key.rgb, strict=True)
        ]
        score = ImageChops.invert(_combine(ImageChops.lighter, diffs))
        full = 255
    lo, hi = OPAQUE_AT * full, TRANSPARENT_AT * full
    alpha = score.point(lambda v: 255 if v <= lo else 0 if v >= hi else round(255 * (hi - v) / (hi - lo)))
    # Eroding one pixel eats the key-coloured fringe that antialiasing leaves; the blur softens the cut.
    return alpha.filter(ImageFilter.MinFilter(3)).filter(ImageFilter.GaussianBlur(1.0))


def despill(image: Image.Image, key: KeyColor) -> Image.Image:
    """Caps the key's channel at the others' level, so key-coloured light on the subject turns neutral."""
    if len(key.strong) != 1 or not key.weak:
        return image.convert("RGB")
    bands = list(image.convert("RGB").split())
    channel = key.strong[0]
    ceiling = _combine(ImageChops.lighter, [bands[i] for i in range(3) if i != channel])
    bands[channel] = ImageChops.darker(bands[channel], ceiling)
    return Image.merge("RGB", bands)


POSITIONS = ("left", "centre", "right")


def composite(
    environment: Image.Image,
    character: Image.Image | None,
    key: KeyColor,
    scale: float,
    position: str = "centre",
    size: tuple[int, int] = FRAME_SIZE,
) -> tuple[Image.Image, Placement | None]:
    """The frame (16:9, or 9:16 for Shorts: `size`): the environment cover-fitted, the keyed subject
    at the bottom, centred on the frame's left third, centre or right third (kept inside the frame)."""
    frame = cover(environment, size).convert("RGBA")
    if character is None:
        return frame.convert("RGB"), None
    alpha = matte(character, key)
    subject = despill(character, key).convert("RGBA")
    subject.putalpha(alpha)
    bbox = alpha.point(lambda v: 255 if v > 16 else 0).getbbox()
    if bbox is None:
        raise KeyingError("nothing is left of the character once its key colour is removed")
    subject = subject.crop(bbox)
    subject = _scaled(subject, scale, size)
    width, height = size
    centre = {"left": width / 3, "centre": width / 2, "right": width * 2 / 3}[position]
    x = min(max(0, round(centre - subject.width / 2)), width - subject.width)
    y = height - subject.height - round(BOTTOM_MARGIN * height)
    frame.alpha_composite(subject, (x, max(0, y)))
    keyed = alpha.point(lambda v: 255 if v < 128 else 0).histogram()[255]
    placement = Placement(
        box=(x, max(0, y), x + subject.width, max(0, y) + subject.height),
        key_fraction=keyed / (alpha.width * alpha.height),
    )
    return frame.convert("RGB"), placement


def _scaled(subject: Image.Image, scale: float, size: tuple[int, int]) -> Image.Image:
    """The subject's height becomes `scale` of the frame's, its width never beyond MAX_WIDTH."""
    factor = scale * size[1] / subject.height
    factor = min(factor, MAX_WIDTH * size[0] / subject.width)
    size = (max(1, round(subject.width * factor)), max(1, round(subject.height * factor)))
    # Pillow resizes RGBA with premultiplied alpha, so no key colour bleeds in from the edges.
    return subject.resize(size, Image.Resampling.LANCZOS)


def _combine(op: object, bands: list[Image.Image]) -> Image.Image:
    assert callable(op)
    result = bands[0]
    for band in bands[1:]:
        result = op(result, band)
    return result
