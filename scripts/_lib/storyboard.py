"""The storyboard: what the model is asked for, and the DESIGN.md storyboard built from its answer.

The model only fills in free text (title, atmosphere, per-scene prompts). Keys, asset lists and the
frame references are built here, so the result is valid whatever the model does with structure.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from provider_facts import (
    ELEVENLABS_SFX_LIMIT,
    ELEVENLABS_TTS_LIMIT,
    GEMINI_IMAGE_PROMPT_LIMIT,
    KLING_PROMPT_LIMIT,
)

KEY_PATTERN = re.compile(r"^[a-z0-9_]+$")
SCENE_FIELDS = ("environment", "character", "motion", "narration", "sfx")
# How the subject sits in a scene's frame (the storyboard's frame.placement and frame.framing).
COMPOSITION = {"placement": ("left", "centre", "right"), "framing": ("wide", "medium", "close")}
# The music's character (the storyboard's mood; services/storyboard.py's Mood).
MOODS = ("calm", "hopeful", "playful", "mysterious", "tense", "epic", "melancholic")
# Text limits of the providers the fields go to.
LIMITS = {
    "motion": KLING_PROMPT_LIMIT,
    "narration": ELEVENLABS_TTS_LIMIT,
    "environment": GEMINI_IMAGE_PROMPT_LIMIT,
    "character": GEMINI_IMAGE_PROMPT_LIMIT,
    "sfx": ELEVENLABS_SFX_LIMIT,
}


class InvalidAnswer(ValueError):
    """The model's answer does not make a valid storyboard (a new call may well succeed)."""


@dataclass(frozen=True)
class Brief:
    title: str
    topic: str
    direction: str
    scenes: int


def instructions(brief: Brief) -> str:
    """The request text: the operator's brief plus what each field is for."""
    return (
        "You write storyboards for short faceless documentary videos. Each scene becomes one still frame "
        "(an environment image with an optional subject composited on it), a 5 to 10 second video clip "
        "animated from that frame, a narration line and a sound-effects bed.\n\n"
        f"Title: {brief.title}\nTopic: {brief.topic}\nStory direction: {brief.direction}\n\n"
        f"Write exactly {brief.scenes} scenes. Fields:\n"
        "- title: the video's title (keep the given one unless it is empty).\n"
        "- atmosphere: one sentence of visual style shared by every image and clip (light, palette, lens).\n"
        f"- mood: the background music's mood, one of: {', '.join(MOODS)}.\n"
        "- description: the YouTube description, two or three plain sentences inviting viewers in (no "
        "hashtags, no < or >).\n"
        "- environment: an image prompt for the place only, no animals or people.\n"
        "- character: an image prompt for the main subject alone (no background), or an empty string when "
        "the scene has none. Reuse the exact same words when the same subject appears again.\n"
        "- motion: what moves in the clip and the camera move, one or two sentences.\n"
        "- narration: what the narrator says, 12 to 25 words, spoken in about 5 to 9 seconds.\n"
        "- sfx: a short description of the ambient sound bed (no music, no speech).\n"
        "- placement: where the subject stands in the frame: left, centre or right (vary it from scene "
        "to scene, as a film would).\n"
        "- framing: how close the shot is on the subject: wide, medium or close.\n"
    )


def response_schema(scenes: int) -> dict[str, Any]:
    """Gemini's OpenAPI-subset schema for the answer; min/max items pin the scene count."""
    text = {"type": "STRING"}
    composition = {name: {"type": "STRING", "enum": list(values)} for name, values in COMPOSITION.items()}
    scene = {
        "type": "OBJECT",
        "properties": {**{name: text for name in SCENE_FIELDS}, **composition},
        "required": [*SCENE_FIELDS, *COMPOSITION],
        "propertyOrdering": [*SCENE_FIELDS, *COMPOSITION],
    }
    return {
        "type": "OBJECT",
        "properties": {
            "title": text,
            "atmosphere": text,
            "mood": {"type": "STRING", "enum": list(MOODS)},
            "description": text,
            "scenes": {"type": "ARRAY", "items": scene, "minItems": scenes, "maxItems": scenes},
        },
        "required": ["title", "atmosphere", "mood", "scenes"],
        "propertyOrdering": ["title", "atmosphere", "mood", "description", "scenes"],
    }


DESCRIPTION_LIMIT = 5000  # YouTube's, which refuses < and > in it


def _description(value: object) -> str:
    text = _text(value).replace("<", "‹").replace(">", "›")
    return text[:DESCRIPTION_LIMIT]


