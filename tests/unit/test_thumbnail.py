"""The thumbnail: the strongest frame, the title on it, 1280x720, a JPEG under 2 MB."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageStat

from scripts._lib import thumbnail


def _busy() -> Image.Image:
    image = Image.new("RGB", (640, 360), (20, 90, 40))
    draw = ImageDraw.Draw(image)
    for i in range(0, 640, 40):
        draw.rectangle((i, 0, i + 20, 360), fill=(230, 180 - i // 8, 30 + i // 4))
    draw.ellipse((200, 60, 440, 300), fill=(250, 240, 200))
    return image


def test_a_sharp_colourful_frame_beats_a_flat_or_blurred_one() -> None:
    busy = _busy()
    flat = Image.new("RGB", (640, 360), (120, 120, 120))
    dull = busy.convert("L").convert("RGB").resize((32, 18)).resize((640, 360))
    assert thumbnail.strength(busy) > thumbnail.strength(dull) > thumbnail.strength(flat)


def test_the_thumbnail_is_1280x720_under_2_mb_with_the_title_in_its_lower_part() -> None:
    data = thumbnail.make(_busy(), "The patient heron of the river delta at dawn")
    assert len(data) < 2 * 1024 * 1024
    with Image.open(io.BytesIO(data)) as image:
        assert (image.format, image.size) == ("JPEG", (1280, 720))
        grey = image.convert("L")
        bare = Image.open(io.BytesIO(thumbnail.make(_busy(), ""))).convert("L")
        # The title's white letters and their dark band are in the lower part, not at the top.
        low = (0, 430, 1280, 720)
        top = (0, 0, 1280, 250)
        changed_low = ImageStat.Stat(_diff(grey.crop(low), bare.crop(low))).mean[0]
        changed_top = ImageStat.Stat(_diff(grey.crop(top), bare.crop(top))).mean[0]
        assert changed_low > 20 and changed_top < 2, (changed_low, changed_top)


def _diff(a: Image.Image, b: Image.Image) -> Image.Image:
    from PIL import ImageChops

    return ImageChops.difference(a, b)
