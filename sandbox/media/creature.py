"""A creature or character drawn as a silhouette whose shape tells what it is: a long-legged bird,
a four-legged animal, an upright figure or a fish, proportions varied by the prompt's seed."""

from __future__ import annotations

import random
import re

from PIL import ImageDraw

RGB = tuple[int, int, int]

_CLASSES: dict[str, tuple[str, ...]] = {
    "bird": (
        "bird",
        "heron",
        "egret",
        "crane",
        "stork",
        "owl",
        "eagle",
        "hawk",
        "falcon",
        "kingfisher",
        "duck",
        "swan",
        "goose",
        "gull",
        "flamingo",
        "pelican",
        "sparrow",
        "robin",
        "crow",
        "raven",
    ),
    "fish": ("fish", "salmon", "trout", "whale", "dolphin", "shark", "eel", "carp"),
    "figure": (
        "person",
        "man",
        "woman",
        "child",
        "figure",
        "character",
        "hero",
        "explorer",
        "hunter",
        "girl",
        "boy",
        "monk",
        "knight",
        "robot",
        "narrator",
        "fisherman",
    ),
    "quadruped": (
        "animal",
        "creature",
        "fox",
        "deer",
        "wolf",
        "bear",
        "otter",
        "beaver",
        "rabbit",
        "hare",
        "squirrel",
        "cat",
        "dog",
        "horse",
        "elk",
        "moose",
        "lion",
        "tiger",
        "elephant",
        "giraffe",
        "zebra",
        "boar",
        "badger",
        "lynx",
        "leopard",
        "cow",
        "goat",
        "sheep",
        "mouse",
        "frog",
    ),
}


def classify(text: str) -> str | None:
    """The silhouette class for a lower-cased prompt, or None when it names no creature."""
    best: tuple[int, str] | None = None
    for name, words in _CLASSES.items():
        for word in words:
            match = re.search(rf"\b{word}s?\b", text)
            if match and (best is None or match.start() < best[0]):
                best = (match.start(), name)
    return None if best is None else best[1]


def draw(
    canvas: ImageDraw.ImageDraw,
    kind: str,
    rng: random.Random,
    width: int,
    height: int,
    colour: RGB,
    alone: bool,
) -> None:
    """Draws the silhouette: large and centred when `alone` (a key-colour plate), else in the foreground."""
    size = height * (rng.uniform(0.55, 0.7) if alone else rng.uniform(0.22, 0.34))
    cx = width * (0.5 if alone else rng.uniform(0.25, 0.75))
    ground = height * (0.5 + size / height / 2 if alone else rng.uniform(0.78, 0.92))
    light = _lighter(colour)
    if kind == "bird":
        _bird(canvas, rng, cx, ground, size, colour, light)
    elif kind == "fish":
        _fish(canvas, rng, cx, ground - size / 2, size, colour, light)
    elif kind == "figure":
        _figure(canvas, rng, cx, ground, size, colour, light)
    else:
        _quadruped(canvas, rng, cx, ground, size, colour, light)


def _lighter(colour: RGB) -> RGB:
    return min(255, colour[0] + 45), min(255, colour[1] + 45), min(255, colour[2] + 45)


def _box(cx: float, cy: float, rx: float, ry: float) -> tuple[float, float, float, float]:
    return cx - rx, cy - ry, cx + rx, cy + ry


def _bird(
    canvas: ImageDraw.ImageDraw,
    rng: random.Random,
    cx: float,
    ground: float,
    size: float,
    dark: RGB,
    light: RGB,
) -> None:
    legs = size * rng.uniform(0.3, 0.45)
    body_rx, body_ry = size * rng.uniform(0.2, 0.28), size * rng.uniform(0.1, 0.14)
    body_y = ground - legs - body_ry
    for dx in (-body_rx * 0.2, body_rx * 0.2):
        canvas.line((cx + dx, body_y, cx + dx, ground), fill=dark, width=max(1, int(size * 0.02)))
    canvas.ellipse(_box(cx, body_y, body_rx, body_ry), fill=dark)
    canvas.ellipse(_box(cx - body_rx * 0.1, body_y - body_ry * 0.2, body_rx * 0.7, body_ry * 0.6), fill=light)
    neck_top = (cx + body_rx * 0.7, body_y - size * rng.uniform(0.2, 0.35))
    canvas.line((cx + body_rx * 0.6, body_y, *neck_top), fill=dark, width=max(1, int(size * 0.05)))
    head_r = size * 0.06
    canvas.ellipse(_box(neck_top[0], neck_top[1], head_r, head_r), fill=dark)
    beak = size * rng.uniform(0.1, 0.2)
    canvas.polygon(
        [
            (neck_top[0], neck_top[1] - head_r / 3),
            (neck_top[0] + head_r + beak, neck_top[1]),
            (neck_top[0], neck_top[1] + head_r / 3),
        ],
        fill=dark,
    )


