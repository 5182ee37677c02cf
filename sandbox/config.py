"""Sandbox settings: latency scale, media quality, rate limits, provider concurrency, YouTube quota."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any


@dataclass
class SandboxConfig:
    # Real-world seconds are multiplied by this: 1/60 turns the APIs' minutes into seconds.
    latency_scale: float = 1 / 60
    # Kling: real-world seconds from submit to succeed (before scaling); processing starts at 10 %.
    kling_seconds: float = 240.0
    gemini_image_seconds: float = 30.0
    gemini_text_seconds: float = 20.0
    tts_seconds: float = 10.0
    sfx_seconds: float = 10.0
    music_seconds: float = 30.0
    # Tiny frames and short audio, for benchmarks that measure scheduling rather than FFmpeg.
    cheap_media: bool = False
    # Notion's average rate per integration and the burst a client may use up front.
    notion_rate: float = 3.0
    notion_burst: int = 10
    # The workspace's file upload cap (users/me -> bot.workspace_limits): 5 GiB on paid plans,
    # 5 MiB on free ones.
    notion_upload_cap: int = 5 * 1024**3
    # How long an unattached file upload lives (Notion: an hour).
    notion_upload_expiry_s: float = 3600.0
    # Per-account concurrency over which providers answer with their "too many" errors.
    kling_concurrency: int = 5
    elevenlabs_concurrency: int = 5
    # ElevenLabs' characters (credits) per period, as GET /v1/user/subscription reports them against
    # what the calls so far used (the Creator plan's 100,000 a month).
    elevenlabs_character_limit: int = 100_000
    # YouTube's two daily quota buckets per Google Cloud project (reset at midnight Pacific Time):
    # videos.insert calls, and the units every other method shares.
    youtube_uploads_per_day: int = 100
    youtube_units_per_day: int = 10_000
    # How long a resumable upload session lives after its POST.
    youtube_session_expiry_s: float = 86_400.0
    # Added to the clock YouTube reads for the quota day, publishAt and session expiry, so a test
    # can step into the next Pacific day.
    youtube_clock_offset_s: float = 0.0
    # The channel the sandbox's Google account consents as (one channel per title).
    youtube_channel_title: str = "Sandbox Channel"
    # Real-world seconds of processing before the final chunk is answered (before scaling).
    youtube_seconds: float = 0.0
    # Notion webhooks: the subscription's URL (a daemon's POST /notion/webhook); empty: none. Setting
    # it sends the verification request, then every page change made through the API is an event
    # signed with credentials.json's notion_webhook_token (sandbox/notion/webhooks.py).
    notion_webhook_url: str = ""

    def scaled(self, real_seconds: float) -> float:
        return max(0.0, real_seconds * self.latency_scale)

    def update(self, values: dict[str, Any]) -> None:
        known = {f.name: f.type for f in fields(self)}
        for key, value in values.items():
            if key not in known:
                raise ValueError(f"unknown sandbox setting {key!r}; known: {', '.join(sorted(known))}")
            current = getattr(self, key)
            setattr(self, key, type(current)(value))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: Path) -> SandboxConfig:
        config = cls()
        if path.exists():
            config.update(json.loads(path.read_text()))
        return config
