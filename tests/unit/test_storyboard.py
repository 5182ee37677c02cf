"""The storyboard rules as an operator meets them in the page's Error Log, its YAML form and its timing."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.errors import ServiceError, StoryboardError
from services.storyboard import (
    AssetKind,
    Storyboard,
    clip_duration_for,
    estimate_narration_seconds,
    parse_storyboard,
    parse_storyboard_yaml,
    storyboard_to_yaml,
)
from tests.support.profiles import examples

DESIGN_EXAMPLE = """\
title: The Heron's Patience
atmosphere: >-            # the Global Atmosphere Block, prefixed to every image and clip prompt
  Misty river delta at dawn, low golden side light, photoreal nature documentary, shallow depth of field
assets:                   # one image each (characters, environments, props)
  - {key: heron_wading, kind: character, prompt: "Grey heron wading knee-deep, neck coiled"}
  - {key: delta_shallows, kind: environment, prompt: "Reed-lined shallows, still water, mist"}
scenes:                   # one composite, clip, narration and SFX bed each
  - key: s01
    frame: {environment: delta_shallows, character: heron_wading}
    motion: "The heron lifts one foot slowly; ripples spread. Slow push in."
    narration: "At first light the delta belongs to the patient."
    sfx: "Dawn river ambience, gentle water lapping, distant birds"
