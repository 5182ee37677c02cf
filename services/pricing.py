"""Provider prices (the PRICING_FILE table, passed in as a dict) and what an item costs, before and after.

Money is Decimal, never float. Rounding rules:
- `estimate_item_cost` rounds UP to whole cents: a budget reservation must never fall short.
- `actual_cost` keeps micro-dollars (6 places, half up): most items cost a few cents, and rounding
  each one to cents would add up to a visible error over a video's hundred-odd items.
- `to_cents` (half up) is for what people read: the Notion Cost column, budget messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, assert_never

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.errors import PricingError, describe_error

CENT = Decimal("0.01")
MICRO = Decimal("0.000001")
ZERO = Decimal(0)
_MILLION = Decimal(1_000_000)

Price = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0)]


class CostKind(StrEnum):
    """Item kinds as the plan names them; gates, composites, assembly and upload cost nothing."""

    STORYBOARD = "storyboard"
    ASSET = "asset"
    COMPOSITE = "composite"
    CLIP = "clip"
    NARRATION = "narration"
    SFX = "sfx"
    MUSIC = "music"
    ASSEMBLY = "assembly"
    UPLOAD = "upload"
    STORYBOARD_GATE = "storyboard_gate"
    ASSETS_GATE = "assets_gate"
    FINAL_GATE = "final_gate"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TokenPrices(_Section):
    input_per_million_tokens: Price
    output_per_million_tokens: Price

    def cost(self, prompt_tokens: Decimal, output_tokens: Decimal) -> Decimal:
        spent = prompt_tokens * self.input_per_million_tokens + output_tokens * self.output_per_million_tokens
        return spent / _MILLION


class GeminiImagePrices(TokenPrices):
    per_image: Price


class GeminiTextPrices(TokenPrices):
    estimate_prompt_tokens: Count
    estimate_output_tokens: Count


class GeminiPrices(_Section):
    image: GeminiImagePrices
    text: GeminiTextPrices


class KlingUnits(_Section):
    std_5s: Price
    std_10s: Price
    pro_5s: Price
    pro_10s: Price


class KlingPrices(_Section):
    unit_price: Price
    units_per_clip: KlingUnits


class ElevenLabsPrices(_Section):
    credit_price: Price
    tts_credits_per_character: Price
    sfx_credits_per_second: Price
    # Music is priced per minute of music asked for; optional, so a table written before music
    # still loads (the default is about the list price in 2026: set your plan's figure).
    music_per_minute: Price = Decimal("0.80")


class Pricing(_Section):
    """The price table; build it with `load_pricing`."""

    gemini: GeminiPrices
    kling: KlingPrices
    elevenlabs: ElevenLabsPrices

    def estimate_item_cost(self, kind: str, params: Mapping[str, object]) -> Decimal:
        """What an item will cost, rounded up to the cent, for budget reservations before it runs.

        params: storyboard [prompt_tokens, output_tokens]; asset [images]; clip duration (5|10)
        [mode std|pro]; narration characters; sfx seconds; music seconds; the rest none.
        """
        cost_kind = _kind(kind)
        given = _Usage(cost_kind, "params", params)
        return self._cost(cost_kind, given, estimate=True).quantize(CENT, rounding=ROUND_CEILING)

    def actual_cost(self, kind: str, usage: Mapping[str, object]) -> Decimal:
        """What an item cost, in micro-dollars, from the usage its script reported.

        usage: storyboard prompt_tokens, output_tokens; asset output_tokens [prompt_tokens] or
        [images]; clip units (Kling's final_unit_deduction) or duration [mode]; narration credits
        (ElevenLabs' character-cost) or characters; sfx credits or seconds; music seconds; the rest
        none.
        """
        cost_kind = _kind(kind)
        given = _Usage(cost_kind, "usage", usage)
        return self._cost(cost_kind, given, estimate=False).quantize(MICRO, rounding=ROUND_HALF_UP)

    def _cost(self, kind: CostKind, given: _Usage, *, estimate: bool) -> Decimal:
        match kind:
            case CostKind.STORYBOARD:
                text = self.gemini.text
                prompt = given.number(
                    "prompt_tokens", default=text.estimate_prompt_tokens if estimate else None
                )
                output = given.number(
                    "output_tokens", default=text.estimate_output_tokens if estimate else None
                )
                return text.cost(prompt, output)
            case CostKind.ASSET:
                image = self.gemini.image
                if not estimate and given.has("output_tokens"):
                    return image.cost(given.number("prompt_tokens", default=0), given.number("output_tokens"))
                return given.number("images", default=1) * image.per_image
            case CostKind.CLIP:
                units = given.number("units") if given.has("units") else self._clip_units(given)
                return units * self.kling.unit_price
            case CostKind.NARRATION:
                if given.has("credits"):
                    return given.number("credits") * self.elevenlabs.credit_price
                credits = given.number("characters") * self.elevenlabs.tts_credits_per_character
                return credits * self.elevenlabs.credit_price
            case CostKind.SFX:
                if given.has("credits"):
                    return given.number("credits") * self.elevenlabs.credit_price
                credits = given.number("seconds") * self.elevenlabs.sfx_credits_per_second
                return credits * self.elevenlabs.credit_price
            case CostKind.MUSIC:
                return given.number("seconds") * self.elevenlabs.music_per_minute / 60
            case (
                CostKind.COMPOSITE
                | CostKind.ASSEMBLY
                | CostKind.UPLOAD
                | CostKind.STORYBOARD_GATE
                | CostKind.ASSETS_GATE
                | CostKind.FINAL_GATE
            ):
                return ZERO
            case _:
                assert_never(kind)

    def _clip_units(self, given: _Usage) -> Decimal:
        duration = given.choice("duration", ("5", "10"), "a Kling clip length; pass 5 or 10 (seconds)")
        mode = given.choice("mode", ("std", "pro"), "a Kling mode; pass std or pro", default="std")
        units: Decimal = getattr(self.kling.units_per_clip, f"{mode}_{duration}s")
        return units


class _Usage:
    """Reads numbers out of a params or usage dict, with errors that say which key and what to pass."""

    def __init__(self, kind: CostKind, source: str, values: Mapping[str, object]) -> None:
        self.kind, self.source, self.values = kind, source, values

    def has(self, name: str) -> bool:
        return self.values.get(name) is not None

    def _refuse(self, name: str, problem: str) -> PricingError:
        return PricingError([f"{self.kind}: {self.source}.{name} {problem}"])

    def number(self, name: str, default: int | None = None) -> Decimal:
        value = self.values.get(name)
        if value is None:
            if default is None:
                raise self._refuse(name, "is missing; pass it as a number")
            return Decimal(default)
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
            raise self._refuse(name, f"= {value!r} is not a number; pass it as a number")
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise self._refuse(name, f"= {value!r} is not a number; pass it as a number") from None
        if not number.is_finite() or number < 0:
            raise self._refuse(name, f"= {value!r} must be a finite number >= 0")
        return number

    def choice(self, name: str, allowed: tuple[str, ...], what: str, default: str | None = None) -> str:
        value = self.values.get(name, default)
        if value is None:
            raise self._refuse(name, f"is missing; it must be {what}")
        text = str(value)
        if isinstance(value, bool) or text not in allowed:
            raise self._refuse(name, f"= {value!r} is not {what}")
        return text


def _kind(kind: str) -> CostKind:
    try:
        return CostKind(kind)
    except ValueError:
        known = ", ".join(CostKind)
        raise PricingError([f"kind: {kind!r} has no price; priced kinds are: {known}"]) from None


def to_cents(amount: Decimal) -> Decimal:
    """Round to whole cents, half up: for the Notion Cost column and budget messages."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def to_micros(amount: Decimal) -> int:
    """Whole micro-dollars, half up: an exact integer for a DB column and sums."""
    return int((amount / MICRO).quantize(Decimal(1), rounding=ROUND_HALF_UP))


_HINTS = {
    "(top level)": "write the gemini, kling and elevenlabs sections (see daemon/defaults/pricing.yaml)",
    "gemini": "add the gemini section (image and text prices)",
    "kling": "add the kling section (unit_price and units_per_clip)",
    "elevenlabs": "add the elevenlabs section (credit_price and credits per character and second)",
    "image": "add gemini.image with per_image and token prices",
    "text": "add gemini.text with token prices and the storyboard estimate",
    "per_image": "write the USD price of one image, e.g. 0.039",
    "input_per_million_tokens": "write the USD price of a million input tokens, e.g. 0.30",
    "output_per_million_tokens": "write the USD price of a million output tokens, e.g. 2.50",
    "estimate_prompt_tokens": "write the prompt tokens a storyboard request usually takes, e.g. 2000",
    "estimate_output_tokens": "write the output tokens (thinking included) a storyboard takes, e.g. 16000",
    "unit_price": "write the USD price of one Kling unit from your pack, e.g. 0.14",
    "units_per_clip": "add std_5s, std_10s, pro_5s and pro_10s: the units Kling deducts per clip",
    "credit_price": "write the USD price of one ElevenLabs credit on your plan, e.g. 0.00018",
    "tts_credits_per_character": "write the credits a spoken character costs, e.g. 1",
    "sfx_credits_per_second": "write the credits a second of sound effects costs, e.g. 40",
    "music_per_minute": "write the USD price of a minute of generated music, e.g. 0.80",
    **{
        name: f"write the units Kling deducts for a {name.replace('_', ' ')} clip, e.g. 1"
        for name in ("std_5s", "std_10s", "pro_5s", "pro_10s")
    },
}
_FIELDS: dict[tuple[str, ...], tuple[str, ...]] = {
    (): tuple(Pricing.model_fields),
    ("gemini",): tuple(GeminiPrices.model_fields),
    ("gemini", "image"): tuple(GeminiImagePrices.model_fields),
    ("gemini", "text"): tuple(GeminiTextPrices.model_fields),
    ("kling",): tuple(KlingPrices.model_fields),
    ("kling", "units_per_clip"): tuple(KlingUnits.model_fields),
    ("elevenlabs",): tuple(ElevenLabsPrices.model_fields),
}


def load_pricing(data: object) -> Pricing:
    """Validate the parsed price table; PricingError names each bad field and the fix."""
    try:
        return Pricing.model_validate(data)
    except ValidationError as exc:
        raise PricingError(
            [
                "pricing.yaml " + describe_error(error, root="(top level)", hints=_HINTS, fields=_FIELDS)
                for error in exc.errors(include_url=False)
            ]
        ) from None