def _quadruped(
    canvas: ImageDraw.ImageDraw,
    rng: random.Random,
    cx: float,
    ground: float,
    size: float,
    dark: RGB,
    light: RGB,
) -> None:
    legs = size * rng.uniform(0.25, 0.4)
    body_rx, body_ry = size * rng.uniform(0.35, 0.5), size * rng.uniform(0.14, 0.2)
    body_y = ground - legs - body_ry * 0.6
    leg_w = max(1, int(size * 0.05))
    for fx in (-0.75, -0.45, 0.45, 0.75):
        canvas.line((cx + body_rx * fx, body_y, cx + body_rx * fx, ground), fill=dark, width=leg_w)
    canvas.ellipse(_box(cx, body_y, body_rx, body_ry), fill=dark)
    canvas.ellipse(_box(cx, body_y + body_ry * 0.3, body_rx * 0.6, body_ry * 0.4), fill=light)
    head = (cx + body_rx * 1.05, body_y - body_ry * rng.uniform(0.8, 1.6))
    head_r = size * rng.uniform(0.09, 0.13)
    canvas.line((cx + body_rx * 0.7, body_y, *head), fill=dark, width=max(1, int(size * 0.09)))
    canvas.ellipse(_box(head[0], head[1], head_r * 1.2, head_r), fill=dark)
    ear = head_r * rng.uniform(0.6, 1.2)
    canvas.polygon(
        [
            (head[0] - head_r * 0.6, head[1]),
            (head[0] - head_r * 0.2, head[1] - head_r - ear),
            (head[0], head[1]),
        ],
        fill=dark,
    )
    tail = (cx - body_rx * 1.4, body_y - body_ry * rng.uniform(-0.5, 1.2))
    canvas.line((cx - body_rx * 0.9, body_y, *tail), fill=dark, width=max(1, int(size * 0.04)))


def _figure(
    canvas: ImageDraw.ImageDraw,
    rng: random.Random,
    cx: float,
    ground: float,
    size: float,
    dark: RGB,
    light: RGB,
) -> None:
    leg = size * 0.42
    torso_top = ground - leg - size * 0.35
    half = size * rng.uniform(0.1, 0.15)
    for dx in (-half * 0.5, half * 0.5):
        canvas.line((cx + dx, ground - leg, cx + dx * 1.4, ground), fill=dark, width=max(1, int(size * 0.06)))
    canvas.polygon(
        [
            (cx - half, torso_top),
            (cx + half, torso_top),
            (cx + half * 1.2, ground - leg),
            (cx - half * 1.2, ground - leg),
        ],
        fill=dark,
    )
    canvas.rectangle(
        (cx - half * 0.5, torso_top + size * 0.05, cx + half * 0.5, ground - leg - size * 0.05), fill=light
    )
    reach = rng.uniform(-0.3, 0.5)
    for side in (-1, 1):
        canvas.line(
            (
                cx + side * half,
                torso_top + size * 0.03,
                cx + side * half * 2.2,
                torso_top + size * (0.3 - reach * side * 0.3),
            ),
            fill=dark,
            width=max(1, int(size * 0.05)),
        )
    head_r = size * 0.09
    canvas.ellipse(_box(cx, torso_top - head_r * 1.2, head_r, head_r), fill=dark)


def _fish(
    canvas: ImageDraw.ImageDraw, rng: random.Random, cx: float, cy: float, size: float, dark: RGB, light: RGB
) -> None:
    rx, ry = size * rng.uniform(0.4, 0.55), size * rng.uniform(0.15, 0.25)
    canvas.ellipse(_box(cx, cy, rx, ry), fill=dark)
    canvas.ellipse(_box(cx + rx * 0.1, cy + ry * 0.3, rx * 0.6, ry * 0.35), fill=light)
    tail = size * rng.uniform(0.2, 0.3)
    canvas.polygon([(cx - rx * 0.9, cy), (cx - rx - tail, cy - ry), (cx - rx - tail, cy + ry)], fill=dark)
    canvas.polygon(
        [(cx - rx * 0.2, cy - ry * 0.9), (cx + rx * 0.2, cy - ry * 0.9), (cx - rx * 0.1, cy - ry * 1.6)],
        fill=dark,
    )