"""


def board(scenes: int = 1) -> dict[str, Any]:
    """A valid storyboard as plain data; tests break one thing at a time."""
    return {
        "title": "The Heron's Patience",
        "atmosphere": "Misty river delta at dawn",
        "assets": [
            {"key": "heron_wading", "kind": "character", "prompt": "Grey heron wading"},
            {"key": "delta_shallows", "kind": "environment", "prompt": "Reed-lined shallows"},
            {"key": "reed_bank", "kind": "environment", "prompt": "A bank of tall reeds"},
            {"key": "fish", "kind": "prop", "prompt": "A small silver fish"},
        ],
        "scenes": [
            {
                "key": f"s{n:02}",
                "frame": {"environment": "delta_shallows", "character": "heron_wading"},
                "motion": "Slow push in.",
                "narration": "At first light the delta belongs to the patient.",
                "sfx": "Dawn river ambience",
            }
            for n in range(1, scenes + 1)
        ],
    }


def problems_of(data: object, **kwargs: Any) -> list[str]:
    with pytest.raises(StoryboardError) as caught:
        parse_storyboard(data, **kwargs)
    return caught.value.problems


def only_problem(data: object, **kwargs: Any) -> str:
    problems = problems_of(data, **kwargs)
    assert len(problems) == 1, problems
    return problems[0]


# --- a valid storyboard


def test_the_design_example_parses() -> None:
    sb = parse_storyboard_yaml(DESIGN_EXAMPLE)

    assert sb.title == "The Heron's Patience"
    assert sb.atmosphere.startswith("Misty river delta at dawn")
    assert [a.kind for a in sb.assets] == [AssetKind.CHARACTER, AssetKind.ENVIRONMENT]
    assert sb.scenes[0].frame.character == "heron_wading"
    assert sb.asset("delta_shallows").prompt == "Reed-lined shallows, still water, mist"


def test_a_frame_may_have_no_character_and_a_prop_may_stand_in_for_one() -> None:
    data = board(scenes=2)
    del data["scenes"][0]["frame"]["character"]
    data["scenes"][1]["frame"]["character"] = "fish"

    sb = parse_storyboard(data)

    assert sb.scenes[0].frame.character is None
    assert sb.scenes[1].frame.character == "fish"


def test_unicode_text_is_fine_in_titles_and_narration() -> None:
    data = board()
    data["title"] = "Le héron 🐦 — 忍耐"
    data["scenes"][0]["narration"] = "Ça commence à l'aube.\n\tPuis le héron attend."

    sb = parse_storyboard(data)

    assert sb.title == "Le héron 🐦 — 忍耐"


def test_surrounding_whitespace_is_dropped() -> None:
    data = board()
    data["title"] = "  The Heron  \n"

    assert parse_storyboard(data).title == "The Heron"


def test_the_error_is_a_service_error_with_one_problem_per_line() -> None:
    data = board()
    data["title"] = ""
    data["scenes"][0]["sfx"] = ""

    with pytest.raises(ServiceError) as caught:
        parse_storyboard(data)

    assert str(caught.value).splitlines() == [
        "title: is empty; give the video's title",
        "scenes[0].sfx: is empty; describe the scene's sound effects",
    ]


# --- each rule names the field and the fix


def test_a_key_must_be_lowercase_with_an_example_of_a_good_one() -> None:
    data = board()
    data["scenes"][0]["key"] = "Scene 1"

    assert only_problem(data) == (
        "scenes[0].key: 'Scene 1' is not a valid key; use lowercase letters, digits and '_' only, "
        "e.g. scene_1"
    )


def test_a_key_has_a_length_limit() -> None:
    data = board()
    data["scenes"][0]["key"] = "s" * 49

    assert "49 characters is over the limit of 48 for keys" in only_problem(data)


def test_keys_are_unique_among_assets_and_among_scenes() -> None:
    data = board(scenes=2)
    data["assets"][2]["key"] = "delta_shallows"
    data["scenes"][1]["key"] = "s01"

    assert problems_of(data) == [
        "assets[2].key: 'delta_shallows' is already the key of assets[1]; keys must be unique within "
        "assets, rename one",
        "scenes[1].key: 's01' is already the key of scenes[0]; keys must be unique within scenes, rename one",
    ]


def test_a_storyboard_needs_a_scene() -> None:
    data = board()
    data["scenes"] = []

    assert only_problem(data) == (
        "scenes: there are none; add at least one (each scene becomes one clip with its narration)"
    )


def test_the_scene_count_has_a_configurable_maximum() -> None:
    data = board(scenes=5)

    assert only_problem(data, max_scenes=3) == "scenes: 5 scenes is over the maximum of 3; merge or remove 2"
    assert len(parse_storyboard(data, max_scenes=5).scenes) == 5


def test_a_misspelt_environment_lists_the_environments_to_choose_from() -> None:
    data = board(scenes=3)
    data["scenes"][2]["frame"]["environment"] = "delta_shalows"

    assert only_problem(data) == (
        "scenes[2].frame.environment: 'delta_shalows' is not an asset key; "
        "use one of: delta_shallows, reed_bank"
    )


def test_a_frame_environment_must_be_an_environment_asset() -> None:
    data = board()
    data["scenes"][0]["frame"]["environment"] = "heron_wading"

    assert only_problem(data) == (
        "scenes[0].frame.environment: 'heron_wading' is a character asset, not an environment; "
        "use one of: delta_shallows, reed_bank"
    )


def test_a_frame_character_must_be_a_character_or_prop() -> None:
    data = board()
    data["scenes"][0]["frame"]["character"] = "reed_bank"

    assert only_problem(data) == (
        "scenes[0].frame.character: 'reed_bank' is an environment asset, not a character or prop; "
        "use one of: heron_wading, fish, or leave character out for a frame with no subject"
    )


def test_the_image_prompt_with_atmosphere_must_fit_gemini() -> None:
    data = board()
    data["atmosphere"] = "a" * 2_400
    data["assets"][1]["prompt"] = "b" * 1_600  # environment: 2,400 + separator 2 + 1,600 = 4,002

    assert only_problem(data) == (
        "assets[1].prompt: the image prompt (atmosphere and prompt) is 4,002 characters, over the limit of "
        "4,000 for Gemini images; shorten the prompt or the atmosphere by 2 characters"
    )


def test_a_character_image_prompt_counts_the_key_colour_instruction() -> None:
    data = board()
    data["atmosphere"] = "a" * 2_400
    data["assets"][0]["prompt"] = "b" * 1_500  # fits alone, not with the isolation instruction

    problem = only_problem(data)

    assert problem.startswith(
        "assets[0].prompt: the image prompt (atmosphere, prompt and key-colour instruction) is"
    )


def test_the_clip_prompt_with_atmosphere_must_fit_kling() -> None:
    data = board()
    data["atmosphere"] = "a" * 2_000
    data["scenes"][0]["motion"] = "m" * 499  # 2,000 + 2 + 499 = 2,501

    assert only_problem(data) == (
        "scenes[0].motion: the clip prompt (atmosphere and motion) is 2,501 characters, over Kling's limit "
        "of 2,500; shorten the motion or the atmosphere by 1 character"
    )


def test_narration_must_fit_elevenlabs_speech() -> None:
    data = board()
    data["scenes"][0]["narration"] = "x" * 12_431

    assert only_problem(data) == (
        "scenes[0].narration: 12,431 characters is over ElevenLabs' speech limit of 10,000; "
        "shorten it by 2,431 characters"
    )


def test_narration_of_exactly_the_limit_is_fine() -> None:
    data = board()
    data["scenes"][0]["narration"] = "x" * 10_000

    parse_storyboard(data)


def test_narration_and_sfx_must_not_be_blank() -> None:
    data = board()
    data["scenes"][0]["narration"] = "   \n"
    data["scenes"][0]["sfx"] = None

    assert problems_of(data) == [
        "scenes[0].narration: is empty; write the words spoken over this scene",
        "scenes[0].sfx: is empty; describe the scene's sound effects",
    ]


def test_sfx_must_fit_elevenlabs_sound_effects() -> None:
    data = board()
    data["scenes"][0]["sfx"] = "r" * 451

    assert only_problem(data) == (
        "scenes[0].sfx: 451 characters is over ElevenLabs' sound-effects limit of 450; "
        "shorten it by 1 character"
    )


def test_control_characters_are_refused_but_newlines_and_tabs_are_not() -> None:
    data = board()
    data["scenes"][0]["motion"] = "Slow\tpush\nin.\x07"

    assert only_problem(data) == (
        "scenes[0].motion: contains the control character U+0007 at character 14; "
        "remove it (only line breaks and tabs are allowed)"
    )


def test_title_fits_youtube() -> None:
    data = board()
    data["title"] = "t" * 101

    assert only_problem(data).startswith("title: 101 characters is over YouTube's title limit of 100")


def test_missing_misspelt_and_mistyped_fields() -> None:
    data = board()
    del data["scenes"][0]["motion"]
    data["scenes"][0]["narattion"] = "typo"
    data["assets"][0]["kind"] = "charcter"
    data["assets"][3]["key"] = 7

    assert problems_of(data) == [
        "assets[0].kind: 'charcter' is not allowed; use 'character', 'environment' or 'prop'",
        "assets[3].key: must be text, not the number 7; put it in quotes",
        "scenes[0].motion: is missing; describe how the camera and the subject move in the clip",
        "scenes[0].narattion: is not a known field; check its spelling and indentation "
        "(known here: key, frame, motion, narration, sfx)",
    ]


def test_every_problem_is_reported_at_once_in_storyboard_order() -> None:
    data = board(scenes=3)
    data["title"] = ""
    data["assets"][0]["key"] = "Heron"
    data["scenes"][0]["key"] = "s02"
    data["scenes"][1]["frame"]["environment"] = "nowhere"
    data["scenes"][2]["narration"] = ""

    problems = problems_of(data)

    assert [p.split(":")[0] for p in problems] == [
        "title",
        "assets[0].key",
        # 'heron_wading' is no longer a valid key, so every frame naming it is reported too
        "scenes[0].frame.character",
        "scenes[1].key",
        "scenes[1].frame.environment",
        "scenes[1].frame.character",
        "scenes[2].narration",
        "scenes[2].frame.character",
    ]


def test_structural_and_cross_field_problems_come_together() -> None:
    data = board(scenes=2)
    data["scenes"][0]["sfx"] = ""  # a per-field problem stops pydantic's model checks...
    data["scenes"][1]["frame"]["environment"] = "delta_shalows"  # ...but this is still reported

    assert [p.split(":")[0] for p in problems_of(data)] == ["scenes[0].sfx", "scenes[1].frame.environment"]


def test_not_a_mapping() -> None:
    assert only_problem(["a", "b"]).startswith(
        "storyboard: must be a mapping of 'name: value' lines, not a list"
    )


def test_direct_construction_applies_the_cross_field_rules_too() -> None:
    data = board()
    data["scenes"][0]["frame"]["environment"] = "nowhere"

    with pytest.raises(StoryboardError):
        Storyboard.model_validate(data)


# --- YAML


def test_yaml_syntax_errors_name_the_line() -> None:
    with pytest.raises(StoryboardError) as caught:
        parse_storyboard_yaml("title: x\nassets: [\n  - a\n")

    assert "storyboard: the YAML does not parse at line 3" in str(caught.value)


def test_empty_yaml() -> None:
    with pytest.raises(StoryboardError, match="storyboard: is empty"):
        parse_storyboard_yaml("# nothing yet\n")


def test_yaml_round_trip_keeps_the_design_layout() -> None:
    sb = parse_storyboard_yaml(DESIGN_EXAMPLE)

    text = storyboard_to_yaml(sb)

    assert parse_storyboard_yaml(text) == sb
    assert storyboard_to_yaml(parse_storyboard_yaml(text)) == text
    assert (
        "  - {key: heron_wading, kind: character, prompt: 'Grey heron wading knee-deep, neck coiled'}" in text
    )
    assert "    frame: {environment: delta_shallows, character: heron_wading}\n" in text
    assert text.index("title:") < text.index("atmosphere:") < text.index("assets:") < text.index("scenes:")


def test_yaml_writes_long_and_multi_line_text_for_editing() -> None:
    data = board()
    data["assets"][1]["prompt"] = "Reed-lined shallows, " * 10
    data["scenes"][0]["narration"] = "First line.\nSecond line: with a colon."
    del data["scenes"][0]["frame"]["character"]
    sb = parse_storyboard(data)

    text = storyboard_to_yaml(sb)

    assert "  - key: delta_shallows\n    kind: environment\n" in text  # too long for one line
    assert "    narration: |-\n      First line.\n      Second line: with a colon.\n" in text
    assert "frame: {environment: delta_shallows}\n" in text
    assert parse_storyboard_yaml(text) == sb


def test_yaml_quotes_text_that_would_read_as_another_type() -> None:
    data = board()
    data["title"] = "1984"
    data["scenes"][0]["sfx"] = "yes"
    sb = parse_storyboard(data)

    assert parse_storyboard_yaml(storyboard_to_yaml(sb)) == sb


_TEXT = st.text(
    alphabet=st.one_of(st.characters(exclude_categories=("Cc", "Cs")), st.sampled_from("\n\t:#'\"-{}[]")),
    min_size=1,
    max_size=60,
)
_KEY = st.from_regex(r"[a-z0-9_]{1,12}", fullmatch=True)


@settings(max_examples=examples(ci=15, deep=50))  # PyYAML is slow; 5,000 examples passed once
@given(title=_TEXT, atmosphere=_TEXT, prompt=_TEXT, motion=_TEXT, narration=_TEXT, sfx=_TEXT, key=_KEY)
def test_any_valid_storyboard_survives_the_yaml_round_trip(
    title: str, atmosphere: str, prompt: str, motion: str, narration: str, sfx: str, key: str
) -> None:
    data = board()
    data["atmosphere"] = atmosphere
    data["assets"][0]["prompt"] = prompt
    data["scenes"][0].update(key=key, motion=motion, narration=narration, sfx=sfx)
    data["title"] = title
    try:
        sb = parse_storyboard(copy.deepcopy(data))
    except StoryboardError:
        return  # e.g. text that is only whitespace
    assert parse_storyboard_yaml(storyboard_to_yaml(sb)) == sb


# --- timing


def test_narration_seconds_from_words() -> None:
    assert estimate_narration_seconds("word " * 25) == pytest.approx(10.0)
    assert estimate_narration_seconds("word " * 25, words_per_minute=300) == pytest.approx(5.0)
    assert estimate_narration_seconds("  ") == 0.0
    with pytest.raises(ValueError, match="words_per_minute"):
        estimate_narration_seconds("a", words_per_minute=0)


@pytest.mark.parametrize(
    ("seconds", "clip"),
    [(0.0, 5), (4.5, 5), (4.51, 10), (5.0, 10), (9.9, 10), (45.0, 10)],
)
def test_clip_duration_leaves_a_tail_after_the_narration(seconds: float, clip: int) -> None:
    assert clip_duration_for(seconds) == clip


def test_clip_duration_refuses_negative_time() -> None:
    with pytest.raises(ValueError, match="narration_seconds"):
        clip_duration_for(-1.0)


def test_eleven_words_fit_a_five_second_clip_at_150_wpm() -> None:
    # 11 words = 4.4 s, plus the tail 4.9 s; 12 words = 4.8 s + tail > 5 s
    assert clip_duration_for(estimate_narration_seconds("w " * 11)) == 5
    assert clip_duration_for(estimate_narration_seconds("w " * 12)) == 10


def test_cross_field_problems_alone_are_also_in_storyboard_order() -> None:
    data = board(scenes=2)
    data["scenes"][1]["key"] = "s01"
    data["scenes"][0]["frame"]["environment"] = "nowhere"

    assert [p.split(":")[0] for p in problems_of(data)] == ["scenes[0].frame.environment", "scenes[1].key"]


def test_a_yaml_nested_too_deeply_is_a_storyboard_error_not_a_crash() -> None:
    """Regression: 600 nested brackets made PyYAML's recursive parser raise RecursionError, which
    escaped parse_storyboard_yaml and stopped the Notion intake poll at that page."""
    for text in (
        "[" * 5000 + "]" * 5000,
        "scenes: " + "[" * 700 + "]" * 700,
        "{a: " * 3000 + "1" + "}" * 3000,
    ):
        with pytest.raises(StoryboardError) as caught:
            parse_storyboard_yaml(text)
        assert caught.value.problems == [
            "storyboard: the YAML is nested hundreds of levels deep, far deeper than a storyboard "
            "(title, assets and scenes, each scene with its frame); check the brackets and indentation"
        ]


def test_a_field_name_yaml_reads_as_null_or_a_number_is_named_with_the_fix() -> None:
    """Regression: `null: x` or `1: x` in the Storyboard block gave pydantic's 'None: Keys should be
    strings', which names no real field and says nothing of the fix."""
    text = DESIGN_EXAMPLE + "null: oops\n7: seven\n"
    with pytest.raises(StoryboardError) as caught:
        parse_storyboard_yaml(text)
    assert caught.value.problems == [
        "storyboard: a field has no name (null); name each field with a word "
        "(known here: title, atmosphere, mood, description, assets, scenes)",
        "storyboard: a field has the name the number 7, which is not text; name each field with a word "
        "(known here: title, atmosphere, mood, description, assets, scenes)",
    ]
    scene = DESIGN_EXAMPLE.replace("    sfx:", "    ~: nothing\n    sfx:")
    with pytest.raises(StoryboardError) as caught:
        parse_storyboard_yaml(scene)
    assert caught.value.problems == [
        "scenes[0]: a field has no name (null); name each field with a word "
        "(known here: key, frame, motion, narration, sfx)"
    ]


