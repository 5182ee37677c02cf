"""Pictures drawn from a prompt, deterministically: the same prompt gives the same picture, two
prompts give visibly different ones (palette, ridges, light and layout are seeded from a hash of
the text), and a few scene words steer it (dawn, night, forest, water, mist, snow, desert).

A prompt that asks for a flat key-colour background ("on a solid flat #00FF00 background") gets
the subject alone on exactly that colour, drawn without anti-aliasing, so it can be chroma-keyed.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import itertools
import math
import random
import re
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter

from sandbox.media import creature

RGB = tuple[int, int, int]

# Gemini 2.5 Flash Image output sizes per aspect ratio.
SIZES: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "2:3": (832, 1248),
    "3:2": (1248, 832),
    "3:4": (864, 1184),
    "4:3": (1184, 864),
    "4:5": (896, 1152),
    "5:4": (1152, 896),
    "9:16": (768, 1344),
    "16:9": (1344, 768),
    "21:9": (1536, 672),
}
_CHEAP_LONG_SIDE = 160

_HEX = re.compile(r"#([0-9a-fA-F]{6})\b")
_KEY_WORDS = ("background", "chroma", "green screen", "key colour", "key color", "backdrop")
_CUES = {
    "dawn": ("dawn", "sunrise", "first light", "golden", "morning"),
    "dusk": ("dusk", "sunset", "evening", "twilight"),
    "night": ("night", "moon", "stars", "starry", "midnight", "dark"),
    "forest": ("forest", "woods", "woodland", "trees", "jungle", "pine", "reeds"),
    "water": ("water", "river", "lake", "sea", "ocean", "delta", "shallows", "pond", "stream", "marsh"),
    "mist": ("mist", "misty", "fog", "foggy", "haze", "hazy"),
    "snow": ("snow", "winter", "ice", "frozen", "arctic"),
    "desert": ("desert", "sand", "dune", "dunes", "savanna", "arid"),
}


@dataclass(frozen=True)
class Reading:
    """What a prompt asks for, read once."""

    seed: int
    cues: frozenset[str]
    key_colour: RGB | None
    subject: str | None  # a creature class from sandbox.media.creature, or None


def size_for(aspect_ratio: str, cheap: bool) -> tuple[int, int]:
    """The output size of an aspect ratio (KeyError when the model does not offer it)."""
    width, height = SIZES[aspect_ratio]
    if not cheap:
        return width, height
    # Cheap media: the long side is 160 px at the nominal ratio (16:9 -> 160x90), even sides for encoders.
    across, down = (int(n) for n in aspect_ratio.split(":"))
    scale = _CHEAP_LONG_SIDE / max(across, down)
    return max(2, round(across * scale / 2) * 2), max(2, round(down * scale / 2) * 2)


def read_prompt(prompt: str) -> Reading:
    text = prompt.lower()
    seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big")
    cues = frozenset(name for name, words in _CUES.items() if any(_has_word(text, w) for w in words))
    key: RGB | None = None
    match = _HEX.search(prompt)
    if match and any(word in text for word in _KEY_WORDS):
        value = int(match.group(1), 16)
        key = ((value >> 16) & 255, (value >> 8) & 255, value & 255)
    elif "green screen" in text:
        key = (0, 255, 0)
    subject = creature.classify(text)
    if key is not None and subject is None:
        subject = "figure"  # something must stand on the key colour
    return Reading(seed, cues, key, subject)


def _has_word(text: str, word: str) -> bool:
    return re.search(rf"\b{re.escape(word)}\b", text) is not None


def draw(prompt: str, width: int, height: int) -> Image.Image:
    reading = read_prompt(prompt)
    rng = random.Random(reading.seed)
    if reading.key_colour is not None:
        image = Image.new("RGB", (width, height), reading.key_colour)
        colour = _key_safe_colour(rng, reading.key_colour)
        creature.draw(ImageDraw.Draw(image), reading.subject or "figure", rng, width, height, colour, True)
        return image
    image = _landscape(reading, rng, width, height)
    if reading.subject is not None:
        colour = _subject_colour(rng, dark=True)
        creature.draw(ImageDraw.Draw(image), reading.subject, rng, width, height, colour, False)
    return image


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=3)
    return out.getvalue()


# The landscape ------------------------------------------------------------------------------------
def _landscape(reading: Reading, rng: random.Random, width: int, height: int) -> Image.Image:
    cues = reading.cues
    hue = rng.random()
    sky_top, sky_low = _sky(cues, hue, rng)
    ground = _ground(cues, hue, rng)
    horizon = int(height * rng.uniform(0.38, 0.62))
    image = _gradient(
        width, height, [(0.0, sky_top), (horizon / height, sky_low), (1.0, _shade(ground, 0.55))]
    )
    canvas = ImageDraw.Draw(image)
    _sun_or_moon(canvas, cues, rng, width, horizon)
    if "night" in cues:
        for _ in range(40 + rng.randrange(60)):
            x, y = rng.randrange(width), rng.randrange(max(1, horizon))
            canvas.point((x, y), fill=(235, 235, 250))
    layers = 2 + rng.randrange(3)
    for layer in range(layers):
        depth = (layer + 1) / layers
        colour = _mix(sky_low, ground, 0.35 + 0.65 * depth)
        top = horizon - int(height * rng.uniform(0.05, 0.22) * (1.2 - depth))
        ridge = _ridge(rng, width, top, horizon + int(height * 0.08 * depth), height)
        canvas.polygon(ridge, fill=colour)
        if "forest" in cues:
            _trees(canvas, rng, ridge, _shade(colour, 0.7), height)
    if "water" in cues:
        _water(canvas, rng, width, height, horizon, sky_low)
    image = _texture(image, rng)
    if "mist" in cues:
        image = Image.blend(
            image, _gradient(width, height, [(0.0, (225, 228, 232)), (1.0, (200, 205, 210))]), 0.35
        )
    return image


def _sky(cues: frozenset[str], hue: float, rng: random.Random) -> tuple[RGB, RGB]:
    if "night" in cues:
        return _hsv(0.62 + 0.05 * rng.random(), 0.7, 0.12), _hsv(0.6, 0.5, 0.3)
    if "dawn" in cues:
        return _hsv(0.58, 0.35, 0.75), _hsv(0.07 + 0.04 * rng.random(), 0.6, 0.98)
    if "dusk" in cues:
        return _hsv(0.7, 0.45, 0.45), _hsv(0.97 + 0.05 * rng.random(), 0.55, 0.9)
    return _hsv(hue, 0.45 + 0.3 * rng.random(), 0.7 + 0.25 * rng.random()), _hsv((hue + 0.08) % 1, 0.25, 0.95)


def _ground(cues: frozenset[str], hue: float, rng: random.Random) -> RGB:
    if "snow" in cues:
        return (228, 234, 240)
    if "desert" in cues:
        return _hsv(0.09, 0.5, 0.8)
    if "forest" in cues:
        return _hsv(0.27 + 0.08 * rng.random(), 0.6, 0.45)
    if "night" in cues:
        return _hsv(0.6, 0.4, 0.18)
    return _hsv((hue + 0.45 + 0.2 * rng.random()) % 1, 0.5, 0.5)


def _sun_or_moon(
    canvas: ImageDraw.ImageDraw, cues: frozenset[str], rng: random.Random, width: int, horizon: int
) -> None:
    radius = max(2, int(width * rng.uniform(0.03, 0.07)))
    x = int(width * rng.uniform(0.15, 0.85))
    y = int(horizon * (0.85 if cues & {"dawn", "dusk"} else rng.uniform(0.2, 0.6)))
    colour = (240, 240, 225) if "night" in cues else (255, 236, 190)
    canvas.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)


def _ridge(rng: random.Random, width: int, top: int, base: int, height: int) -> list[tuple[int, int]]:
    """A hill line: a sum of a few sines with random phases, closed down to the bottom edge."""
    waves = [(rng.uniform(0.5, 3.5), rng.uniform(0, math.tau), rng.uniform(0.3, 1.0)) for _ in range(3)]
    amplitude = max(1, base - top)
    points = [(0, height)]
    steps = 48
    for i in range(steps + 1):
        x = width * i / steps
        value = sum(a * math.sin(f * math.tau * i / steps + p) for f, p, a in waves) / 3
        points.append((int(x), int(base - amplitude * (0.5 + 0.5 * value))))
    points.append((width, height))
    return points


def _trees(
    canvas: ImageDraw.ImageDraw, rng: random.Random, ridge: list[tuple[int, int]], colour: RGB, height: int
) -> None:
    for x, y in ridge[1:-1:2]:
        tall = max(2, int(height * rng.uniform(0.03, 0.09)))
        half = max(1, tall // 4)
        canvas.polygon([(x - half, y + 2), (x + half, y + 2), (x, y - tall)], fill=colour)


def _water(
    canvas: ImageDraw.ImageDraw, rng: random.Random, width: int, height: int, horizon: int, sky: RGB
) -> None:
    top = horizon + int((height - horizon) * rng.uniform(0.15, 0.4))
    canvas.rectangle((0, top, width, height), fill=_mix(sky, (40, 80, 110), 0.45))
    for _ in range(30 + rng.randrange(30)):
        y = rng.randrange(top, height)
        x = rng.randrange(width)
        length = int(width * rng.uniform(0.02, 0.12))
        canvas.line((x, y, x + length, y), fill=_mix(sky, (255, 255, 255), 0.3), width=1)


def _texture(image: Image.Image, rng: random.Random) -> Image.Image:
    """Soft seeded noise, so flat areas look less like vector art (and differ between prompts)."""
    small = Image.new("L", (48, 27))
    small.putdata([rng.randrange(256) for _ in range(48 * 27)])
    # Blur before and after the upscale: soft clouds rather than visible cells.
    small = small.filter(ImageFilter.GaussianBlur(1))
    blur = max(1, image.size[0] // 60)
    cloud = small.resize(image.size, Image.Resampling.BILINEAR).filter(ImageFilter.GaussianBlur(blur))
    return Image.blend(image, Image.merge("RGB", (cloud, cloud, cloud)), 0.08)


def _gradient(width: int, height: int, stops: list[tuple[float, RGB]]) -> Image.Image:
    column = Image.new("RGB", (1, height))
    pixels = []
    for y in range(height):
        t = y / max(1, height - 1)
        for (t0, c0), (t1, c1) in itertools.pairwise(stops):
            if t0 <= t <= t1:
                pixels.append(_mix(c0, c1, (t - t0) / max(1e-9, t1 - t0)))
                break
        else:
            pixels.append(stops[-1][1])
    column.putdata(pixels)
    return column.resize((width, height), Image.Resampling.NEAREST)


# Colours ------------------------------------------------------------------------------------------
def _hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1, max(0.0, min(1.0, s)), max(0.0, min(1.0, v)))
    return int(r * 255), int(g * 255), int(b * 255)


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return (
        int(a[0] + (b[0] - a[0]) * t),
        int(a[1] + (b[1] - a[1]) * t),
        int(a[2] + (b[2] - a[2]) * t),
    )


def _shade(colour: RGB, factor: float) -> RGB:
    return int(colour[0] * factor), int(colour[1] * factor), int(colour[2] * factor)


def _subject_colour(rng: random.Random, dark: bool = False) -> RGB:
    return _hsv(rng.random(), 0.35 + 0.3 * rng.random(), 0.18 if dark else 0.35 + 0.4 * rng.random())


def _key_safe_colour(rng: random.Random, key: RGB) -> RGB:
    """A subject colour whose hue is far from the key colour's, so keying removes the background only."""
    key_hue, key_sat, _ = colorsys.rgb_to_hsv(key[0] / 255, key[1] / 255, key[2] / 255)
    hue = rng.random()
    if key_sat > 0.2:
        hue = (key_hue + 0.3 + 0.4 * hue) % 1  # at least 0.3 of the colour wheel away
    return _hsv(hue, 0.35 + 0.25 * rng.random(), 0.3 + 0.25 * rng.random())
