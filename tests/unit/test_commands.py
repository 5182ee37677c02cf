"""The command lines the daemon builds are read back by the real scripts' parsers unchanged."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest

from daemon.claim import Claimed
from daemon.commands import SCRIPTS, build_command
from daemon.paths import DEFAULT_PRICING_FILE
from scripts import (
    generate_asset,
    generate_audio,
    generate_sound_effects,
    generate_storyboard,
    generate_video,
)
from services.plan import PlanOptions, build_plan
from services.storyboard import Storyboard, estimate_narration_seconds, parse_storyboard

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
        deps={"composite_s01": "composites/s01.png", "narration_s01": "narration/s01.mp3"},
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

    style = Captions(
        burn_in=False, size=0.07, colour="#FFCC00", position="top", language="fra", weight="black"
    )
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
    assert parsed.caption_weight == "black"
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


def _one_scene(mood: str = "tense") -> Storyboard:
    return parse_storyboard(
        {
            "title": "Frost",
            "atmosphere": "",
            "mood": mood,
            "assets": [{"key": "field", "kind": "environment", "prompt": "a field"}],
            "scenes": [
                {
                    "key": "s01",
                    "frame": {"environment": "field"},
                    "motion": "m",
                    "narration": "Frost creeps over the field before dawn, and nothing moves at all.",
                    "sfx": "s",
                }
            ],
        }
    )


def test_generated_music_is_one_paid_item_in_the_storyboards_mood_and_the_assembly_ducks_it() -> None:
    from daemon.channels import Levels, Music
    from daemon.tasks import estimator, plan_options
    from scripts import assemble_video, generate_music
    from services.plan import MUSIC_ITEM
    from tests.support.engine_kit import channel

    music = Music(source="generated", style="low strings and a soft piano")
    options = plan_options(channel().model_copy(update={"music": music, "levels": Levels(music_lu=-20)}))
    planned = {p.key: p for p in build_plan({"title": "Frost"}, _one_scene(), options)}
    item = planned[MUSIC_ITEM]
    # It waits for every narration (its script adds their lengths up) without taking their hashes.
    assert (item.kind, item.provider, item.deps) == (
        "music",
        "elevenlabs",
        ("storyboard_gate", "narration_s01"),
    )
    assert item.input == {"prompt": item.input["prompt"], "duration": "auto"}
    assert item.input["prompt"].startswith("Tense instrumental background music")
    assert "low strings and a soft piano" in item.input["prompt"]
    assert 15 <= item.reserve["seconds"] <= 300  # what its reservation assumes
    assert MUSIC_ITEM in planned["assembly"].deps
    # Its command is read back by the script's own parser.
    c = _claimed("music", MUSIC_ITEM, item.input)
    c = Claimed(**{**c.__dict__, "deps": {"narration_s01": "narration/s01.mp3"}})
    parsed = generate_music.parser().parse_args(build_command(c, Path("/s"), Path("/w"))[2:])
    assert (parsed.prompt, parsed.duration) == (item.input["prompt"], "auto")
    assert parsed.narration == [Path("/w/narration/s01.mp3")]
    assert str(parsed.output) == f"/w/attempts/{MUSIC_ITEM}-a1"
    # The assembly gets the music item's output and the channel's levels.
    assembly = planned["assembly"]
    c = _claimed("assembly", "assembly", assembly.input)
    deps = {"clip_s01": "c.mp4", "narration_s01": "n.mp3", "sfx_s01": "s.mp3", MUSIC_ITEM: "music/bed.mp3"}
    c = Claimed(**{**c.__dict__, "deps": deps})
    parsed = assemble_video.parser().parse_args(build_command(c, Path("/s"), Path("/w"))[2:])
    assert parsed.music == Path("/w/music/bed.mp3")
    assert (parsed.loudness, parsed.ambience_lu, parsed.music_lu, parsed.duck_db) == (-14, -13, -20, 6)
    # Its reservation is priced by its length.
    import yaml

    from services.pricing import load_pricing

    pricing = load_pricing(yaml.safe_load(DEFAULT_PRICING_FILE.read_text()))
    assert estimator(pricing)(item) == math.ceil(item.reserve["seconds"] * 0.80 / 60 * 100) * 10_000


def test_a_music_folder_gives_the_track_of_the_storyboards_mood_and_no_paid_item(tmp_path: Path) -> None:
    from daemon.channels import Music
    from daemon.tasks import plan_options
    from services.plan import MUSIC_ITEM
    from tests.support.engine_kit import channel

    for name in ("calm/river.mp3", "tense/drums.mp3", "tense-strings.wav", "notes.txt", "epic.ogg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    options = plan_options(channel().model_copy(update={"music": Music(source="folder", folder=tmp_path)}))
    assert len(options.music.tracks) == 4  # audio files only, sub-folders too
    planned = {p.key: p for p in build_plan({"title": "Frost"}, _one_scene("tense"), options)}
    assert MUSIC_ITEM not in planned
    track = planned["assembly"].input["music"]["track"]
    assert track in (str(tmp_path / "tense/drums.mp3"), str(tmp_path / "tense-strings.wav"))
    # The same video keeps its track; a mood no file names takes any of them.
    again = {p.key: p for p in build_plan({"title": "Frost"}, _one_scene("tense"), options)}
    assert again["assembly"].input == planned["assembly"].input
    other = {p.key: p for p in build_plan({"title": "Frost"}, _one_scene("hopeful"), options)}
    assert other["assembly"].input["music"]["track"] in {t for t, _ in options.music.tracks}
    # Replacing the track's file makes a new cut (its version is in the assembly's input).
    Path(track).write_bytes(b"a longer file")
    replanned = build_plan(
        {"title": "Frost"},
        _one_scene("tense"),
        plan_options(channel().model_copy(update={"music": Music(source="folder", folder=tmp_path)})),
    )
    assert next(p for p in replanned if p.key == "assembly").input_hash != planned["assembly"].input_hash


def test_without_music_the_plan_has_no_music_item_and_the_assembly_none() -> None:
    from daemon.tasks import plan_options
    from tests.support.engine_kit import channel

    planned = {p.key: p for p in build_plan({"title": "Frost"}, _one_scene(), plan_options(channel()))}
    assert all(p.kind != "music" for p in planned.values())
    assert "music" not in planned["assembly"].input


def test_a_shorts_channel_plans_tall_images_frames_and_cut_with_centred_captions() -> None:
    from daemon.channels import Captions
    from daemon.tasks import plan_options
    from scripts import assemble_video, create_composite
    from tests.support.engine_kit import channel

    shorts = channel().model_copy(update={"format": "shorts"})
    storyboard = _one_scene()
    planned = {p.key: p for p in build_plan({"title": "Frost"}, storyboard, plan_options(shorts))}
    assert planned["asset_field"].input["aspect_ratio"] == "9:16"
    composite = _claimed("composite", "composite_s01", planned["composite_s01"].input)
    composite = Claimed(**{**composite.__dict__, "deps": {"asset_field": "assets/field.png"}})
    parsed = create_composite.parser().parse_args(build_command(composite, Path("/s"), Path("/w"))[2:])
    assert parsed.size == (1080, 1920)
    assembly = _claimed("assembly", "assembly", planned["assembly"].input)
    deps = {"clip_s01": "c.mp4", "narration_s01": "n.mp3", "sfx_s01": "s.mp3"}
    assembly = Claimed(**{**assembly.__dict__, "deps": deps})
    parsed = assemble_video.parser().parse_args(build_command(assembly, Path("/s"), Path("/w"))[2:])
    assert (parsed.width, parsed.height) == (1080, 1920)
    assert (parsed.caption_position, parsed.caption_size) == ("middle", 0.035)
    # What the channel's file sets is kept.
    chosen = shorts.model_copy(update={"captions": Captions(position="bottom")})
    planned = {p.key: p for p in build_plan({"title": "Frost"}, storyboard, plan_options(chosen))}
    assert planned["assembly"].input["captions"]["position"] == "bottom"
    # A landscape channel's plan carries none of it: plans made before Shorts keep their hashes.
    landscape = {p.key: p for p in build_plan({"title": "Frost"}, storyboard, plan_options(channel()))}
    assert "size" not in landscape["composite_s01"].input and "format" not in landscape["assembly"].input
    assert landscape["asset_field"].input["aspect_ratio"] == "16:9"


def test_a_short_longer_than_three_minutes_is_refused_before_anything_is_paid() -> None:
    from daemon.tasks import plan_options
    from services.errors import StoryboardError
    from tests.support.engine_kit import channel

    scene = {"frame": {"environment": "field"}, "motion": "m", "sfx": "s", "narration": "word " * 60}
    long = parse_storyboard(
        {
            "title": "Frost",
            "atmosphere": "",
            "assets": [{"key": "field", "kind": "environment", "prompt": "a field"}],
            "scenes": [{"key": f"s{i:02d}", **scene} for i in range(1, 9)],  # 8 x 24 s of words
        }
    )
    shorts = plan_options(channel().model_copy(update={"format": "shorts"}))
    with pytest.raises(StoryboardError, match="over the 180 s a Short may last; remove scenes"):
        build_plan({"title": "Frost"}, long, shorts)
    assert build_plan({"title": "Frost"}, long, plan_options(channel()))  # a landscape video may


def test_a_clip_takes_its_length_from_its_narration_and_reserves_the_longer_price() -> None:
    import dataclasses

    import yaml

    from daemon.tasks import estimator, plan_options
    from services.pricing import load_pricing
    from tests.support.engine_kit import channel

    planned = {p.key: p for p in build_plan({"title": "Frost"}, _one_scene(), plan_options(channel()))}
    clip = planned["clip_s01"]
    assert clip.input["duration"] == "auto" and "narration_s01" in clip.deps
    c = _claimed("clip", "clip_s01", clip.input)
    c = Claimed(
        **{
            **c.__dict__,
            "deps": {"composite_s01": "composites/s01.png", "narration_s01": "narration/s01.mp3"},
        }
    )
    parsed = _parsed("clip", build_command(c, Path("/s"), Path("/w")))
    assert (parsed.duration, parsed.narration) == ("auto", Path("/w/narration/s01.mp3"))
    pricing = load_pricing(yaml.safe_load(DEFAULT_PRICING_FILE.read_text()))
    ten = dataclasses.replace(clip, input={**clip.input, "duration": 10})
    assert estimator(pricing)(clip) == estimator(pricing)(ten) > 0
    # A task planned by an earlier release (plan version 1) keeps the estimated length.
    old = dataclasses.replace(plan_options(channel()), plan_version=1)
    planned = {p.key: p for p in build_plan({"title": "Frost"}, _one_scene(), old)}
    # 13 words at 150 a minute: 5.2 s, with the tail over 5 s, so 10 s.
    assert planned["clip_s01"].input["duration"] == 10 and "narration_s01" not in planned["clip_s01"].deps
    parsed = _parsed(
        "clip", build_command(_claimed("clip", "clip_s01", planned["clip_s01"].input), Path("/s"), Path("/w"))
    )
    assert (parsed.duration, parsed.narration) == ("10", None)


def test_a_channels_bookends_reach_the_assembly_and_default_ones_change_nothing() -> None:
    from daemon.channels import Bookends
    from daemon.tasks import plan_options
    from scripts import assemble_video
    from tests.support.engine_kit import channel

    plain = {p.key: p for p in build_plan({"title": "Frost"}, _one_scene(), plan_options(channel()))}
    assert "bookends" not in plain["assembly"].input  # plans made before bookends keep their hash
    ends = Bookends(title_card=True, outro_text="-Thanks for watching", min_length_s=25)
    options = plan_options(channel().model_copy(update={"bookends": ends}))
    planned = {p.key: p for p in build_plan({"title": "Frost"}, _one_scene(), options)}
    c = _claimed("assembly", "assembly", planned["assembly"].input)
    c = Claimed(**{**c.__dict__, "deps": {"clip_s01": "c.mp4", "narration_s01": "n.mp3", "sfx_s01": "s.mp3"}})
    parsed = assemble_video.parser().parse_args(build_command(c, Path("/s"), Path("/w"))[2:])
    assert (parsed.title_card, parsed.outro, parsed.min_length) == (True, 0.0, 25.0)
    assert parsed.outro_text == "-Thanks for watching"


def test_a_channel_that_pays_for_1080p_clips_asks_kling_for_pro() -> None:
    from daemon.tasks import plan_options
    from tests.support.engine_kit import channel

    pro = plan_options(channel().model_copy(update={"clip_mode": "pro"}))
    planned = {p.key: p for p in build_plan({"title": "Frost"}, _one_scene(), pro)}
    assert (
        _parsed(
            "clip",
            build_command(_claimed("clip", "clip_s01", planned["clip_s01"].input), Path("/s"), Path("/w")),
        ).mode
        == "pro"
    )
    std = {p.key: p for p in build_plan({"title": "Frost"}, _one_scene(), plan_options(channel()))}
    assert std["clip_s01"].input["mode"] == "std"


def test_a_bed_takes_its_length_from_its_narration_as_a_seamless_loop_and_new_words_keep_it() -> None:
    import dataclasses

    from daemon.tasks import plan_options
    from tests.support.engine_kit import channel

    options = plan_options(channel())
    planned = {p.key: p for p in build_plan({"title": "Frost"}, _one_scene(), options)}
    bed = planned["sfx_s01"]
    assert bed.input == {"prompt": "s", "duration": "auto", "loop": True} and "narration_s01" in bed.deps
    parsed = _parsed("sfx", build_command(_claimed("sfx", "sfx_s01", bed.input), Path("/s"), Path("/w")))
    assert (parsed.duration, parsed.narration, parsed.loop) == ("auto", Path("/w/narration/s01.mp3"), True)
    reworded = _one_scene().model_copy(
        update={
            "scenes": (_one_scene().scenes[0].model_copy(update={"narration": "Other words, more of them."}),)
        }
    )
    again = {p.key: p for p in build_plan({"title": "Frost"}, reworded, options)}
    assert again["narration_s01"].input_hash != planned["narration_s01"].input_hash
    for key in ("sfx_s01", "clip_s01", "music_bed"):
        assert (
            again.get(key, planned["sfx_s01"]).input_hash == planned.get(key, planned["sfx_s01"]).input_hash
        )
    # A task planned by an earlier release keeps its estimated bed length.
    old = {
        p.key: p
        for p in build_plan({"title": "Frost"}, _one_scene(), dataclasses.replace(options, plan_version=1))
    }
    estimated = round(estimate_narration_seconds(_one_scene().scenes[0].narration) + 0.6, 1)
    assert old["sfx_s01"].input == {"prompt": "s", "duration": estimated}
    assert "narration_s01" not in old["sfx_s01"].deps
