"""From a claimed item to a script command line, and to the item's final output path."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

from daemon.claim import Claimed
from daemon.errors import PlanError
from services.paths import item_output
from services.plan import MUSIC_ITEM

EXTENSIONS = {
    "storyboard": ".json",
    "asset": ".png",
    "composite": ".png",
    "clip": ".mp4",
    "narration": ".mp3",
    "sfx": ".mp3",
    "music": ".mp3",
    "assembly": ".mp4",
    "upload": ".json",  # what was published: the video's id, URL, privacy, publish time
}
SCRIPTS = {
    "storyboard": "generate_storyboard.py",
    "asset": "generate_asset.py",
    "composite": "create_composite.py",
    "clip": "generate_video.py",
    "narration": "generate_audio.py",
    "sfx": "generate_sound_effects.py",
    "music": "generate_music.py",
    "assembly": "assemble_video.py",
    "upload": "upload_youtube.py",
}


def final_path(kind: str, key: str, channel: str, slug: str) -> str:
    """The item's output, relative to the workspace (the layout: services/paths.py)."""
    if kind not in EXTENSIONS:
        raise PlanError(f"item kind {kind!r} has no output")
    return item_output(kind, key, channel, slug, EXTENSIONS[kind])


def build_command(c: Claimed, scripts_dir: Path, workspace: Path, *, kling_poll_s: float = 10.0) -> list[str]:
    """The argv of the item's script; inputs are the recorded outputs of its dependencies."""
    out = str(workspace / c.attempt_output)
    head = [sys.executable, str(scripts_dir / SCRIPTS[c.kind])]
    kind = c.kind
    if kind == "storyboard":
        return [
            *head,
            _text("--title", c.input["title"]),
            _text("--topic", c.input["topic"]),
            _text("--direction", c.input["direction"]),
            "--scenes",
            str(c.input["scenes"]),
            "--output",
            out,
        ]
    if kind == "asset":
        return [
            *head,
            _text("--prompt", c.input["prompt"]),
            "--aspect-ratio",
            c.input["aspect_ratio"],
            "--output",
            out,
        ]
    if kind == "composite":
        return head + _composite_args(c, workspace) + ["--output", out]
    if kind == "clip":
        return head + _clip_args(c, workspace, kling_poll_s) + ["--output", out]
    if kind == "narration":
        return head + _narration_args(c) + ["--output", out]
    if kind in ("sfx", "music"):
        return [*head, _text("--prompt", c.input["prompt"]), *_length_args(c, workspace), "--output", out]
    if kind == "assembly":
        return head + _assembly_args(c, workspace) + ["--output", out]
    if kind == "upload":
        return head + _upload_args(c, workspace) + ["--output", out]
    raise PlanError(f"item kind {kind!r} has no script")


def _text(flag: str, value: str) -> str:
    """Free text as one `--flag=value` argument: as a separate argument, text that starts with '-'
    and has no space ('-30°C', '-Hush!') is taken by argparse for an option, and the script fails."""
    return f"{flag}={value}"


def _dep(c: Claimed, key: str, workspace: Path) -> str:
    path = c.deps.get(key)
    if path is None:
        raise PlanError(f"{c.key} needs the output of {key}, which has none recorded")
    return str(workspace / path)


def _length_args(c: Claimed, workspace: Path) -> list[str]:
    """A bed's or the music's length: as planned, or "auto" with the narrations it is measured from
    (a bed's scene's; every narration, for the music)."""
    args = ["--duration", str(c.input["duration"])]
    if c.input["duration"] == "auto":
        if c.kind == "sfx":
            keys = [f"narration_{c.key.split('_', 1)[1]}"]
        else:
            keys = sorted(k for k in c.deps if k.startswith("narration_"))
        for key in keys:
            args += ["--narration", _dep(c, key, workspace)]
    if c.input.get("loop"):
        args.append("--loop")
    return args


def upload_marker(channel: str, slug: str, cut: str) -> str:
    """The tag that finds a project's cut among the channel's uploads: the same for every attempt,
    pass and change of title or visibility, so no retry publishes that cut a second time."""
    return "nvd-" + hashlib.sha256(f"{channel}/{slug}/{cut}".encode()).hexdigest()[:12]


def _upload_args(c: Claimed, workspace: Path) -> list[str]:
    """The final cut with its thumbnail and captions (the assembly's sidecars, where it made them),
    and what the page and the channel chose. The marker (a tag) lets a retry that lost its upload
    session find the video among the channel's uploads instead of publishing it twice."""
    video = _dep(c, "assembly", workspace)
    data = c.input
    args = [
        "--video",
        video,
        _text("--title", data["title"]),
        _text("--description", data["description"]),
        "--privacy",
        data["privacy"],
        "--category-id",
        data["category_id"],
        "--caption-language",
        data["caption_language"],
        "--marker",
        upload_marker(c.channel_id, c.project_slug, data["cut"]),
    ]
    for tag in data.get("tags", ()):
        args.append(_text("--tag", tag))
    if data.get("publish_at"):
        args += ["--publish-at", data["publish_at"]]
    for flag, suffix in (("--thumbnail", ".thumbnail.jpg"), ("--captions", ".srt")):
        if Path(video + suffix).exists():
            args += [flag, video + suffix]
    if c.resume:
        args += ["--resume-job", c.resume]
    return args


