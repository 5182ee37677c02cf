"""The video's stills. The thumbnail: the strongest of the scenes' frames (sharp, contrasted,
saturated), at 1280x720 with the title drawn large over a darkened lower band, a JPEG under
YouTube's 2 MB. The title overlay for the opening, and the end card."""

from __future__ import annotations

import io
import math
import textwrap
from typing import Any

from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageStat

from scripts._lib import captions

SIZE = (1280, 720)
PORTRAIT_SIZE = (720, 1280)  # a Short's
MAX_BYTES = 2 * 1024 * 1024
TITLE_FONT_FILE = "SourceSansPro-Black.ttf"


def strength(image: Image.Image) -> float:
    """How much a frame holds the eye: edge energy (sharpness), luma contrast and saturation."""
    small = image.convert("RGB").resize((320, 180))
    grey = small.convert("L")
    edges = ImageStat.Stat(grey.filter(ImageFilter.FIND_EDGES)).mean[0]
    contrast = ImageStat.Stat(grey).stddev[0]
    saturation = ImageStat.Stat(small.convert("HSV").getchannel("S")).mean[0]
    return float(2 * edges + contrast + 0.4 * saturation)


def make(frame: Image.Image, title: str, size: tuple[int, int] = SIZE) -> bytes:
    """The thumbnail's JPEG bytes: `frame` cover-fitted to `size` (1280x720, or 720x1280 for a
    Short), the title over a gradient."""
    picture = _cover(frame.convert("RGB"), size)
    if title.strip():
        picture = _with_title(picture, title.strip())
    for quality in (90, 80, 70, 60):
        out = io.BytesIO()
        picture.save(out, "JPEG", quality=quality, optimize=True, progressive=True)
        if out.tell() <= MAX_BYTES:
            return out.getvalue()
    raise ValueError("the thumbnail does not fit in 2 MB even at JPEG quality 60")


def _cover(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    scale = max(size[0] / image.width, size[1] / image.height)
    resized = image.resize(
        (math.ceil(image.width * scale), math.ceil(image.height * scale)), Image.Resampling.LANCZOS
    )
    left, top = (resized.width - size[0]) // 2, (resized.height - size[1]) // 2
    return resized.crop((left, top, left + size[0], top + size[1]))


def _with_title(picture: Image.Image, title: str) -> Image.Image:
    """The title in at most two lines of about 20 characters (three of about 12 on a portrait
    thumbnail), white with a dark outline, over a band that darkens towards the bottom (readable
    on any frame, and at a phone's size)."""
    width, height = picture.size
    portrait = height > width
    wrapped = textwrap.wrap(title, width=12 if portrait else 22) or [title]
    most = 3 if portrait else 2
    lines = wrapped[:most]
    if len(wrapped) > most:
        lines[-1] = lines[-1].rstrip(".,;: ") + "…"
    size = 96 if len(lines) == 1 else 84
    font = ImageFont.truetype(str(captions.font_file().with_name(TITLE_FONT_FILE)), size)
    shade = Image.new("L", picture.size, 0)
    draw_shade = ImageDraw.Draw(shade)
    band_top = height - (len(lines) * size + 140)
    for y in range(band_top, height):
        draw_shade.line([(0, y), (width, y)], fill=round(190 * (y - band_top) / (height - band_top)))
    dark = Image.new("RGB", picture.size, (0, 0, 0))
    picture = Image.composite(dark, picture, shade)
    draw = ImageDraw.Draw(picture)
    y = height - 60 - len(lines) * size
    for line in lines:
        draw.text((64, y), line, font=font, fill=(255, 255, 255), stroke_width=5, stroke_fill=(0, 0, 0))
        y += size
    return picture


def _fit_lines(text: str, width_px: int, draw: ImageDraw.ImageDraw, size: int) -> tuple[list[str], Any]:
    """`text` in at most three lines that fit `width_px` at the largest size from `size` down."""
    path = str(captions.font_file().with_name(TITLE_FONT_FILE))
    while True:
        font = ImageFont.truetype(path, size)
        for chars in range(40, 5, -2):
            lines = textwrap.wrap(text, width=chars) or [text]
            if len(lines) <= 3 and all(draw.textlength(line, font=font) <= width_px for line in lines):
                return lines, font
        if size <= 24:
            return textwrap.wrap(text, width=12)[:3] or [text], font
        size = round(size * 0.85)


def _centred(picture: Image.Image, text: str, centre_y: float, size: int) -> None:
    """White text with a dark outline, each line centred, the block centred on `centre_y`."""
    draw = ImageDraw.Draw(picture)
    lines, font = _fit_lines(text, round(picture.width * 0.86), draw, size)
    step = round(font.size * 1.1)
    y = round(centre_y - step * len(lines) / 2)
    outline = max(2, round(font.size / 14))
    for line in lines:
        x = round((picture.width - draw.textlength(line, font=font)) / 2)
        draw.text((x, y), line, font=font, fill=(255, 255, 255, 255), stroke_width=outline,
                  stroke_fill=(0, 0, 0, 255))  # fmt: skip
        y += step


def title_overlay(title: str, size: tuple[int, int]) -> Image.Image:
    """The title for the opening seconds, on a transparent frame of `size`, in its upper third."""
    picture = Image.new("RGBA", size, (0, 0, 0, 0))
    _centred(picture, title, size[1] * (0.25 if size[1] > size[0] else 0.3), round(min(size) * 0.09))
    return picture


def end_card(frame: Image.Image | None, text: str, size: tuple[int, int]) -> Image.Image:
    """The end card: the video's strongest frame (black without one) blurred and darkened, with
    `text` in its middle."""
    if frame is None:
        picture = Image.new("RGB", size, (12, 12, 14))
    else:
        picture = _cover(frame.convert("RGB"), size).filter(ImageFilter.GaussianBlur(min(size) / 40))
        picture = Image.blend(picture, Image.new("RGB", size, (0, 0, 0)), 0.55)
    if text.strip():
        _centred(picture, text.strip(), size[1] / 2, round(min(size) * 0.08))
    return picture
