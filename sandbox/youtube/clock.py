"""YouTube's clock: the sandbox's time plus `youtube_clock_offset_s`, and the Pacific quota day."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sandbox.config import SandboxConfig

# YouTube's daily quotas reset at midnight Pacific Time, daylight saving included.
PACIFIC = ZoneInfo("America/Los_Angeles")


def now(config: SandboxConfig) -> float:
    """Epoch seconds as YouTube sees them: a test moves the offset to reach the next quota day."""
    return time.time() + config.youtube_clock_offset_s


def pacific_day(at: float) -> str:
    return datetime.fromtimestamp(at, PACIFIC).date().isoformat()


def rfc3339(at: float) -> str:
    """`2026-12-08T17:00:00Z`, the form YouTube answers times in."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(value: str) -> float:
    """Epoch seconds of an RFC 3339 time with a zone (`Z` or `+01:00`); ValueError otherwise."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone")
    return parsed.timestamp()
