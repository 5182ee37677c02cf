"""List prices, in one table, and the cost of a call computed from the usage the provider reports."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TokenPrice:
    input_per_million: float
    output_per_million: float


# Gemini bills per token; thinking tokens are billed as output. Unknown models fall back to the
# family's price so a new model name never reports a cost of zero.
GEMINI_TOKEN_PRICES: dict[str, TokenPrice] = {
    "gemini-2.5-flash": TokenPrice(0.30, 2.50),
    "gemini-2.5-flash-lite": TokenPrice(0.10, 0.40),
    "gemini-2.5-pro": TokenPrice(1.25, 10.00),
    # An image is 1290 output tokens at $30/1M: about $0.039 per image.
    "gemini-2.5-flash-image": TokenPrice(0.30, 30.00),
}
GEMINI_TEXT_FALLBACK = GEMINI_TOKEN_PRICES["gemini-2.5-flash"]
GEMINI_IMAGE_FALLBACK = GEMINI_TOKEN_PRICES["gemini-2.5-flash-image"]
GEMINI_IMAGE_TOKENS = 1290  # when an answer carries no usage figures

# Kling bills units from a prepaid pack; the task reports final_unit_deduction.
KLING_USD_PER_UNIT = 0.14
# Only when a finished task does not report its deduction (should not happen): a conservative guess.
KLING_ESTIMATED_UNITS = {("std", 5): 1.5, ("std", 10): 3.0, ("pro", 5): 2.5, ("pro", 10): 5.0}

# ElevenLabs bills credits: TTS 1 credit per character (flash/turbo models 0.5), SFX 40 credits per
# second when the duration is set. The dollar value of a credit depends on the plan.
ELEVENLABS_USD_PER_CREDIT = 0.00018
ELEVENLABS_SFX_CREDITS_PER_SECOND = 40
ELEVENLABS_HALF_PRICE_MODELS = ("flash", "turbo")


def gemini_cost(model: str, prompt_tokens: int, output_tokens: int, *, image: bool) -> float:
    fallback = GEMINI_IMAGE_FALLBACK if image else GEMINI_TEXT_FALLBACK
    price = GEMINI_TOKEN_PRICES.get(model, fallback)
    return (prompt_tokens * price.input_per_million + output_tokens * price.output_per_million) / 1_000_000


def kling_units(final_unit_deduction: object, mode: str, duration: int) -> tuple[float, bool]:
    """The units a task cost, and whether the figure is the provider's (True) or our estimate."""
    try:
        return float(str(final_unit_deduction)), True
    except ValueError:
        return KLING_ESTIMATED_UNITS.get((mode, duration), 1.5 * duration / 5), False


def kling_cost(units: float) -> float:
    return units * KLING_USD_PER_UNIT


def tts_credits(model_id: str, characters: int) -> float:
    factor = 0.5 if any(word in model_id for word in ELEVENLABS_HALF_PRICE_MODELS) else 1.0
    return characters * factor


def elevenlabs_cost(credits: float) -> float:
    return credits * ELEVENLABS_USD_PER_CREDIT


def sfx_credits(duration_s: float) -> float:
    return duration_s * ELEVENLABS_SFX_CREDITS_PER_SECOND
