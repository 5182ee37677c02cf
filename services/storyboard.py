"""The storyboard: the production plan of one video, its rules, its YAML form and its timing."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Literal, Self

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, ValidationInfo, model_validator
from yaml.reader import ReaderError

from provider_facts import (
    ELEVENLABS_SFX_LIMIT,
    ELEVENLABS_TTS_LIMIT,
    GEMINI_IMAGE_PROMPT_LIMIT,
    KLING_PROMPT_LIMIT,
)
from services.errors import StoryboardError, describe_error, rule_error
from services.ids import AssetKey, SceneKey
from services.prompts import (
    characters,
    image_subject,
    join_prompt,
)

KEY_PATTERN = re.compile(r"[a-z0-9_]+")
MAX_KEY_LENGTH = 48  # keys end up in item keys and file names; keep both short
DEFAULT_MAX_SCENES = 60
YOUTUBE_TITLE_LIMIT = 100
YOUTUBE_DESCRIPTION_LIMIT = (
    5000  # bytes on YouTube; counted here in characters, the rest is the upload's check
)

CLIP_SECONDS = (5, 10)  # the only durations Kling makes
# The music's character; the generated music's prompt and a music folder's track follow it.
Mood = Literal["calm", "hopeful", "playful", "mysterious", "tense", "epic", "melancholic"]
DEFAULT_MOOD: Mood = "calm"
CLIP_TAIL_SECONDS = 0.5  # breathing room after the last word before the cut


class AssetKind(StrEnum):
    CHARACTER = "character"
    ENVIRONMENT = "environment"
    PROP = "prop"

    @property
    def isolated(self) -> bool:
        """Characters and props are drawn on a key colour and keyed onto an environment frame."""
        return self is not AssetKind.ENVIRONMENT


def _suggest_key(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", value.lower()).strip("_")[:MAX_KEY_LENGTH] or "s01"


def _check_key(value: str) -> str:
    if not value:
        raise rule_error("is empty; give a key such as s01 or delta_shallows")
    if len(value) > MAX_KEY_LENGTH:
        raise rule_error(
            f"{len(value)} characters is over the limit of {MAX_KEY_LENGTH} for keys; "
            f"use a shorter key such as {_suggest_key(value)[:16]}"
        )
    if not KEY_PATTERN.fullmatch(value):
        raise rule_error(
            f"{value!r} is not a valid key; use lowercase letters, digits and '_' only, "
            f"e.g. {_suggest_key(value)}"
        )
    return value


def _first_bad_character(text: str) -> tuple[int, str] | None:
    for position, char in enumerate(text):
        if char not in "\n\t" and unicodedata.category(char) in ("Cc", "Cs"):
            return position, char
    return None


def _text_rule(fix_when_empty: str | None, limit: int | None = None, limit_owner: str = "") -> AfterValidator:
    """A text field's rules; `fix_when_empty` None means empty is allowed."""

    def check(value: str) -> str:
        if fix_when_empty is not None and not value:
            raise rule_error(f"is empty; {fix_when_empty}")
        bad = _first_bad_character(value)
        if bad is not None:
            raise rule_error(
                f"contains the control character U+{ord(bad[1]):04X} at character {bad[0] + 1:,}; "
                "remove it (only line breaks and tabs are allowed)"
            )
        if limit is not None and len(value) > limit:
            raise rule_error(
                f"{len(value):,} characters is over {limit_owner} limit of {limit:,}; "
                f"shorten it by {characters(len(value) - limit)}"
            )
        return value

    return AfterValidator(check)


_AssetKeyField = Annotated[AssetKey, AfterValidator(_check_key)]
_MODEL = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Asset(BaseModel):
    """One generated image: a character, an environment or a prop."""

    model_config = _MODEL
    key: _AssetKeyField
    kind: AssetKind
    prompt: Annotated[str, _text_rule("describe the image to generate")]


class Frame(BaseModel):
    """What a scene's composite shows: an environment, optionally with a character or prop on it."""

    model_config = _MODEL
    environment: _AssetKeyField
    character: _AssetKeyField | None = None
    # Where the subject stands and how close the shot is (varied per scene, as a film would).
    placement: Literal["left", "centre", "right"] = "centre"
    framing: Literal["wide", "medium", "close"] = "medium"


class Scene(BaseModel):
    """One composite, clip, narration and SFX bed."""

    model_config = _MODEL
    key: Annotated[SceneKey, AfterValidator(_check_key)]
    frame: Frame
    motion: Annotated[str, _text_rule("describe how the camera and the subject move in the clip")]
    narration: Annotated[
        str,
        _text_rule("write the words spoken over this scene", ELEVENLABS_TTS_LIMIT, "ElevenLabs' speech"),
    ]
    sfx: Annotated[
        str,
        _text_rule("describe the scene's sound effects", ELEVENLABS_SFX_LIMIT, "ElevenLabs' sound-effects"),
    ]


