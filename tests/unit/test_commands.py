"""The command lines the daemon builds are read back by the real scripts' parsers unchanged."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from daemon.claim import Claimed
from daemon.commands import SCRIPTS, build_command
from scripts import (
    generate_asset,
    generate_audio,
    generate_sound_effects,
    generate_storyboard,
    generate_video,
)
from services.plan import PlanOptions, build_plan
from services.storyboard import parse_storyboard

PARSERS = {
    "storyboard": generate_storyboard.parser,
    "asset": generate_asset.parser,
    "clip": generate_video.parser,
    "narration": generate_audio.parser,
    "sfx": generate_sound_effects.parser,
}
# Text an operator may write that argparse would take for an option when it is a separate argument:
# it starts with '-' and has no space.
DASHED = ["-30°C", "-Hush!", "--output=/etc/passwd", "-rf", "--prompt-influence"]


def _claimed(kind: str, key: str, data: dict[str, object]) -> Claimed:
    return Claimed(
        item_id=1,
        task_id=1,
        channel_id="nature",
        project_slug="0123456789abcdef0123456789abcdef",
        kind=kind,
        key=key,
        provider="x",
        input=dict(data),
        input_hash="h",
        attempt_no=1,
        lease_token="t",
        idempotency_key="k",
        attempt_output=f"attempts/{key}-a1",
        resume=None,
        deps={"composite_s01": "composites/s01.png"},
    )


def _parsed(kind: str, argv: list[str]) -> argparse.Namespace:
    assert Path(argv[1]).name == SCRIPTS[kind]
    return PARSERS[kind]().parse_args(argv[2:])


@pytest.mark.parametrize("text", DASHED)
def test_text_starting_with_a_dash_reaches_each_script_as_written(text: str) -> None:
    """Regression: a Title such as '-30°C' (or a narration, prompt or sound description starting with
    '-' and without a space) was passed as a separate argument, which argparse took for an option:
    the script stopped with 'argument --title: expected one argument' and the task went to Error."""
    storyboard = parse_storyboard(
        {
            "title": "Frost",
            "atmosphere": "",
            "assets": [{"key": "field", "kind": "environment", "prompt": text}],
            "scenes": [
                {
                    "key": "s01",
                    "frame": {"environment": "field"},
                    "motion": text,
                    "narration": text,
                    "sfx": text,
                }
            ],
        }
    )
    request = {"title": text, "topic": text, "direction": text, "scenes": 1}
    generated = build_plan(request, None, PlanOptions())
    planned = {p.key: p for p in [*generated, *build_plan(request, storyboard, PlanOptions())]}

    def args(key: str) -> argparse.Namespace:
        item = planned[key]
        return _parsed(item.kind, build_command(_claimed(item.kind, key, item.input), Path("/s"), Path("/w")))

    board = args("storyboard")
    assert (board.title, board.topic, board.direction) == (text, text, text)
    assert args("asset_field").prompt == planned["asset_field"].input["prompt"]
    assert args("clip_s01").prompt == planned["clip_s01"].input["prompt"]
    assert args("narration_s01").text == text
    assert args("sfx_s01").prompt == text


def test_a_channels_caption_style_and_transitions_reach_the_assembly() -> None:
    from daemon.channels import Captions, Transitions
    from daemon.tasks import plan_options
    from scripts import assemble_video
    from tests.support.engine_kit import channel

    style = Captions(burn_in=False, size=0.07, colour="#FFCC00", position="top", language="fra")
    edges = Transitions(crossfade_s=0.0, fade_s=1.0)
    options = plan_options(
        channel().model_copy(update={"captions": style, "transitions": edges, "max_clip_slowdown": 1.25})
    )
    storyboard = parse_storyboard(
        {
            "title": "Frost",
            "atmosphere": "",
            "assets": [{"key": "field", "kind": "environment", "prompt": "a field"}],
            "scenes": [
                {"key": "s01", "frame": {"environment": "field"}, "motion": "m", "narration": "n", "sfx": "s"}
            ],
        }
    )
    planned = {p.key: p for p in build_plan({"title": "Frost", "scenes": 1}, storyboard, options)}
    item = planned["assembly"]
    c = _claimed("assembly", "assembly", item.input)
    c = Claimed(**{**c.__dict__, "deps": {"clip_s01": "c.mp4", "narration_s01": "n.mp3", "sfx_s01": "s.mp3"}})
    argv = build_command(c, Path("/s"), Path("/w"))
    assert Path(argv[1]).name == SCRIPTS["assembly"]
    parsed = assemble_video.parser().parse_args(argv[2:])
    assert parsed.burn_captions is False
    assert (parsed.caption_size, parsed.caption_colour, parsed.caption_position) == (0.07, "#FFCC00", "top")
    assert (parsed.caption_outline_colour, parsed.caption_language) == ("#000000", "fra")
    assert (parsed.crossfade, parsed.fade) == (0.0, 1.0)
    assert parsed.title == "Frost"  # the storyboard's, for the thumbnail
    assert parsed.max_slowdown == 1.25
    # A plan made before captions carries no style: the script's own defaults apply.
    old = _claimed("assembly", "assembly", {k: v for k, v in item.input.items() if k != "captions"})
    old = Claimed(**{**old.__dict__, "deps": c.deps})
    parsed = assemble_video.parser().parse_args(build_command(old, Path("/s"), Path("/w"))[2:])
    assert (parsed.burn_captions, parsed.caption_position) == (True, "bottom")
    assert (parsed.crossfade, parsed.fade) == (0.0, 1.0)  # the transitions stay: only captions went


def test_a_scenes_placement_and_framing_reach_its_composite() -> None:
    from scripts import create_composite

    frame = {"environment": "field", "character": "heron", "placement": "right", "framing": "close"}
    storyboard = parse_storyboard(
        {
            "title": "Frost",
            "atmosphere": "",
            "assets": [
                {"key": "field", "kind": "environment", "prompt": "a field"},
                {"key": "heron", "kind": "character", "prompt": "a heron"},
            ],
            "scenes": [{"key": "s01", "frame": frame, "motion": "m", "narration": "n", "sfx": "s"}],
        }
    )
    item = {p.key: p for p in build_plan({"title": "Frost", "scenes": 1}, storyboard, PlanOptions())}[
        "composite_s01"
    ]
    c = _claimed("composite", "composite_s01", item.input)
    c = Claimed(**{**c.__dict__, "deps": {"asset_field": "f.png", "asset_heron": "h.png"}})
    parsed = create_composite.parser().parse_args(build_command(c, Path("/s"), Path("/w"))[2:])
    assert (parsed.character_position, parsed.character_scale) == ("right", 0.8)
