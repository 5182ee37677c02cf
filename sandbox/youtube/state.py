"""YouTube's state: channels, videos, upload sessions and caption tracks as store documents (so a
restarted sandbox keeps them), the received bytes under the media folder, and the clock."""

from __future__ import annotations

import secrets
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.media import media_path
from sandbox.youtube import clock

if TYPE_CHECKING:
    from sandbox.app import Sandbox
    from sandbox.config import SandboxConfig

CHANNEL = "youtube_channel"
VIDEO = "youtube_video"
SESSION = "youtube_session"
CAPTION = "youtube_caption"
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


class YouTube:
    def __init__(self, app: Sandbox) -> None:
        self.app = app
        self.store = app.store
        # Serialises changes to sessions and videos: a chunk is written and counted as one step.
        self.lock = threading.RLock()
        self.dir = media_path(app, "youtube")
        (self.dir / "captions").mkdir(parents=True, exist_ok=True)

    @property
    def config(self) -> SandboxConfig:
        return self.app.config

    def now(self) -> float:
        return clock.now(self.app.config)

    @property
    def api_base(self) -> str:
        """What a client's YOUTUBE_BASE_URL is: the stand-in for https://www.googleapis.com."""
        return f"{self.app.base_url}/youtube"

    def watch_url(self, video_id: str) -> str:
        return f"{self.api_base}/watch?v={video_id}"

    # Channels ------------------------------------------------------------------------------------
    def channel_for(self, title: str) -> dict[str, Any]:
        """The channel of that title, made on its first consent: one Google account, one channel."""
        with self.store.lock:
            for channel in self.store.iter_raw(CHANNEL):
                if channel["title"] == title:
                    return dict(channel)
            channel = {"id": "UC" + new_id(22), "title": title, "created": clock.rfc3339(self.now())}
            self.store.put(CHANNEL, channel["id"], channel)
            return channel

    def channel(self, channel_id: str) -> dict[str, Any] | None:
        return self.store.get(CHANNEL, channel_id)

    # Videos --------------------------------------------------------------------------------------
    def video(self, video_id: str) -> dict[str, Any] | None:
        return self.store.get(VIDEO, video_id)

    def complete_video(self, video_id: str) -> dict[str, Any] | None:
        """A video whose upload finished: the only kind the API knows of."""
        video = self.video(video_id)
        return video if video is not None and video["complete"] else None

    def put_video(self, video: dict[str, Any]) -> None:
        self.store.put(VIDEO, video["id"], video)

    def videos(self) -> list[dict[str, Any]]:
        return self.store.all(VIDEO)

    def new_video_id(self) -> str:
        with self.store.lock:
            while True:
                video_id = new_id(11)
                if self.video(video_id) is None:
                    return video_id

    # Files ---------------------------------------------------------------------------------------
    def video_file(self, video_id: str) -> Path:
        """The received bytes, complete or not (the video document says which)."""
        return self.dir / f"{video_id}.video"

    def thumbnail_file(self, video_id: str) -> Path:
        return self.dir / f"{video_id}.thumbnail"

    def caption_file(self, caption_id: str) -> Path:
        return self.dir / "captions" / caption_id


def new_id(length: int) -> str:
    """Random characters of YouTube's id alphabet ([A-Za-z0-9_-])."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))