def parse_answer(text: str) -> dict[str, Any]:
    try:
        answer = json.loads(_strip_fence(text))
    except ValueError as exc:
        raise InvalidAnswer(f"the answer is not JSON ({exc})") from exc
    if not isinstance(answer, dict):
        raise InvalidAnswer("the answer is not a JSON object")
    return answer


def build(answer: dict[str, Any], brief: Brief) -> dict[str, Any]:
    """The storyboard (DESIGN.md's format, as JSON) from the model's answer; raises InvalidAnswer."""
    scenes_in = answer.get("scenes")
    if not isinstance(scenes_in, list) or len(scenes_in) != brief.scenes:
        got = len(scenes_in) if isinstance(scenes_in, list) else "no"
        raise InvalidAnswer(f"asked for {brief.scenes} scenes, got {got}")
    assets = _Assets()
    scenes = [_scene(index, raw, assets) for index, raw in enumerate(scenes_in, start=1)]
    storyboard = {
        # The operator's title stays (the model is asked to keep it, and may not): the title card,
        # the thumbnail and the upload all show the page's Title.
        "title": " ".join(brief.title.split()) or _text(answer.get("title")),
        "atmosphere": _text(answer.get("atmosphere")),
        **({"mood": mood} if (mood := _text(answer.get("mood")).lower()) in MOODS else {}),
        **({"description": _description(answer.get("description"))} if answer.get("description") else {}),
        "assets": assets.items,
        "scenes": scenes,
    }
    validate(storyboard, brief.scenes)
    return storyboard


def validate(storyboard: dict[str, Any], scenes: int) -> None:
    """The checks the daemon relies on: key syntax, references that exist, text within limits."""
    keys = {a["key"] for a in storyboard["assets"]}
    for key in [*keys, *(s["key"] for s in storyboard["scenes"])]:
        if not KEY_PATTERN.match(key):
            raise InvalidAnswer(f"key {key!r} does not match {KEY_PATTERN.pattern}")
    if len(storyboard["scenes"]) != scenes:
        raise InvalidAnswer(f"asked for {scenes} scenes, got {len(storyboard['scenes'])}")
    for scene in storyboard["scenes"]:
        frame = scene["frame"]
        for ref in (frame["environment"], frame["character"]):
            if ref is not None and ref not in keys:
                raise InvalidAnswer(f"scene {scene['key']} names asset {ref!r}, which does not exist")


class _Assets:
    """Assets in order of first use; an identical prompt is one asset (one image, paid once)."""

    def __init__(self) -> None:
        self.items: list[dict[str, str]] = []
        self._by_prompt: dict[tuple[str, str], str] = {}

    def key_for(self, kind: str, prompt: str, scene_key: str) -> str:
        identity = (kind, " ".join(prompt.split()).lower())
        if identity not in self._by_prompt:
            key = f"{'env' if kind == 'environment' else 'char'}_{scene_key}"
            self._by_prompt[identity] = key
            self.items.append({"key": key, "kind": kind, "prompt": prompt})
        return self._by_prompt[identity]


def _scene(index: int, raw: Any, assets: _Assets) -> dict[str, Any]:
    key = f"s{index:02d}"
    if not isinstance(raw, dict):
        raise InvalidAnswer(f"scene {index} is not an object")
    fields = {name: _text(raw.get(name)) for name in SCENE_FIELDS}
    for name in ("environment", "motion", "narration", "sfx"):
        if not fields[name]:
            raise InvalidAnswer(f"scene {index} has an empty {name}")
    for name, limit in LIMITS.items():
        if len(fields[name]) > limit:
            raise InvalidAnswer(f"scene {index}: {name} is {len(fields[name])} characters, over {limit}")
    character = fields["character"]
    frame: dict[str, Any] = {
        "environment": assets.key_for("environment", fields["environment"], key),
        "character": assets.key_for("character", character, key) if character else None,
    }
    if character:  # a choice outside the lists is left to the defaults (centre, medium)
        for name, values in COMPOSITION.items():
            if _text(raw.get(name)).lower() in values:
                frame[name] = _text(raw.get(name)).lower()
    return {
        "key": key,
        "frame": frame,
        "motion": fields["motion"],
        "narration": fields["narration"],
        "sfx": fields["sfx"],
    }


def _text(value: Any) -> str:
    return " ".join(value.split()) if isinstance(value, str) else ""


def _strip_fence(text: str) -> str:
    """Some models wrap JSON in a Markdown fence even when asked for application/json."""
    stripped = text.strip()
    fenced = re.match(r"^```(?:json)?\s*(.*?)\s*```$", stripped, re.DOTALL)
    return fenced.group(1) if fenced else stripped
