"""Compositing: the key colour disappears, the subject lands at the bottom, where the storyboard
places it (left, centre or right), at the asked scale."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw

from scripts._lib import keying

GREEN = keying.KeyColor((0, 255, 0))


def _character(background: tuple[int, int, int] = (0, 255, 0)) -> Image.Image:
    image = Image.new("RGB", (400, 400), background)
    draw = ImageDraw.Draw(image)
    draw.ellipse((100, 50, 300, 350), fill=(180, 60, 40))
    # Shaded key colour, as image models paint it: still background.
    draw.rectangle((0, 380, 400, 400), fill=(10, 150, 30))
    return image


def test_key_colour_parsing() -> None:
    assert keying.KeyColor.parse("#00ff00").rgb == (0, 255, 0)
    assert keying.KeyColor.parse("0000FF").rgb == (0, 0, 255)


def test_frame_is_full_hd_and_cover_fitted() -> None:
    frame, placement = keying.composite(Image.new("RGB", (1344, 768), (50, 60, 70)), None, GREEN, 0.5)
    assert frame.size == (1920, 1080)
    assert placement is None


def test_subject_is_keyed_and_placed_lower_centre() -> None:
    environment = Image.new("RGB", (1000, 1000), (40, 40, 120))
    frame, placement = keying.composite(environment, _character(), GREEN, 0.5)
    assert placement is not None
    x0, y0, x1, y1 = placement.box
    assert abs((y1 - y0) - 540) <= 2  # half the frame's height
    assert abs((x0 + x1) / 2 - 960) <= 2
    assert y1 > 1000
    raw = frame.crop(placement.box).tobytes()
    greens = [
        p
        for p in zip(raw[0::3], raw[1::3], raw[2::3], strict=True)
        if p[1] > 150 and p[1] - max(p[0], p[2]) > 60
    ]
    assert greens == []
    assert _rgb(frame, 960, (y0 + y1) // 2)[0] > 150  # the subject itself is there
    assert placement.key_fraction > 0.4


def test_spill_on_the_subject_is_neutralised() -> None:
    spilled = Image.new("RGB", (10, 10), (120, 200, 110))
    assert keying.despill(spilled, GREEN).getpixel((0, 0)) == (120, 120, 110)


def test_other_key_colours_work() -> None:
    blue = keying.KeyColor((0, 0, 255))
    frame, placement = keying.composite(
        Image.new("RGB", (800, 450), (90, 90, 90)), _character((0, 0, 255)), blue, 0.4
    )
    assert placement is not None
    assert _rgb(frame, placement.box[0] + 2, placement.box[1] + 2)[2] < 200


def _rgb(image: Image.Image, x: int, y: int) -> tuple[int, int, int]:
    pixel = image.getpixel((x, y))
    assert isinstance(pixel, tuple)
    return (int(pixel[0]), int(pixel[1]), int(pixel[2]))


@pytest.mark.parametrize(("position", "third"), [("left", 1 / 3), ("right", 2 / 3)])
def test_the_subject_stands_where_the_storyboard_places_it(position: str, third: float) -> None:
    environment = Image.new("RGB", (1000, 1000), (40, 40, 120))
    _, placement = keying.composite(environment, _character(), GREEN, 0.8, position)
    assert placement is not None
    x0, y0, x1, y1 = placement.box
    assert abs((y1 - y0) - 864) <= 2  # a close shot: 80 % of the frame's height
    assert abs((x0 + x1) / 2 - 1920 * third) <= 2
    assert x0 >= 0 and x1 <= 1920
