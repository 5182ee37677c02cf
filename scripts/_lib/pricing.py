"""What a call cost: the usage the provider reports, priced with the daemon's own table.

One price table for the daemon and the scripts: the one the package ships (daemon/defaults/
pricing.yaml, read as a file: the scripts import nothing of the daemon) or the file PRICING_FILE
names; the daemon passes its own. A script reads it before its call, so a missing or broken table
stops it with exit 2 before anything is paid, never after. The daemon prices the usage a script
reports with the same table; the script's own figure is what a person running it by hand sees.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

from scripts._lib.errors import usage

# The daemon package sits beside this one, in a checkout and in site-packages alike.
DEFAULT_FILE = Path(__file__).resolve().parents[2] / "daemon" / "defaults" / "pricing.yaml"
# ElevenLabs' flash and turbo speech models take half a credit per character.
ELEVENLABS_HALF_PRICE_MODELS = ("flash", "turbo")
MUSIC_PER_MINUTE = 0.80  # USD, when the table names none (services/pricing.py's default)


@cache
def table() -> dict[str, dict[str, float]]:
    """The price table, read once; a usage error (exit 2) naming the file and the fix if it is
    missing or not the shape the daemon reads."""
    import yaml  # only the scripts that price a call pay for the import

    path = Path(os.environ.get("PRICING_FILE") or DEFAULT_FILE)
    try:
        # libyaml's loader where PyYAML has it: the pure-Python one took 7 ms of each run's start.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
        prices = {
            "gemini_image": _numbers(data["gemini"]["image"], "per_image", "input_per_million_tokens",
                                     "output_per_million_tokens"),
            "gemini_text": _numbers(data["gemini"]["text"], "input_per_million_tokens",
                                    "output_per_million_tokens"),
            "kling": _numbers(data["kling"], "unit_price"),
            "kling_units": _numbers(data["kling"]["units_per_clip"], "std_5s", "std_10s", "pro_5s",
                                    "pro_10s"),
            "elevenlabs": _numbers(data["elevenlabs"], "credit_price", "tts_credits_per_character",
                                   "sfx_credits_per_second"),
            "music": {"per_minute": float(data["elevenlabs"].get("music_per_minute", MUSIC_PER_MINUTE))},
        }  # fmt: skip
    except OSError as exc:
        raise usage(f"cannot read the price table {path} ({exc.strerror}); set PRICING_FILE") from exc
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise usage(
            f"the price table {path} is not one the daemon reads ({type(exc).__name__}: {exc}); "
            "fix it (`nvd run` checks it at start-up) or set PRICING_FILE"
        ) from exc
    return prices


def _numbers(section: dict[str, Any], *names: str) -> dict[str, float]:
    return {name: float(section[name]) for name in names}


def gemini_cost(prompt_tokens: int, output_tokens: int | None, *, image: bool) -> float:
    """Token prices of the table's Gemini models; an image whose answer carried no usage figures
    costs the table's price per image."""
    if image and not output_tokens:
        return table()["gemini_image"]["per_image"]
    price = table()["gemini_image" if image else "gemini_text"]
    spent = (
        prompt_tokens * price["input_per_million_tokens"]
        + (output_tokens or 0) * price["output_per_million_tokens"]
    )
    return spent / 1_000_000


def kling_units(final_unit_deduction: object, mode: str, duration: int) -> tuple[float, bool]:
    """The units a task cost, and whether the figure is the provider's (True) or the table's
    typical deduction for the clip (False: a finished task that does not report it)."""
    try:
        return float(str(final_unit_deduction)), True
    except ValueError:
        units = table()["kling_units"]
        per_5s = units.get(f"{mode}_5s", units["std_5s"])
        return units.get(f"{mode}_{duration}s", per_5s * duration / 5), False


def kling_cost(units: float) -> float:
    return units * table()["kling"]["unit_price"]


def tts_credits(model_id: str, characters: int) -> float:
    half = any(word in model_id for word in ELEVENLABS_HALF_PRICE_MODELS)
    return characters * table()["elevenlabs"]["tts_credits_per_character"] * (0.5 if half else 1.0)


def elevenlabs_cost(credits: float) -> float:
    return credits * table()["elevenlabs"]["credit_price"]


def sfx_credits(duration_s: float) -> float:
    return duration_s * table()["elevenlabs"]["sfx_credits_per_second"]


def music_cost(seconds: float) -> float:
    return seconds * table()["music"]["per_minute"] / 60
