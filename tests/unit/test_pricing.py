"""Prices: what each item kind reserves before it runs and what it cost after, in exact Decimal money."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from daemon.paths import DEFAULT_PRICING_FILE
from services.errors import PricingError, ServiceError
from services.pricing import CostKind, Pricing, load_pricing, to_cents, to_micros

CONFIG = DEFAULT_PRICING_FILE


@pytest.fixture(scope="module")
def table() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def pricing(table: dict[str, Any]) -> Pricing:
    return load_pricing(table)


def test_the_shipped_table_loads_with_the_documented_prices(pricing: Pricing) -> None:
    assert pricing.gemini.image.per_image == Decimal("0.039")
    assert pricing.kling.unit_price == Decimal("0.14")
    assert pricing.elevenlabs.sfx_credits_per_second == 40
    # YAML floats become the decimal written in the file, not a binary approximation
    assert str(pricing.elevenlabs.credit_price) == "0.00018"


# --- estimates: rounded up to the cent, so a reservation never falls short


@pytest.mark.parametrize(
    ("kind", "params", "expected"),
    [
        # 2,000 x 0.30/1M + 16,000 x 2.50/1M = 0.0406 -> 0.05
        ("storyboard", {}, "0.05"),
        ("storyboard", {"prompt_tokens": 1000, "output_tokens": 4000}, "0.02"),
        ("asset", {}, "0.04"),  # 0.039 per image
        ("asset", {"images": 3}, "0.12"),  # 0.117
        ("clip", {"duration": 5}, "0.14"),  # std 1 unit
        ("clip", {"duration": 10}, "0.28"),  # std 2 units
        ("clip", {"duration": 5, "mode": "pro"}, "0.28"),
        ("clip", {"duration": "10", "mode": "pro"}, "0.56"),
        ("narration", {"characters": 300}, "0.06"),  # 300 credits x 0.00018 = 0.054
        ("sfx", {"seconds": 5}, "0.04"),  # 200 credits = 0.036
        ("sfx", {"seconds": 0.5}, "0.01"),  # 0.0036: never rounds to zero
        ("composite", {}, "0.00"),
        ("assembly", {}, "0.00"),
        ("storyboard_gate", {}, "0.00"),
        ("upload", {}, "0.00"),
    ],
)
def test_estimates(pricing: Pricing, kind: str, params: dict[str, object], expected: str) -> None:
    cost = pricing.estimate_item_cost(kind, params)

    assert cost == Decimal(expected)
    assert cost.as_tuple().exponent == -2


# --- actuals: from the usage a script reports, kept to the micro-dollar


@pytest.mark.parametrize(
    ("kind", "usage", "expected"),
    [
        ("storyboard", {"prompt_tokens": 1500, "output_tokens": 9000}, "0.02295"),
        ("asset", {"prompt_tokens": 17, "output_tokens": 1290}, "0.038705"),  # Gemini's token bill
        ("asset", {}, "0.039"),  # a script that reports no tokens: the per-image price
        ("clip", {"units": 1.5}, "0.21"),  # Kling's final_unit_deduction wins
        ("clip", {"units": "2", "duration": 5}, "0.28"),
        ("clip", {"duration": 10, "mode": "std"}, "0.28"),  # no deduction reported: the table
        ("narration", {"credits": 150}, "0.027"),  # ElevenLabs' character-cost header
        ("narration", {"characters": 300}, "0.054"),
        ("sfx", {"credits": 200}, "0.036"),
        ("sfx", {"seconds": 2.5}, "0.018"),
        ("composite", {}, "0"),
        ("final_gate", {"anything": 1}, "0"),
    ],
)
def test_actual_costs(pricing: Pricing, kind: str, usage: dict[str, object], expected: str) -> None:
    assert pricing.actual_cost(kind, usage) == Decimal(expected)


def test_actual_costs_keep_sub_cent_precision_and_round_half_up(pricing: Pricing) -> None:
    assert pricing.actual_cost("storyboard", {"prompt_tokens": 1, "output_tokens": 0}) == Decimal("0.000000")
    assert pricing.actual_cost("storyboard", {"prompt_tokens": 0, "output_tokens": 1}) == Decimal("0.000003")


def test_storyboard_actual_needs_the_token_counts(pricing: Pricing) -> None:
    with pytest.raises(PricingError, match=r"^storyboard: usage.prompt_tokens is missing"):
        pricing.actual_cost("storyboard", {"output_tokens": 10})


def test_rounding_helpers() -> None:
    assert to_cents(Decimal("0.125")) == Decimal("0.13")
    assert to_cents(Decimal("0.124999")) == Decimal("0.12")
    assert to_micros(Decimal("0.038705")) == 38_705
    assert to_micros(Decimal("0.0000005")) == 1


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        (
            "clip",
            {},
            "clip: params.duration is missing; it must be a Kling clip length; pass 5 or 10 (seconds)",
        ),
        (
            "clip",
            {"duration": 7},
            "clip: params.duration = 7 is not a Kling clip length; pass 5 or 10 (seconds)",
        ),
        (
            "clip",
            {"duration": 5, "mode": "ultra"},
            "clip: params.mode = 'ultra' is not a Kling mode; pass std or pro",
        ),
        ("narration", {}, "narration: params.characters is missing; pass it as a number"),
        ("narration", {"characters": -3}, "narration: params.characters = -3 must be a finite number >= 0"),
        ("sfx", {"seconds": "long"}, "sfx: params.seconds = 'long' is not a number; pass it as a number"),
        ("sfx", {"seconds": True}, "sfx: params.seconds = True is not a number; pass it as a number"),
        ("sfx", {"seconds": float("nan")}, "sfx: params.seconds = nan must be a finite number >= 0"),
        ("video", {}, "kind: 'video' has no price; priced kinds are: storyboard, asset, composite, clip"),
    ],
)
def test_bad_requests_say_which_key_and_what_to_pass(
    pricing: Pricing, kind: str, params: dict[str, object], message: str
) -> None:
    with pytest.raises(PricingError) as caught:
        pricing.estimate_item_cost(kind, params)

    assert str(caught.value).startswith(message)
    assert isinstance(caught.value, ServiceError)


def test_every_kind_has_a_price(pricing: Pricing) -> None:
    needs = {
        "clip": {"duration": 5},
        "narration": {"characters": 1},
        "sfx": {"seconds": 1},
        "music": {"seconds": 1},
    }
    for kind in CostKind:
        assert pricing.estimate_item_cost(kind, needs.get(kind, {})) >= 0


def test_music_is_priced_per_minute_asked_for_and_a_table_without_it_still_loads(
    pricing: Pricing, table: dict[str, Any]
) -> None:
    # 45 s at the table's $0.80 a minute: $0.60.
    assert pricing.actual_cost("music", {"seconds": 45}) == Decimal("0.600000")
    older = copy.deepcopy(table)
    del older["elevenlabs"]["music_per_minute"]
    assert load_pricing(older).estimate_item_cost("music", {"seconds": 61}) == Decimal("0.82")


def test_table_problems_name_the_yaml_field_and_the_fix(table: dict[str, Any]) -> None:
    data = copy.deepcopy(table)
    data["kling"]["unit_price"] = -0.14
    data["gemini"]["image"]["per_imag"] = 0.039
    data["gemini"]["text"]["input_per_million_tokens"] = "cheap"
    del data["elevenlabs"]["credit_price"]
    data["kling"]["units_per_clip"]["pro_10s"] = None

    with pytest.raises(PricingError) as caught:
        load_pricing(data)

    assert caught.value.problems == [
        "pricing.yaml gemini.image.per_imag: is not a known field; check its spelling and indentation "
        "(known here: input_per_million_tokens, output_per_million_tokens, per_image)",
        "pricing.yaml gemini.text.input_per_million_tokens: must be a number, not 'cheap'; "
        "write the USD price of a million input tokens, e.g. 0.30",
        "pricing.yaml kling.unit_price: -0.14 is too small; it must be >= 0: "
        "write the USD price of one Kling unit from your pack, e.g. 0.14",
        "pricing.yaml kling.units_per_clip.pro_10s: is empty; "
        "write the units Kling deducts for a pro 10s clip, e.g. 1",
        "pricing.yaml elevenlabs.credit_price: is missing; "
        "write the USD price of one ElevenLabs credit on your plan, e.g. 0.00018",
    ]


def test_an_empty_table_or_one_that_is_not_a_mapping() -> None:
    with pytest.raises(PricingError) as caught:
        load_pricing(None)  # an empty file
    assert str(caught.value) == (
        "pricing.yaml (top level): is empty; write the gemini, kling and elevenlabs sections "
        "(see daemon/defaults/pricing.yaml)"
    )
    with pytest.raises(PricingError, match=r"^pricing.yaml \(top level\): must be a mapping"):
        load_pricing(["gemini"])


# The bills as ElevenLabs counts them, worked out here from the shipped table's figures (not by the
# code under test): 1 credit per character of speech, 40 credits per second of sound, $0.00018 each.
CREDIT = Decimal("0.00018")


@given(characters=st.integers(0, 10_000), seconds=st.integers(1, 30))
def test_a_reservation_covers_the_bill_and_is_never_a_cent_more(
    pricing: Pricing, characters: int, seconds: int
) -> None:
    for kind, params, credits in (
        ("narration", {"characters": characters}, characters),
        ("sfx", {"seconds": seconds}, 40 * seconds),
    ):
        bill = credits * CREDIT
        estimate = pricing.estimate_item_cost(kind, params)
        assert bill <= estimate < bill + Decimal("0.01"), (kind, params, bill, estimate)
        # What the daemon books once the provider reports the credits it charged: the bill itself.
        assert pricing.actual_cost(kind, {"credits": credits}) == bill.quantize(Decimal("0.000001"))
