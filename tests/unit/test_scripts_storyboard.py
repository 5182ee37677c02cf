"""The storyboard is built from the model's free text; its structure never depends on the model."""

from __future__ import annotations

import json
from typing import Any

import pytest

from scripts._lib import storyboard as sb

BRIEF = sb.Brief(title="The Heron's Patience", topic="herons", direction="calm", scenes=3)


def _scene(
    env: str = "Reed-lined shallows", char: str = "Grey heron wading", narration: str = "At first light."
) -> dict[str, str]:
    return {
        "environment": env,
        "character": char,
        "motion": "Slow push in.",
        "narration": narration,
        "sfx": "River",
    }


def _answer(*scenes: dict[str, str]) -> dict[str, Any]:
    return {"title": "The Heron", "atmosphere": "Misty dawn", "scenes": list(scenes)}


def test_builds_the_design_format_with_derived_keys() -> None:
    board = sb.build(
        _answer(_scene(), _scene(env="Open mudflat", char=""), _scene(char="Heron chick")), BRIEF
    )
    # The operator's title stays, whatever the model answered ("The Heron"): the title card, the
    # thumbnail and the upload show the page's Title.
    assert board["title"] == "The Heron's Patience"
    untitled = sb.build(_answer(_scene(), _scene(), _scene()), sb.Brief("", "herons", "calm", 3))
    assert untitled["title"] == "The Heron"  # none given: the model's
    assert [s["key"] for s in board["scenes"]] == ["s01", "s02", "s03"]
    assert board["assets"] == [
        {"key": "env_s01", "kind": "environment", "prompt": "Reed-lined shallows"},
        {"key": "char_s01", "kind": "character", "prompt": "Grey heron wading"},
        {"key": "env_s02", "kind": "environment", "prompt": "Open mudflat"},
        {"key": "char_s03", "kind": "character", "prompt": "Heron chick"},
    ]
    assert board["scenes"][1]["frame"] == {"environment": "env_s02", "character": None}
    assert board["scenes"][2]["frame"] == {"environment": "env_s01", "character": "char_s03"}
    assert set(board["scenes"][0]) == {"key", "frame", "motion", "narration", "sfx"}


def test_identical_prompts_make_one_asset() -> None:
    board = sb.build(_answer(_scene(), _scene(env="reed-lined   shallows"), _scene()), BRIEF)
    assert [a["key"] for a in board["assets"]] == ["env_s01", "char_s01"]


def test_empty_title_falls_back_to_the_operators() -> None:
    answer = _answer(_scene(), _scene(), _scene())
    answer["title"] = " "
    assert sb.build(answer, BRIEF)["title"] == BRIEF.title


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (_answer(_scene(), _scene()), "asked for 3 scenes, got 2"),
        (_answer(_scene(), _scene(narration=" "), _scene()), "empty narration"),
        (_answer(_scene(), _scene(env=""), _scene()), "empty environment"),
        ({"title": "x"}, "got no"),
        (_answer(_scene(), _scene(narration="x" * 10_001), _scene()), "over 10000"),
    ],
)
def test_invalid_answers_are_refused_with_the_reason(answer: dict[str, Any], words: str) -> None:
    with pytest.raises(sb.InvalidAnswer, match=words):
        sb.build(answer, BRIEF)


def test_parses_json_even_in_a_markdown_fence() -> None:
    text = "```json\n" + json.dumps(_answer(_scene())) + "\n```"
    assert sb.parse_answer(text)["title"] == "The Heron"
    with pytest.raises(sb.InvalidAnswer):
        sb.parse_answer("Sure! Here is your storyboard")


def test_schema_pins_the_scene_count() -> None:
    scenes = sb.response_schema(4)["properties"]["scenes"]
    assert (scenes["minItems"], scenes["maxItems"]) == (4, 4)
    assert scenes["items"]["required"] == [
        "environment", "character", "motion", "narration", "sfx", "placement", "framing"
    ]  # fmt: skip


def test_instructions_carry_the_brief() -> None:
    text = sb.instructions(BRIEF)
    assert "The Heron's Patience" in text
    assert "exactly 3 scenes" in text


def test_the_model_chooses_each_subjects_placement_and_framing() -> None:
    first = {**_scene(), "placement": "Left", "framing": "close"}
    second = {**_scene(char=""), "placement": "right", "framing": "wide"}  # no subject: nothing to place
    third = {**_scene(), "placement": "upside down", "framing": "medium"}  # not one of the choices
    board = sb.build(_answer(first, second, third), BRIEF)
    frames = [s["frame"] for s in board["scenes"]]
    assert frames[0] == {
        "environment": "env_s01",
        "character": "char_s01",
        "placement": "left",
        "framing": "close",
    }
    assert frames[1] == {"environment": "env_s01", "character": None}
    assert frames[2] == {"environment": "env_s01", "character": "char_s01", "framing": "medium"}
    schema = sb.response_schema(3)["properties"]["scenes"]["items"]
    assert schema["properties"]["placement"]["enum"] == ["left", "centre", "right"]
    assert schema["properties"]["framing"]["enum"] == ["wide", "medium", "close"]
    assert {"placement", "framing"} <= set(schema["required"])
