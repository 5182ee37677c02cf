"""YouTube's daily quota per Google Cloud project: an uploads bucket (videos.insert calls) and a units
bucket every other method shares, both reset at midnight Pacific Time.

A call is charged when it reaches its method, whatever it answers (Google bills invalid requests
too); a call that does not fit is refused with 403 quotaExceeded and costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox.youtube import clock
from sandbox.youtube.errors import QUOTA_MESSAGE, YouTubeError
from sandbox.youtube.state import YouTube

KIND = "youtube_quota"


@dataclass(frozen=True)
class Cost:
    uploads: int = 0
    units: int = 0

    def usage(self) -> dict[str, int]:
        return {"uploads": self.uploads, "units": self.units}


# The methods' costs (the quota cost table); a resumable chunk or status query costs nothing.
INSERT = Cost(uploads=1)
CAPTIONS_INSERT = Cost(units=400)
CAPTIONS_LIST = Cost(units=50)
THUMBNAILS_SET = Cost(units=50)
LIST = Cost(units=1)  # videos.list, channels.list, playlistItems.list


class Quota:
    def __init__(self, youtube: YouTube) -> None:
        self.youtube = youtube

    def charge(self, project: str, cost: Cost) -> None:
        """Takes `cost` from today's buckets, or raises quotaExceeded when it does not fit."""
        config = self.youtube.config
        day = clock.pacific_day(self.youtube.now())
        key = f"{project} {day}"
        with self.youtube.store.lock:
            used = self.youtube.store.get(KIND, key) or {
                "project": project,
                "day": day,
                "uploads": 0,
                "units": 0,
            }
            over_uploads = used["uploads"] + cost.uploads > config.youtube_uploads_per_day
            over_units = used["units"] + cost.units > config.youtube_units_per_day
            if over_uploads or over_units:
                raise YouTubeError(403, "quotaExceeded", QUOTA_MESSAGE)
            used["uploads"] += cost.uploads
            used["units"] += cost.units
            self.youtube.store.put(KIND, key, used)

    def listing(self) -> dict[str, Any]:
        """Per project and Pacific day: uploads and units used; with the limits and today's day."""
        config = self.youtube.config
        return {
            "today": clock.pacific_day(self.youtube.now()),
            "limits": {"uploads": config.youtube_uploads_per_day, "units": config.youtube_units_per_day},
            "usage": self.youtube.store.all(KIND),
        }