def test_a_frame_places_and_frames_its_subject_and_the_plan_follows_it() -> None:
    from services.plan import PlanOptions, build_plan

    data = board(scenes=3)
    data["scenes"][0]["frame"] |= {"placement": "left", "framing": "close"}
    data["scenes"][1]["frame"] |= {"placement": "right"}
    sb = parse_storyboard(data)
    assert (sb.scenes[0].frame.placement, sb.scenes[0].frame.framing) == ("left", "close")
    assert (sb.scenes[2].frame.placement, sb.scenes[2].frame.framing) == ("centre", "medium")
    # Written back to YAML only where it is not the default, and read back the same.
    text = storyboard_to_yaml(sb)
    assert text.count("placement:") == 2 and text.count("framing:") == 1
    assert parse_storyboard_yaml(text) == sb
    plan = {p.key: p.input for p in build_plan({"title": "t", "scenes": 3}, sb, PlanOptions())}
    assert (plan["composite_s01"]["placement"], plan["composite_s01"]["scale"]) == ("left", 0.8)
    assert plan["composite_s02"]["placement"] == "right" and "scale" not in plan["composite_s02"]
    # A scene with the defaults (as every storyboard had before) keeps its composite's input as it
    # was: nothing already made is made, or paid for, again.
    assert "placement" not in plan["composite_s03"] and "scale" not in plan["composite_s03"]


def test_a_placement_outside_the_choices_is_refused_with_them() -> None:
    data = board()
    data["scenes"][0]["frame"]["placement"] = "upstage"
    with pytest.raises(
        StoryboardError, match="placement: 'upstage' is not allowed; use 'left', 'centre' or 'right'"
    ):
        parse_storyboard(data)