def _composite_args(c: Claimed, workspace: Path) -> list[str]:
    args = [
        "--environment",
        _dep(c, f"asset_{c.input['environment']}", workspace),
        "--key-color",
        c.input["key_color"],
    ]
    if c.input.get("character"):
        args += ["--character", _dep(c, f"asset_{c.input['character']}", workspace)]
    if "placement" in c.input:
        args += ["--character-position", c.input["placement"]]
    if "scale" in c.input:
        args += ["--character-scale", str(c.input["scale"])]
    if "size" in c.input:
        args += ["--size", c.input["size"]]
    return args


def _clip_args(c: Claimed, workspace: Path, poll_s: float) -> list[str]:
    scene = c.key.split("_", 1)[1]
    args = [
        "--image",
        _dep(c, f"composite_{scene}", workspace),
        _text("--prompt", c.input["prompt"]),
        "--duration",
        str(c.input["duration"]),
        *(["--narration", _dep(c, f"narration_{scene}", workspace)] if c.input["duration"] == "auto" else []),
        "--model",
        c.input["model"],
        "--mode",
        c.input["mode"],
        "--external-id",
        c.idempotency_key,
        "--poll-interval",
        str(poll_s),
    ]
    if c.resume:
        args += ["--resume-job", c.resume]
    return args


def _narration_args(c: Claimed) -> list[str]:
    args = [
        _text("--text", c.input["text"]),
        "--voice-id",
        c.input["voice_id"],
        "--model-id",
        c.input["model_id"],
    ]
    names = {
        "stability": "--stability",
        "similarity_boost": "--similarity-boost",
        "style": "--style",
        "speed": "--speed",
    }
    for name, flag in names.items():
        if name in c.input.get("settings", {}):
            args += [flag, str(c.input["settings"][name])]
    return args


def _assembly_args(c: Claimed, workspace: Path) -> list[str]:
    args: list[str] = []
    for scene in c.input["scenes"]:
        args += [
            "--scene",
            _dep(c, f"clip_{scene}", workspace),
            _dep(c, f"narration_{scene}", workspace),
            _dep(c, f"sfx_{scene}", workspace),
        ]
    args += _caption_args(c.input.get("captions", {}))
    args += _level_args(c, workspace)
    if c.input.get("title"):
        args.append(_text("--title", c.input["title"]))
    edges = c.input.get("transitions", {})
    if "crossfade_s" in edges:
        args += ["--crossfade", str(edges["crossfade_s"])]
    if "fade_s" in edges:
        args += ["--fade", str(edges["fade_s"])]
    if "max_slowdown" in c.input:
        args += ["--max-slowdown", str(c.input["max_slowdown"])]
    if "format" in c.input:
        args += ["--width", str(c.input["format"]["width"]), "--height", str(c.input["format"]["height"])]
    return args + _bookend_args(c.input.get("bookends", {}))


def _bookend_args(bookends: dict[str, Any]) -> list[str]:
    args = ["--title-card"] if bookends.get("title_card") else []
    if "outro_s" in bookends:
        args += ["--outro", str(bookends["outro_s"])]
    if bookends.get("outro_text"):
        args.append(_text("--outro-text", bookends["outro_text"]))
    if "min_length_s" in bookends:
        args += ["--min-length", str(bookends["min_length_s"])]
    return args


def _level_args(c: Claimed, workspace: Path) -> list[str]:
    """The mix's levels and its music: the music item's output, or the channel folder's track the
    plan picked (a plan made before music has neither, and its beds keep the script's levels)."""
    args: list[str] = []
    flags = {
        "voice_lufs": "--loudness",
        "ambience_lu": "--ambience-lu",
        "music_lu": "--music-lu",
        "duck_db": "--duck-db",
    }
    levels = c.input.get("levels", {})
    for name, flag in flags.items():
        if name in levels:
            args += [flag, str(levels[name])]
    music = c.input.get("music")
    if music == MUSIC_ITEM:
        args += ["--music", _dep(c, MUSIC_ITEM, workspace)]
    elif isinstance(music, dict):
        args += ["--music", str(music["track"])]
    return args


def _caption_args(style: dict[str, Any]) -> list[str]:
    """The channel's caption style (a plan made before captions has none: the script's defaults)."""
    args: list[str] = []
    if "burn_in" in style:
        args.append("--burn-captions" if style["burn_in"] else "--no-burn-captions")
    flags = {
        "size": "--caption-size",
        "colour": "--caption-colour",
        "outline_colour": "--caption-outline-colour",
        "outline": "--caption-outline",
        "position": "--caption-position",
        "weight": "--caption-weight",
        "language": "--caption-language",
    }
    for name, flag in flags.items():
        if name in style:
            args += [flag, str(style[name])]
    return args
