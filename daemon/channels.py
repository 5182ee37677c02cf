"""Channel files (`config/channels/*.yaml`) and provider limits, validated at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from daemon.errors import ConfigError

ChannelId = Annotated[str, Field(pattern=r"^[a-z0-9_-]+$", min_length=1, max_length=64)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NotionBinding(_Strict):
    data_source_id: str = Field(min_length=1)
    # The Channel select value that marks this channel's pages when channels share a data source.
    channel_option: str | None = None


class VoiceSettings(_Strict):
    stability: float = Field(default=0.5, ge=0, le=1)
    similarity_boost: float = Field(default=0.75, ge=0, le=1)
    style: float = Field(default=0.0, ge=0, le=1)
    speed: float = Field(default=1.0, ge=0.7, le=1.2)


class Voice(_Strict):
    voice_id: str = Field(pattern=r"^[A-Za-z0-9]{10,40}$")
    model_id: str = "eleven_multilingual_v2"
    settings: VoiceSettings = Field(default_factory=VoiceSettings)


class Gates(_Strict):
    storyboard: bool = True
    assets: bool = False
    final: bool = True


class Budgets(_Strict):
    per_video_usd: float = Field(default=12.0, gt=0)
    per_day_usd: float = Field(default=60.0, gt=0)


class Captions(_Strict):
    """Burned-in captions' look (sizes are shares of the frame's height); the soft track and the
    .srt for the upload are made either way."""

    burn_in: bool = True
    size: float = Field(default=0.05, ge=0.02, le=0.15)
    colour: str = Field(default="#FFFFFF", pattern=r"^#[0-9A-Fa-f]{6}$")
    outline_colour: str = Field(default="#000000", pattern=r"^#[0-9A-Fa-f]{6}$")
    outline: float = Field(default=0.003, ge=0, le=0.02)
    position: Literal["bottom", "middle", "top"] = "bottom"
    language: str = Field(default="eng", pattern=r"^[a-z]{3}$")  # ISO 639-2


class Transitions(_Strict):
    """How scenes meet (a crossfade of picture and sound, 0: hard cuts) and how the video begins
    and ends (a fade from and to black)."""

    crossfade_s: float = Field(default=0.4, ge=0, le=1)
    fade_s: float = Field(default=0.5, ge=0, le=2)


class Channel(_Strict):
    id: ChannelId
    name: str = Field(min_length=1)
    notion: NotionBinding | None = None
    voice: Voice
    atmosphere: str = ""
    scenes: int = Field(default=4, ge=1, le=60)
    gates: Gates = Field(default_factory=Gates)
    weight: int = Field(default=1, ge=1, le=100)
    budgets: Budgets = Field(default_factory=Budgets)
    sfx_level_db: float = Field(default=-18.0, le=0)
    captions: Captions = Field(default_factory=Captions)
    transitions: Transitions = Field(default_factory=Transitions)
    # A clip shorter than its narration plays up to this much slower before its last frame holds.
    max_clip_slowdown: float = Field(default=1.5, ge=1, le=3)


class ProviderLimits(_Strict):
    """Max concurrent items per provider account, across every daemon on the DB."""

    gemini: int = Field(default=4, ge=1)
    kling: int = Field(default=5, ge=1)
    elevenlabs: int = Field(default=5, ge=1)
    local: int = Field(default=2, ge=1)

    def as_dict(self) -> dict[str, int]:
        return {
            "gemini": self.gemini,
            "kling": self.kling,
            "elevenlabs": self.elevenlabs,
            "local": self.local,
        }


def _describe(exc: ValidationError, path: Path) -> str:
    lines = [f"{path}: invalid channel configuration"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {where}: {err['msg']}{_fix_hint(err)}")
    return "\n".join(lines)


def _fix_hint(err: Any) -> str:
    kind = err.get("type", "")
    if kind == "missing":
        return " (add this field)"
    if kind == "extra_forbidden":
        return " (remove it or check its spelling)"
    if kind == "string_pattern_mismatch":
        return f" (it must match {err.get('ctx', {}).get('pattern')})"
    return ""


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}); fix the syntax") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc}); save it as UTF-8") from exc
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot be read ({exc.strerror}); check the file and its permissions"
        ) from exc


def load_channel(path: Path) -> Channel:
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of channel settings (id, name, voice, ...)")
    try:
        channel = Channel.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from exc
    if channel.id != path.stem:
        raise ConfigError(
            f"{path}: id '{channel.id}' differs from the file name; rename the file to "
            f"{channel.id}.yaml or change id to '{path.stem}'"
        )
    return channel


def load_channels(folder: Path) -> dict[str, Channel]:
    if not folder.is_dir():
        raise ConfigError(
            f"{folder}: the channel folder does not exist; set CHANNELS_DIR or create it "
            "with one <channel>.yaml per channel"
        )
    channels = {}
    for path in sorted(folder.glob("*.yaml")):
        channel = load_channel(path)
        channels[channel.id] = channel
    _check_shared_sources(channels)
    return channels


def _check_shared_sources(channels: dict[str, Channel]) -> None:
    by_source: dict[str, list[Channel]] = {}
    for channel in channels.values():
        if channel.notion is not None:
            by_source.setdefault(channel.notion.data_source_id, []).append(channel)
    for source, sharing in by_source.items():
        if len(sharing) > 1 and any(c.notion and not c.notion.channel_option for c in sharing):
            names = ", ".join(c.id for c in sharing)
            raise ConfigError(
                f"channels {names} share Notion data source {source}: give each one "
                "notion.channel_option (its value of the Channel select)"
            )


def load_provider_limits(path: Path) -> ProviderLimits:
    if not path.exists():
        return ProviderLimits()
    data = _read_yaml(path) or {}
    try:
        return ProviderLimits.model_validate(data.get("max_concurrent", {}))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path).replace("channel configuration", "provider limits")) from exc
