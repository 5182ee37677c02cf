"""Costs come from provider-reported usage and the list prices in one table."""

from __future__ import annotations

import pytest

from scripts._lib import pricing


def test_an_image_costs_about_four_cents() -> None:
    assert pricing.gemini_cost("gemini-2.5-flash-image", 0, 1290, image=True) == pytest.approx(0.0387)


def test_text_tokens_at_flash_prices() -> None:
    assert pricing.gemini_cost("gemini-2.5-flash", 1_000_000, 1_000_000, image=False) == pytest.approx(2.80)


def test_unknown_models_are_never_free() -> None:
    assert pricing.gemini_cost("gemini-9-image", 0, 1290, image=True) > 0.03


def test_kling_units_from_the_task_or_an_estimate() -> None:
    assert pricing.kling_units("2", "std", 5) == (2.0, True)
    assert pricing.kling_units(None, "pro", 10) == (5.0, False)
    assert pricing.kling_cost(1.5) == pytest.approx(0.21)


def test_elevenlabs_credits() -> None:
    assert pricing.tts_credits("eleven_multilingual_v2", 100) == 100
    assert pricing.tts_credits("eleven_flash_v2_5", 100) == 50
    assert pricing.elevenlabs_cost(pricing.sfx_credits(5)) == pytest.approx(200 * 0.00018)