class Storyboard(BaseModel):
    """Build it with `parse_storyboard`, which reports every problem at once."""

    model_config = _MODEL
    title: Annotated[str, _text_rule("give the video's title", YOUTUBE_TITLE_LIMIT, "YouTube's title")]
    atmosphere: Annotated[str, _text_rule(None)]
    mood: Mood = DEFAULT_MOOD
    # The YouTube description (a page's Description goes over it); YouTube refuses < and >.
    description: Annotated[str, _text_rule(None, YOUTUBE_DESCRIPTION_LIMIT, "YouTube's description")] = ""
    assets: tuple[Asset, ...]
    scenes: tuple[Scene, ...]

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Self:
        # Raised as StoryboardError, not ValueError, so pydantic lets it through unchanged.
        problems = _cross_problems(self.model_dump(), _max_scenes(info.context))
        if problems:
            raise StoryboardError(sorted(problems, key=_document_order))
        return self

    def asset(self, key: str) -> Asset:
        """The asset with this key (the storyboard guarantees that every frame's keys exist)."""
        for asset in self.assets:
            if asset.key == key:
                return asset
        raise KeyError(key)


def _max_scenes(context: object) -> int:
    if isinstance(context, Mapping):
        value = context.get("max_scenes", DEFAULT_MAX_SCENES)
        if isinstance(value, int):
            return value
    return DEFAULT_MAX_SCENES


_HINTS = {
    "storyboard": "write a mapping with title, atmosphere, assets and scenes",
    "title": "give the video's title",
    "atmosphere": "add the look shared by every image and clip (atmosphere: '' if there is none)",
    "mood": "use mood: calm, hopeful, playful, mysterious, tense, epic or melancholic",
    "description": "write the YouTube description, or leave description out",
    "assets": "list the images to generate, each with key, kind and prompt",
    "scenes": "list the scenes, each with key, frame, motion, narration and sfx",
    "key": "give a unique key such as s01 or delta_shallows",
    "kind": "use kind: character, environment or prop",
    "prompt": "describe the image to generate",
    "frame": "add frame: {environment: <an environment asset key>}",
    "environment": "name an environment asset's key",
    "character": "name a character or prop asset's key, or leave character out",
    "placement": "use placement: left, centre or right",
    "framing": "use framing: wide, medium or close",
    "motion": "describe how the camera and the subject move in the clip",
    "narration": "write the words spoken over this scene",
    "sfx": "describe the scene's sound effects",
}
_FIELDS = {
    (): tuple(Storyboard.model_fields),
    ("assets",): tuple(Asset.model_fields),
    ("scenes",): tuple(Scene.model_fields),
    ("scenes", "frame"): tuple(Frame.model_fields),
}


def parse_storyboard(data: object, *, max_scenes: int = DEFAULT_MAX_SCENES) -> Storyboard:
    """Validate plain data (from YAML or JSON); raise StoryboardError listing every problem."""
    try:
        return Storyboard.model_validate(data, context={"max_scenes": max_scenes})
    except ValidationError as exc:
        problems = [
            describe_error(error, root="storyboard", hints=_HINTS, fields=_FIELDS)
            for error in exc.errors(include_url=False)
        ]
        # The model's own cross-checks only run on a well-formed tree; run them on the raw data too
        # so an operator sees every problem in one pass, in the order of the storyboard.
        problems += _cross_problems(data, max_scenes)
        raise StoryboardError(sorted(problems, key=_document_order)) from None


_LOCATION = re.compile(r"(\w+)(?:\[(\d+)\])?")
_SECTIONS = ("storyboard", "title", "atmosphere", "mood", "description", "assets", "scenes")


def _document_order(problem: str) -> tuple[int, int]:
    match = _LOCATION.match(problem)
    if match is None or match[1] not in _SECTIONS:
        return (0, 0)
    return (_SECTIONS.index(match[1]), int(match[2] or 0))


