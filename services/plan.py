"""The item DAG of one video: which items, their inputs, their dependencies and their input hashes.

An item's `input_hash` covers its own input and the hashes of the items whose *output* it consumes
(a Merkle chain), so editing scene 7 changes the hashes of scene 7's items and of the assembly only.
Gates hash what they guard, but a gate's hash is never passed on: approving again does not make the
items behind it new. Every item behind a gate depends on it directly, not only through the items
between: on a later pass those may be done already, and a waiting gate must still hold everything
after it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from services.errors import StoryboardError
from services.prompts import DEFAULT_KEY_COLOR, clip_prompt, image_prompt
from services.states import OPERATOR
from services.storyboard import Storyboard, clip_duration_for, estimate_narration_seconds

GATE_KINDS = ("storyboard_gate", "assets_gate", "final_gate")
# Which provider account an item kind uses; "operator" items are completed by a person (gates).
PROVIDER_OF = {
    "storyboard": "gemini",
    "asset": "gemini",
    "composite": "local",
    "clip": "kling",
    "narration": "elevenlabs",
    "sfx": "elevenlabs",
    "music": "elevenlabs",
    "assembly": "local",
    "upload": "youtube",
    "storyboard_gate": OPERATOR,
    "assets_gate": OPERATOR,
    "final_gate": OPERATOR,
}
SFX_TAIL_S = 0.6  # a little ambience after the last word of a scene
PLAN_VERSION = 2  # a new task's (PlanOptions.plan_version)
# A Short: its size, and its length limit (YouTube counts a vertical video under 3 minutes as a
# Short); the storyboard's estimate keeps this margin for the scenes' lead-ins and tails.
SHORTS_SIZE = (1080, 1920)
SHORTS_MAX_S = 180
SCENE_EDGES_S = 1.3
MUSIC_ITEM = "music_bed"  # the generated music's item key (music/bed.mp3)
MUSIC_EXTENSIONS = (".mp3", ".wav", ".m4a", ".ogg", ".flac")


@dataclass(frozen=True)
class MusicOptions:
    """Where a channel's music comes from: nowhere ("none"), ElevenLabs ("generated", in the
    channel's `style`) or its folder ("folder": `tracks`, (absolute path, version) pairs, a track in
    a sub-folder or with a file name naming a mood is picked for a storyboard of that mood)."""

    source: str = "none"
    style: str = ""
    tracks: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class UploadOptions:
    """The channel's YouTube defaults (daemon/channels.py's YouTube block); a page's own Visibility,
    Publish At, Tags and Description (the task request's `publish`) go over them."""

    privacy: str = "private"
    category_id: str = "22"
    tags: tuple[str, ...] = ()
    caption_language: str = "en"


@dataclass(frozen=True)
class PlanOptions:
    atmosphere_default: str = ""
    voice_id: str = "JBFqnCBsd6RMkjVDRZzb"
    voice_model: str = "eleven_multilingual_v2"
    voice_settings: Mapping[str, float] = field(default_factory=dict)
    gates: Mapping[str, bool] = field(
        default_factory=lambda: {"storyboard": True, "assets": False, "final": True}
    )
    key_color: str = DEFAULT_KEY_COLOR
    clip_model: str = "kling-v2-1"
    clip_mode: str = "std"
    scenes: int = 4
    captions: Mapping[str, Any] = field(default_factory=dict)  # the channel's caption style
    transitions: Mapping[str, float] = field(default_factory=dict)  # crossfade_s, fade_s
    # title_card, outro_s, outro_text, min_length_s: only those the channel sets
    bookends: Mapping[str, Any] = field(default_factory=dict)
    max_clip_slowdown: float | None = None  # the assembly's default when not given
    music: MusicOptions = MusicOptions()
    levels: Mapping[str, float] = field(default_factory=dict)  # voice_lufs, ambience_lu, music_lu, duck_db
    format: str = "landscape"  # or "shorts": 9:16 throughout
    youtube: UploadOptions | None = None  # published after the final review; None: ends at Ready
    # The task's plan version (task.plan_version): what a task planned by an earlier release keeps,
    # so an upgrade never changes the inputs of its paid items. 1: clip lengths estimated from the
    # words; 2: each clip waits for its narration and takes its length from it.
    plan_version: int = PLAN_VERSION

    @property
    def shorts(self) -> bool:
        return self.format == "shorts"


@dataclass(frozen=True)
class PlannedItem:
    key: str
    kind: str
    input: dict[str, Any]
    deps: tuple[str, ...]
    input_hash: str
    # What its budget reservation assumes where the input leaves the size to the script ("auto"
    # lengths): not an input, not hashed.
    reserve: Mapping[str, Any] = field(default_factory=dict)

    @property
    def provider(self) -> str:
        return PROVIDER_OF[self.kind]

    @property
    def is_gate(self) -> bool:
        return self.kind in GATE_KINDS


def _hash(kind: str, data: Mapping[str, Any], dep_hashes: Mapping[str, str]) -> str:
    canonical = json.dumps(
        {"kind": kind, "input": data, "deps": dict(sorted(dep_hashes.items()))},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class _Builder:
    def __init__(self) -> None:
        self.items: dict[str, PlannedItem] = {}

    def add(
        self,
        key: str,
        kind: str,
        data: dict[str, Any],
        deps: Iterable[str] = (),
        *,
        order_only: Iterable[str] = (),
        reserve: Mapping[str, Any] | None = None,
    ) -> PlannedItem:
        """`order_only`: items this one waits for, and reads, without taking their hash (a change
        to them does not make this item new)."""
        deps, waits = tuple(deps), tuple(order_only)
        hashed = {
            d: self.items[d].input_hash for d in deps if kind in GATE_KINDS or not self.items[d].is_gate
        }
        item = PlannedItem(key, kind, data, deps + waits, _hash(kind, data, hashed), dict(reserve or {}))
        self.items[key] = item
        return item


def _storyboard_items(
    request: Mapping[str, Any], given: Storyboard | None, options: PlanOptions, builder: _Builder
) -> None:
    """The storyboard item: given (by the operator or a file), or generated from the request."""
    if given is not None:
        content = given.model_dump(mode="json")
        builder.add("storyboard", "storyboard", {"given": True, "storyboard": content})
    else:
        builder.add(
            "storyboard",
            "storyboard",
            {
                "title": str(request.get("title", "")),
                "topic": str(request.get("topic", "")),
                "direction": str(request.get("direction", "")),
                "scenes": int(request.get("scenes", options.scenes)),
            },
        )
    builder.add(
        "storyboard_gate",
        "storyboard_gate",
        {"on": bool(options.gates.get("storyboard", True))},
        ["storyboard"],
    )


def build_plan(
    request: Mapping[str, Any],
    storyboard: Storyboard | None,
    options: PlanOptions,
    *,
    given: bool = False,
) -> list[PlannedItem]:
    """Every item of the task; without a storyboard yet, only the storyboard item and its gate.

    `given`: the storyboard came from the operator (or a file), so its item needs no generation and
    its hash is the storyboard's content; otherwise the item generates it from the request.
    """
    builder = _Builder()
    _storyboard_items(request, storyboard if given else None, options, builder)
    if storyboard is None:
        return list(builder.items.values())
    atmosphere = storyboard.atmosphere or options.atmosphere_default
    if options.shorts:
        _check_short(storyboard)
    for asset in storyboard.assets:
        isolated = asset.kind != "environment"
        builder.add(
            f"asset_{asset.key}",
            "asset",
            {
                "prompt": image_prompt(
                    atmosphere, asset.prompt, isolated=isolated, key_color=options.key_color
                ),
                "aspect_ratio": "1:1" if isolated else ("9:16" if options.shorts else "16:9"),
            },
            ["storyboard_gate"],
        )
    builder.add(
        "assets_gate",
        "assets_gate",
        {"on": bool(options.gates.get("assets", False))},
        [f"asset_{a.key}" for a in storyboard.assets],
    )
    media_keys: list[str] = []
    for scene in storyboard.scenes:
        media_keys += _scene_items(builder, scene, atmosphere, options)
    music = _music(builder, storyboard, options)
    builder.add(
        "assembly",
        "assembly",
        {
            "scenes": [s.key for s in storyboard.scenes],
            "title": storyboard.title,
            "captions": dict(options.captions),
            "transitions": dict(options.transitions),
            "levels": dict(options.levels),
            **({"bookends": dict(options.bookends)} if options.bookends else {}),
            **({"format": {"width": SHORTS_SIZE[0], "height": SHORTS_SIZE[1]}} if options.shorts else {}),
            **({"music": music} if music is not None else {}),
            **({"max_slowdown": options.max_clip_slowdown} if options.max_clip_slowdown else {}),
        },
        [*media_keys, *([MUSIC_ITEM] if music == MUSIC_ITEM else []), "storyboard_gate", "assets_gate"],
    )
    builder.add("final_gate", "final_gate", {"on": bool(options.gates.get("final", True))}, ["assembly"])
    if options.youtube is not None:
        # The cut it publishes ("cut": the assembly's hash) names the video on YouTube (the marker),
        # whatever the upload's own generation or choices: a retry never publishes that cut twice.
        cut = builder.items["assembly"].input_hash
        data = {**upload_input(request, storyboard, options.youtube), "cut": cut}
        builder.add(UPLOAD_ITEM, "upload", data, ["assembly", "final_gate"])
    return list(builder.items.values())


UPLOAD_ITEM = "upload"
TAGS_LIMIT = 500  # YouTube: the tags together, each counted with its separator


def upload_input(
    request: Mapping[str, Any], storyboard: Storyboard, youtube: UploadOptions
) -> dict[str, Any]:
    """What the upload publishes: the page's own choices (`publish`, read when the page was queued
    and again when the final review was approved) over the channel's defaults and the storyboard's
    description. The video, its thumbnail and its captions come from the assembly (a dependency)."""
    publish = request.get("publish") or {}
    tags = list(dict.fromkeys([*publish.get("tags", ()), *youtube.tags]))
    privacy = str(publish.get("visibility") or youtube.privacy)
    publish_at = publish.get("publish_at")
    if publish_at:
        privacy = "private"  # YouTube takes publishAt only on a private video
    return {
        "title": storyboard.title,  # what the video's title card and thumbnail show
        # YouTube refuses < and > in a description: the nearest quotation marks stand in.
        "description": str(publish.get("description") or storyboard.description or request.get("topic") or "")
        .replace("<", "‹")
        .replace(">", "›"),
        "tags": tags,
        "privacy": privacy,
        **({"publish_at": str(publish_at)} if publish_at else {}),
        "category_id": youtube.category_id,
        "caption_language": youtube.caption_language,
    }


def _check_short(storyboard: Storyboard) -> None:
    """A Short must stay under SHORTS_MAX_S: refused before anything is paid for."""
    seconds = sum(estimate_narration_seconds(s.narration) + SCENE_EDGES_S for s in storyboard.scenes)
    if seconds > SHORTS_MAX_S:
        raise StoryboardError(
            [
                f"scenes: the narration runs about {seconds:.0f} s, over the {SHORTS_MAX_S} s a Short may "
                "last; remove scenes or shorten their narration (or make the channel's format landscape)"
            ]
        )


def music_prompt(mood: str, style: str) -> str:
    """What ElevenLabs is asked to compose: the storyboard's mood in the channel's style, made to sit
    under a voice."""
    parts = [f"{mood.capitalize()} instrumental background music for a narrated documentary"]
    if style:
        parts.append(style)
    parts.append("steady and unobtrusive, no vocals, no sudden hits")
    return ", ".join(parts)


def music_seconds(storyboard: Storyboard) -> int:
    """What the music's reservation assumes: the narration's estimated length with room for the
    scenes' lead-ins and tails, within the API's bounds (its script measures the real one)."""
    spoken = sum(estimate_narration_seconds(s.narration) + 1.5 for s in storyboard.scenes)
    return max(15, min(300, math.ceil(spoken * 1.2 + 5)))


def pick_track(tracks: tuple[tuple[str, str], ...], mood: str, title: str) -> tuple[str, str] | None:
    """The folder's track for a storyboard: among those whose folder or file name names the mood
    (else among all), one chosen by the title, so a video keeps its track from pass to pass."""
    if not tracks:
        return None

    def names_mood(path: str) -> bool:
        where = PurePosixPath(path.lower())
        return mood in re.split(r"[^a-z]+", f"{where.parent.name} {where.stem}")

    fitting = sorted(t for t in tracks if names_mood(t[0])) or sorted(tracks)
    index = int(hashlib.sha256(title.encode()).hexdigest(), 16) % len(fitting)
    return fitting[index]


def _music(builder: _Builder, storyboard: Storyboard, options: PlanOptions) -> str | dict[str, str] | None:
    """The assembly's music: the generated music item's key (the item added here), a folder's
    track (its path and version, so replacing the file makes a new cut), or None."""
    source = options.music.source
    if source == "generated":
        # As long as the narrations measure together (its script adds them up): it waits for them
        # without taking their hashes, so new words never buy the music again (a longer cut loops it).
        builder.add(
            MUSIC_ITEM,
            "music",
            {"prompt": music_prompt(storyboard.mood, options.music.style), "duration": "auto"},
            ["storyboard_gate"],
            order_only=[f"narration_{scene.key}" for scene in storyboard.scenes],
            reserve={"seconds": music_seconds(storyboard)},
        )
        return MUSIC_ITEM
    if source == "folder":
        track = pick_track(options.music.tracks, storyboard.mood, storyboard.title)
        return None if track is None else {"track": track[0], "version": track[1]}
    return None


# The subject's height in the frame per framing (medium is create_composite.py's default).
FRAMING_SCALE = {"wide": 0.4, "medium": 0.55, "close": 0.8}


def _composition(frame: Any) -> dict[str, Any]:
    """The composite's placement and scale, only where the storyboard asks for other than the
    defaults: a plan made before composition existed keeps its inputs, so nothing is made again."""
    out: dict[str, Any] = {}
    if frame.character and frame.placement != "centre":
        out["placement"] = frame.placement
    if frame.character and frame.framing != "medium":
        out["scale"] = FRAMING_SCALE[frame.framing]
    return out


def _scene_items(builder: _Builder, scene: Any, atmosphere: str, options: PlanOptions) -> list[str]:
    s = scene.key
    character = scene.frame.character
    composite_deps = [f"asset_{scene.frame.environment}"] + ([f"asset_{character}"] if character else [])
    builder.add(
        f"composite_{s}",
        "composite",
        {
            "environment": scene.frame.environment,
            "character": character,
            "key_color": options.key_color,
            **_composition(scene.frame),
            **({"size": f"{SHORTS_SIZE[0]}x{SHORTS_SIZE[1]}"} if options.shorts else {}),
        },
        [*composite_deps, "storyboard_gate"],
    )
    seconds = estimate_narration_seconds(scene.narration)
    narration = builder.add(
        f"narration_{s}",
        "narration",
        {
            "text": scene.narration,
            "voice_id": options.voice_id,
            "model_id": options.voice_model,
            "settings": dict(options.voice_settings),
        },
        ["storyboard_gate"],
    )
    # Version 2: the clip and the bed wait for their narration and their scripts take their lengths
    # from the measured audio. The narration orders them without making them new: new words never
    # pay for a clip or a bed again (a longer scene is met by the assembly's slowdown and its loop of
    # the bed, which is asked for as a seamless loop).
    auto = options.plan_version >= 2
    builder.add(
        f"clip_{s}",
        "clip",
        {
            "prompt": clip_prompt(atmosphere, scene.motion),
            "duration": "auto" if auto else clip_duration_for(seconds),
            "model": options.clip_model,
            "mode": options.clip_mode,
        },
        [f"composite_{s}", "storyboard_gate", "assets_gate"],
        order_only=[narration.key] if auto else (),
        reserve={"duration": "10"} if auto else None,  # the longer clip's price
    )
    bed_s = round(min(30.0, max(1.0, seconds + SFX_TAIL_S)), 1)
    builder.add(
        f"sfx_{s}",
        "sfx",
        {"prompt": scene.sfx, "duration": "auto", "loop": True}
        if auto
        else {"prompt": scene.sfx, "duration": bed_s},
        ["storyboard_gate"],
        order_only=[narration.key] if auto else (),
        reserve={"seconds": bed_s} if auto else None,
    )
    return [f"clip_{s}", f"narration_{s}", f"sfx_{s}"]
