"""Prompt assembly: the item's own text is sent whole; only the shared atmosphere gives way."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provider_facts import GEMINI_IMAGE_PROMPT_LIMIT, KLING_PROMPT_LIMIT
from services.errors import PromptError, PromptTooLong, ServiceError
from services.prompts import (
    SEPARATOR,
    clip_prompt,
    fit_prompt,
    image_prompt,
    isolation_instruction,
    shorten,
)
from tests.support.profiles import examples

ATMOSPHERE = "Misty river delta at dawn, low golden side light, photoreal nature documentary"


def test_provider_limits() -> None:
    assert KLING_PROMPT_LIMIT == 2_500
    assert GEMINI_IMAGE_PROMPT_LIMIT == 4_000


def test_environment_image_prompt_is_atmosphere_then_asset() -> None:
    prompt = image_prompt(ATMOSPHERE, "Reed-lined shallows, still water", isolated=False)

    assert prompt == f"{ATMOSPHERE}{SEPARATOR}Reed-lined shallows, still water"


def test_character_image_prompt_asks_for_a_flat_key_colour() -> None:
    prompt = image_prompt(ATMOSPHERE, "Grey heron wading", isolated=True, key_color="#00ff00")

    assert prompt.startswith(f"{ATMOSPHERE}{SEPARATOR}Grey heron wading{SEPARATOR}")
    assert "isolated on a solid flat #00FF00 background, no shadows" in prompt


def test_key_colour_is_a_parameter_and_must_be_a_colour() -> None:
    assert "#FF00FF" in isolation_instruction("#FF00FF")
    with pytest.raises(PromptError, match="is not a #RRGGBB colour"):
        isolation_instruction("green")


def test_clip_prompt_is_atmosphere_then_motion() -> None:
    assert clip_prompt(ATMOSPHERE, "Slow push in.") == f"{ATMOSPHERE}{SEPARATOR}Slow push in."


def test_empty_atmosphere_adds_no_separator() -> None:
    assert clip_prompt("  ", "Slow push in.") == "Slow push in."


def test_a_long_atmosphere_is_shortened_at_a_clause_and_the_motion_kept_whole() -> None:
    motion = "m" * 2_450
    room = KLING_PROMPT_LIMIT - len(motion) - len(SEPARATOR)  # 48 characters of atmosphere fit

    prompt = clip_prompt(ATMOSPHERE, motion)

    assert prompt.endswith(SEPARATOR + motion)
    assert len(prompt) <= KLING_PROMPT_LIMIT
    assert prompt.split(SEPARATOR)[0] == "Misty river delta at dawn, low golden side light"
    assert len("Misty river delta at dawn, low golden side light") <= room


def test_an_image_prompt_keeps_the_key_colour_instruction_when_trimming() -> None:
    asset = "h" * 3_850

    prompt = image_prompt(ATMOSPHERE * 10, asset, isolated=True)

    assert len(prompt) <= GEMINI_IMAGE_PROMPT_LIMIT
    assert prompt.endswith(f"{asset}{SEPARATOR}{isolation_instruction()}")


def test_no_room_for_atmosphere_drops_it() -> None:
    motion = "m" * (KLING_PROMPT_LIMIT - 1)

    assert clip_prompt(ATMOSPHERE, motion) == motion


def test_own_text_over_the_limit_is_refused_not_cut() -> None:
    with pytest.raises(PromptTooLong) as caught:
        clip_prompt(ATMOSPHERE, "m" * 2_501)

    assert isinstance(caught.value, ServiceError)
    assert str(caught.value) == (
        "the item's own text is 2,501 characters, over the limit of 2,500; shorten it by 1 character"
    )


@pytest.mark.parametrize(
    ("text", "width", "expected"),
    [
        ("dawn mist, gold light", 100, "dawn mist, gold light"),
        ("dawn mist, gold light", 15, "dawn mist"),  # clause end
        ("dawn mist over water", 12, "dawn mist"),  # word end
        ("dawnmistoverwater", 6, "dawnmi"),  # no boundary at all: a hard cut
        ("dawn mist", 0, ""),
        ("dawn mist", 4, "dawn"),  # the boundary just past the limit still counts
    ],
)
def test_shorten(text: str, width: int, expected: str) -> None:
    assert shorten(text, width) == expected


@settings(max_examples=examples(ci=50, deep=200))
@given(atmosphere=st.text(max_size=300), own=st.text(min_size=1, max_size=300), limit=st.integers(1, 400))
def test_fit_prompt_never_exceeds_the_limit_and_keeps_the_item_text(
    atmosphere: str, own: str, limit: int
) -> None:
    try:
        prompt = fit_prompt(atmosphere, own, limit)
    except PromptTooLong:
        assert len(own.strip()) > limit
        return
    assert len(prompt) <= limit
    assert prompt.endswith(own.strip())
