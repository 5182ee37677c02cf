"""The sandbox's media makers on their own: schema filling, pictures, speech, ambience, clips, JWT."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from PIL import ImageStat

from sandbox import jwt
from sandbox.media import ambience, clip, creature, image, schema_fill, speech
from tests.support.media import RATE, decode_audio, rms_dbfs, video_info

# Schema filling ---------------------------------------------------------------------------------------
STORYBOARD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 60},
        "assets": {
            "type": "array",
            "minItems": 2,
            "items": {
                "type": "object",
                "properties": {
                    "key": {"type": "string", "pattern": "^[a-z0-9_]+$"},
                    "kind": {"type": "string", "enum": ["character", "environment", "prop"]},
                    "prompt": {"type": "string"},
                },
                "required": ["key", "kind", "prompt"],
            },
        },
        "scenes": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "key": {"type": "string", "pattern": "^[a-z0-9_]+$"},
                    "frame": {
                        "type": "object",
                        "properties": {"environment": {"type": "string"}, "character": {"type": "string"}},
                    },
                    "narration": {"type": "string"},
                },
            },
        },
    },
}
PROMPT = "Topic: herons of the misty river delta at dawn. Direction: patient hunting. Write four scenes."


def test_a_storyboard_schema_gets_the_asked_count_unique_keys_and_resolving_references() -> None:
    document = schema_fill.fill(STORYBOARD_SCHEMA, PROMPT)
    assert len(document["scenes"]) == 4
    keys = [a["key"] for a in document["assets"]] + [s["key"] for s in document["scenes"]]
    assert len(set(keys)) == len(keys)
    assert all(re.fullmatch(r"[a-z0-9_]+", k) for k in keys)
    kinds = {a["key"]: a["kind"] for a in document["assets"]}
    assert {"character", "environment"} <= set(kinds.values())
    for scene in document["scenes"]:
        assert kinds[scene["frame"]["environment"]] == "environment"
        assert kinds[scene["frame"]["character"]] == "character"
        assert 10 <= len(scene["narration"].split()) <= 20
    assert len(document["title"]) <= 60


def test_filling_is_deterministic_and_follows_the_prompt() -> None:
    assert schema_fill.fill(STORYBOARD_SCHEMA, PROMPT) == schema_fill.fill(STORYBOARD_SCHEMA, PROMPT)
    other = schema_fill.fill(STORYBOARD_SCHEMA, "Topic: wolves crossing a snowy mountain pass at night.")
    assert "wolves" in str(other).lower() or "snowy" in str(other).lower()
    assert "heron" not in str(other).lower()


@pytest.mark.parametrize(
    ("schema", "check"),
    [
        ({"type": "INTEGER", "minimum": 3, "maximum": 4}, lambda v: v in (3, 4)),
        ({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}, lambda v: 0 < v < 1),
        ({"type": "BOOLEAN"}, lambda v: isinstance(v, bool)),
        ({"type": "STRING", "format": "enum", "enum": ["a", "b"]}, lambda v: v in ("a", "b")),
        ({"type": "ARRAY", "items": {"type": "STRING"}, "minItems": 5, "maxItems": 5}, lambda v: len(v) == 5),
        ({"type": "string", "maxLength": 12}, lambda v: 0 < len(v) <= 12),
        ({"type": "string", "minLength": 200}, lambda v: len(v) >= 200),
        ({"type": ["string", "null"]}, lambda v: isinstance(v, str)),
        ({"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 7, "maximum": 7}]}, lambda v: v == 7),
        ({"const": "fixed"}, lambda v: v == "fixed"),
        ({"type": "string", "format": "date-time"}, lambda v: v.endswith("Z")),
    ],
)
def test_each_schema_keyword_is_honoured(schema: dict[str, Any], check: Any) -> None:
    assert check(schema_fill.fill(schema, "quiet otters at play"))


def test_property_ordering_and_refs_are_followed() -> None:
    schema = {
        "type": "OBJECT",
        "properties": {"b": {"$ref": "#/definitions/Thing"}, "a": {"type": "STRING"}},
        "propertyOrdering": ["a", "b"],
        "definitions": {"Thing": {"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}}},
    }
    document = schema_fill.fill(schema, "x")
    assert list(document) == ["a", "b"]
    assert isinstance(document["b"]["n"], int)


def test_an_unfollowable_schema_is_an_error() -> None:
    with pytest.raises(schema_fill.SchemaError):
        schema_fill.fill({"$ref": "#/nowhere"}, "x")
    with pytest.raises(schema_fill.SchemaError):
        schema_fill.fill({"type": "TUPLE"}, "x")


# Pictures --------------------------------------------------------------------------------------------
def test_sizes_follow_the_models_table_and_cheap_mode_is_tiny() -> None:
    assert image.size_for("16:9", cheap=False) == (1344, 768)
    assert image.size_for("9:16", cheap=False) == (768, 1344)
    assert image.size_for("16:9", cheap=True) == (160, 90)
    with pytest.raises(KeyError):
        image.size_for("7:3", cheap=False)


def test_scene_words_and_creatures_are_read_from_the_prompt() -> None:
    reading = image.read_prompt("A fox at night in a misty forest by the river")
    assert reading.cues == {"night", "mist", "forest", "water"}
    assert reading.subject == "quadruped"
    assert image.read_prompt("Reed beds").subject is None
    assert creature.classify("a grey heron and a fox") == "bird"  # the first named wins
    keyed = image.read_prompt("A heron on a solid flat #FF00FF background")
    assert keyed.key_colour == (255, 0, 255)


def test_night_is_darker_than_dawn() -> None:
    night = ImageStat.Stat(image.draw("a meadow at night", 160, 90).convert("L")).mean[0]
    dawn = ImageStat.Stat(image.draw("a meadow at dawn", 160, 90).convert("L")).mean[0]
    assert night < dawn * 0.6


def test_any_key_colour_is_kept_exact_and_the_subject_stays_away_from_it() -> None:
    picture = image.draw("a deer on a flat #0000FF background", 320, 180)
    colours = {c for _, c in picture.getcolors(320 * 180) or []}
    assert picture.getpixel((0, 0)) == (0, 0, 255)
    assert all(c == (0, 0, 255) or c[2] < 200 for c in colours)
    assert len(colours) > 1


# Speech ----------------------------------------------------------------------------------------------
def test_speech_has_word_times_and_speed_changes_its_length() -> None:
    synth = speech.Synthesizer()
    text = "The heron waits in the reeds until the fish forget it."
    normal = synth.speak(text, "JBFqnCBsd6RMkjVDRZzb")
    fast = synth.speak(text, "JBFqnCBsd6RMkjVDRZzb", speed=1.2)
    assert len(text.split()) - 2 <= len(normal.words) <= len(text.split())
    assert [w.start for w in normal.words] == sorted(w.start for w in normal.words)
    assert text[normal.words[1].start_char :].startswith("heron")
    assert fast.duration < normal.duration * 0.9


def test_alignment_covers_every_character_in_order() -> None:
    synth = speech.Synthesizer()
    text = "Still water, and then a splash."
    spoken = speech.pad(synth.speak(text, "abcdefghij"), 0.05, 0.3)
    aligned = speech.alignment(text, spoken, spoken.duration - 0.3)
    starts = aligned["character_start_times_seconds"]
    assert aligned["characters"] == list(text)
    assert starts == sorted(starts)
    assert starts[0] >= 0.05
    assert aligned["character_end_times_seconds"][-1] <= spoken.duration - 0.3 + 1e-3  # rounded to ms


def test_voices_differ_by_id() -> None:
    synth = speech.Synthesizer()
    assert (
        synth.speak("hello there", "AAAAAAAAAA").samples != synth.speak("hello there", "BBBBBBBBBBBB").samples
    )


# Ambience, clips -------------------------------------------------------------------------------------
def test_ambience_layers_come_from_the_prompts_words() -> None:
    assert ambience.layers_for("Gentle water lapping, distant birds") == ["water", "birds"]
    assert ambience.layers_for("Rain on a tin roof, wind") == ["wind", "rain"]
    assert ambience.layers_for("quiet cave") == []


def test_a_looping_bed_has_no_fade(tmp_path: Path) -> None:
    path = tmp_path / "loop.mp3"
    path.write_bytes(ambience.render("wind", 2.0, "mp3_44100_128", loop=True))
    samples = decode_audio(path)
    assert rms_dbfs(samples, 0.05, 0.15) > rms_dbfs(samples, 0.5, 1.5) - 10
    assert len(samples) / RATE == pytest.approx(2.0, abs=0.1)


def test_a_clip_is_written_atomically_at_the_asked_format(tmp_path: Path) -> None:
    still = tmp_path / "still.png"
    image.draw("a heron at dawn", 320, 180).save(still)
    started = time.monotonic()
    clip.render(still, tmp_path / "out.mp4", 5, 64, 36, 8)
    assert time.monotonic() - started < 10
    info = video_info(tmp_path / "out.mp4")
    assert (info.width, info.height, info.frames, info.fps) == (64, 36, 40, 8.0)
    assert not list(tmp_path.glob("*.part"))
    with pytest.raises(Exception, match="ffmpeg failed"):
        clip.render(tmp_path / "missing.png", tmp_path / "bad.mp4", 5, 64, 36, 8)
    assert not (tmp_path / "bad.mp4").exists()


# Kling JWT -------------------------------------------------------------------------------------------
ACCESS, SECRET = "ak_test", "sk_" + "5" * 40


def _signed(**claims: Any) -> str:
    now = int(time.time())
    return "Bearer " + pyjwt.encode(
        {"iss": ACCESS, "exp": now + 1800, "nbf": now - 5, **claims}, SECRET, "HS256"
    )


# Headers are made when each test runs, not at collection: a collected token's times go stale
# in a long run (regression: nbf "+600 s" was in the past 19 minutes into the suite).
@pytest.mark.parametrize(
    ("make_header", "code"),
    [
        (lambda: "", 1001),
        (lambda: "Basic abc", 1002),
        (lambda: "Bearer abc.def", 1002),
        (lambda: _signed(iss="ak_other"), 1000),
        (lambda: _signed(exp=int(time.time()) - 60), 1004),
        (lambda: _signed(nbf=int(time.time()) + 600), 1003),
    ],
)
def test_bad_kling_tokens_get_their_codes(make_header: Callable[[], str], code: int) -> None:
    header = make_header()
    failure = jwt.check(header, ACCESS, SECRET)
    assert failure is not None
    assert failure.code == code


def test_a_good_kling_token_passes_with_a_little_clock_skew() -> None:
    assert jwt.check(_signed(), ACCESS, SECRET) is None
    assert jwt.check(_signed(nbf=int(time.time()) + 2), ACCESS, SECRET) is None
    missing_exp = "Bearer " + pyjwt.encode({"iss": ACCESS, "nbf": int(time.time())}, SECRET, "HS256")
    assert jwt.check(missing_exp, ACCESS, SECRET) == jwt.AuthFailure(
        1002, 'Authorization is invalid: Token is missing the "exp" claim'
    )