def parse_storyboard_yaml(text: str, *, max_scenes: int = DEFAULT_MAX_SCENES) -> Storyboard:
    """Parse the YAML of the page's Storyboard block (a string; no file is read)."""
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        place = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        raise StoryboardError(
            [
                f"storyboard: the YAML does not parse at {place} ({exc.problem or exc.context}); "
                "check the indentation and put text containing ': ' or starting with a symbol in quotes"
            ]
        ) from None
    except ReaderError as exc:
        raise StoryboardError(
            [
                f"storyboard: the YAML contains the control character U+{exc.character:04X} at character "
                f"{exc.position + 1:,}; remove it (only line breaks and tabs are allowed)"
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise StoryboardError([f"storyboard: the YAML does not parse ({exc}); check its syntax"]) from None
    except RecursionError:
        # PyYAML parses recursively: a few hundred nested brackets exhaust Python's stack.
        raise StoryboardError(
            [
                "storyboard: the YAML is nested hundreds of levels deep, far deeper than a storyboard "
                "(title, assets and scenes, each scene with its frame); check the brackets and indentation"
            ]
        ) from None
    if data is None:
        raise StoryboardError(["storyboard: is empty; " + _HINTS["storyboard"]])
    return parse_storyboard(data, max_scenes=max_scenes)


# --- rules across fields. They read raw data defensively (skipping what the per-field checks already
# report) so that they can run on a storyboard that is not yet well formed.


def _text(value: object) -> str | None:
    return value.strip() if isinstance(value, str) else None


def _entries(value: object) -> list[tuple[int, Mapping[str, object]]]:
    if not isinstance(value, list | tuple):
        return []
    return [(index, entry) for index, entry in enumerate(value) if isinstance(entry, Mapping)]


def _cross_problems(data: object, max_scenes: int = DEFAULT_MAX_SCENES) -> list[str]:
    """Rules spanning several fields: scene count, unique keys, references, combined prompt lengths."""
    if not isinstance(data, Mapping):
        return []
    atmosphere = _text(data.get("atmosphere")) or ""
    assets, scenes = _entries(data.get("assets")), _entries(data.get("scenes"))
    kinds: dict[str, AssetKind | None] = {}
    for _, asset in assets:
        key, kind = _text(asset.get("key")), _text(asset.get("kind"))
        if key and key not in kinds:
            kinds[key] = AssetKind(kind) if kind in tuple(AssetKind) else None
    problems = _scene_count(data.get("scenes"), max_scenes)
    problems += _duplicate_keys("assets", assets) + _duplicate_keys("scenes", scenes)
    problems += [p for index, asset in assets if (p := _image_prompt_problem(index, asset, atmosphere))]
    for index, scene in scenes:
        frame = scene.get("frame")
        if isinstance(frame, Mapping):
            problems += _frame_problems(index, frame, kinds)
        if problem := _clip_prompt_problem(index, scene, atmosphere):
            problems.append(problem)
    return problems


def _scene_count(scenes: object, max_scenes: int) -> list[str]:
    if not isinstance(scenes, list | tuple):
        return []
    if not scenes:
        return ["scenes: there are none; add at least one (each scene becomes one clip with its narration)"]
    if len(scenes) > max_scenes:
        over = len(scenes) - max_scenes
        return [f"scenes: {len(scenes)} scenes is over the maximum of {max_scenes}; merge or remove {over}"]
    return []


def _duplicate_keys(section: str, entries: list[tuple[int, Mapping[str, object]]]) -> list[str]:
    first: dict[str, int] = {}
    problems = []
    for index, entry in entries:
        key = _text(entry.get("key"))
        if not key:
            continue
        if key in first:
            problems.append(
                f"{section}[{index}].key: {key!r} is already the key of {section}[{first[key]}]; "
                f"keys must be unique within {section}, rename one"
            )
        else:
            first[key] = index
    return problems


def _frame_problems(
    index: int, frame: Mapping[str, object], kinds: Mapping[str, AssetKind | None]
) -> list[str]:
    where = f"scenes[{index}].frame"
    problems = []
    environment, character = _text(frame.get("environment")), _text(frame.get("character"))
    if environment:
        problem = _reference_problem(f"{where}.environment", environment, kinds, {AssetKind.ENVIRONMENT})
        problems += [problem] if problem else []
    if character:
        problem = _reference_problem(
            f"{where}.character", character, kinds, {AssetKind.CHARACTER, AssetKind.PROP}
        )
        problems += [problem] if problem else []
    return problems


def _reference_problem(
    where: str, key: str, kinds: Mapping[str, AssetKind | None], allowed: set[AssetKind]
) -> str | None:
    role = " or ".join(sorted(allowed))
    choices = [k for k, kind in kinds.items() if kind in allowed]
    if choices:
        fix = "use one of: " + ", ".join(choices)
    else:
        fix = f"add an asset with kind: {role} and use its key"
    if AssetKind.ENVIRONMENT not in allowed:
        fix += ", or leave character out for a frame with no subject"
    if key not in kinds:
        return f"{where}: {key!r} is not an asset key; {fix}"
    kind = kinds[key]
    if kind is None or kind in allowed:
        return None  # a bad kind is reported on the asset itself
    return f"{where}: {key!r} is {_a(kind)} asset, not {_a(role)}; {fix}"


def _a(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def _image_prompt_problem(index: int, asset: Mapping[str, object], atmosphere: str) -> str | None:
    prompt = _text(asset.get("prompt"))
    if not prompt:
        return None
    isolated = asset.get("kind") in (AssetKind.CHARACTER, AssetKind.PROP)
    length = len(join_prompt(atmosphere, image_subject(prompt, isolated=isolated)))
    if length <= GEMINI_IMAGE_PROMPT_LIMIT:
        return None
    parts = "atmosphere, prompt and key-colour instruction" if isolated else "atmosphere and prompt"
    return (
        f"assets[{index}].prompt: the image prompt ({parts}) is {length:,} characters, over the limit of "
        f"{GEMINI_IMAGE_PROMPT_LIMIT:,} for Gemini images; shorten the prompt or the atmosphere by "
        f"{characters(length - GEMINI_IMAGE_PROMPT_LIMIT)}"
    )


def _clip_prompt_problem(index: int, scene: Mapping[str, object], atmosphere: str) -> str | None:
    motion = _text(scene.get("motion"))
    if not motion:
        return None
    length = len(join_prompt(atmosphere, motion))
    if length <= KLING_PROMPT_LIMIT:
        return None
    return (
        f"scenes[{index}].motion: the clip prompt (atmosphere and motion) is {length:,} characters, over "
        f"Kling's limit of {KLING_PROMPT_LIMIT:,}; shorten the motion or the atmosphere by "
        f"{characters(length - KLING_PROMPT_LIMIT)}"
    )


# --- YAML: the form an operator reads and edits in the page's Storyboard block.


class _OneLine(dict[str, object]):
    """A mapping written in flow style: {environment: a, character: b}."""


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        # Indent list entries under their key, as people write YAML by hand.
        super().increase_indent(flow, False)


def _represent_text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Multi-line text as a literal block, so line breaks stay line breaks when edited.
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


def _represent_one_line(dumper: yaml.SafeDumper, value: _OneLine) -> yaml.MappingNode:
    return dumper.represent_mapping("tag:yaml.org,2002:map", value, flow_style=True)


_Dumper.add_representer(str, _represent_text)
_Dumper.add_representer(_OneLine, _represent_one_line)
_ONE_LINE_WIDTH = 100
_NO_WRAP = 2**31


def _dump(data: object) -> str:
    # No line wrapping: Notion wraps long lines on screen, and hard wraps are easy to break when editing.
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=_NO_WRAP)


def _asset_entry(asset: Asset) -> dict[str, object]:
    entry: dict[str, object] = {"key": asset.key, "kind": asset.kind.value, "prompt": asset.prompt}
    one_line = _OneLine(entry)
    if "\n" not in asset.prompt and len(_dump([one_line])) <= _ONE_LINE_WIDTH:
        return one_line
    return entry


def _scene_entry(scene: Scene) -> dict[str, object]:
    frame = _OneLine(environment=scene.frame.environment)
    if scene.frame.character is not None:
        frame["character"] = scene.frame.character
    if scene.frame.placement != "centre":
        frame["placement"] = scene.frame.placement
    if scene.frame.framing != "medium":
        frame["framing"] = scene.frame.framing
    return {
        "key": scene.key,
        "frame": frame,
        "motion": scene.motion,
        "narration": scene.narration,
        "sfx": scene.sfx,
    }


def storyboard_to_yaml(storyboard: Storyboard) -> str:
    """Stable, hand-editable YAML that `parse_storyboard_yaml` reads back to an equal storyboard."""
    head: dict[str, object] = {"title": storyboard.title, "atmosphere": storyboard.atmosphere}
    if storyboard.mood != DEFAULT_MOOD:
        head["mood"] = storyboard.mood
    if storyboard.description:
        head["description"] = storyboard.description
    return _dump(
        {
            **head,
            "assets": [_asset_entry(asset) for asset in storyboard.assets],
            "scenes": [_scene_entry(scene) for scene in storyboard.scenes],
        }
    )


# --- timing: Kling makes 5 s or 10 s clips; the assembly trims each clip to its narration.


def estimate_narration_seconds(text: str, words_per_minute: float = 150.0) -> float:
    """Spoken length from the word count; text without spaces between words (CJK) is underestimated."""
    if words_per_minute <= 0:
        raise ValueError(f"words_per_minute must be positive, got {words_per_minute}")
    return len(text.split()) * 60.0 / words_per_minute


def clip_duration_for(narration_seconds: float) -> int:
    """5 when the narration and a short tail fit in 5 s, else 10 (longer narration outlasts the clip)."""
    if narration_seconds < 0 or math.isnan(narration_seconds):
        raise ValueError(f"narration_seconds must be >= 0, got {narration_seconds}")
    short, long = CLIP_SECONDS
    return short if narration_seconds + CLIP_TAIL_SECONDS <= short else long
