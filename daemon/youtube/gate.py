"""What the worker does around an upload: before it runs, the channel's sign-in and the project's
quota (an upload that cannot run now waits, with the reason on its page, and counts no attempt);
after it, the quota the script used, and a refused sign-in or a used-up quota remembered."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.channels import Channel, YouTubeQuota
from daemon.claim import Claimed
from daemon.errors import ConfigError
from daemon.settings import Settings
from daemon.youtube import accounts, quota
from daemon.youtube.quota import PACIFIC, Reservation

# How every reason an upload waits begins: the page shows such an item's error as its wait.
WAITS = "The upload waits"
# How soon an upload that waits looks again, when there are no settings (a worker without a gate).
RECHECK = timedelta(minutes=5)


def sign_in_command(channel_id: str) -> str:
    return f"nvd youtube-auth --channel {channel_id}"


# Why an upload waits, in a word (the `reason` label of nvd_upload_waits_total).
QUOTA, SIGN_IN, CLIENT, KEY, CHANNEL, NO_GATE = "quota", "sign_in", "client", "key", "channel", "no_gate"


@dataclass(frozen=True)
class Wait:
    """The upload cannot run now: when to look again, the reason its page shows, and its cause."""

    until: datetime
    reason: str
    cause: str = NO_GATE


@dataclass
class UploadGate:
    engine: AsyncEngine
    settings: Settings
    channels: Mapping[str, Channel]
    sizes: Mapping[str, YouTubeQuota]
    held: dict[str, Reservation] = field(default_factory=dict)  # by lease token

    @property
    def recheck(self) -> timedelta:
        return timedelta(seconds=self.settings.youtube_recheck_s)

    def quota_now(self, now: datetime) -> datetime:
        """The moment the quota day is read from (shifted by YOUTUBE_CLOCK_OFFSET_S in tests)."""
        return now + timedelta(seconds=self.settings.youtube_clock_offset_s)

    def until_reset(self, now: datetime) -> tuple[datetime, datetime]:
        """(the quota's reset, when to look again): the reset, or sooner (YOUTUBE_RECHECK_S), so a
        quota raised in the meantime, or a day that came early, is noticed."""
        reset = quota.next_reset(self.quota_now(now))
        return reset, min(now + (reset - self.quota_now(now)), now + self.recheck)

    def size(self, project: str) -> YouTubeQuota:
        return self.sizes.get(project) or self.sizes.get("default") or YouTubeQuota()

    async def before(self, c: Claimed, now: datetime) -> dict[str, str] | Wait:
        """The script's credentials (environment), with the quota reserved; or why it must wait."""
        channel = self.channels.get(c.channel_id)
        if channel is None or channel.youtube is None:
            return Wait(
                now + self.recheck,
                f"{WAITS}: channel {c.channel_id} has no youtube block in its file any more; put "
                "it back (and restart the daemon) to publish, or set Cancelled.",
                CHANNEL,
            )
        project = channel.youtube.project
        client = self.settings.youtube_client(project)
        if client is None:
            names = (
                "YOUTUBE_CLIENT_ID and YOUTUBE_CLIENT_SECRET"
                if project == "default"
                else f"YOUTUBE_CLIENT_ID_{_suffix(project)} and YOUTUBE_CLIENT_SECRET_{_suffix(project)}"
            )
            return Wait(
                now + self.recheck,
                f"{WAITS}: the daemon has no OAuth client for Google Cloud project {project}; "
                f"set {names} in its environment and restart it.",
                CLIENT,
            )
        key = self.settings.token_key.get_secret_value() if self.settings.token_key else None
        try:
            account = await accounts.load(self.engine, key, c.channel_id)
        except ConfigError as exc:
            return Wait(now + self.recheck, f"{WAITS}: {exc}.", KEY)
        if account is None or account.revoked_reason:
            why = "is not signed in to YouTube" if account is None else "lost its YouTube sign-in"
            detail = f" ({account.revoked_reason})" if account and account.revoked_reason else ""
            return Wait(
                now + self.recheck,
                f"{WAITS}: channel {c.channel_id} {why}{detail}. On the daemon's host run "
                f"`{sign_in_command(c.channel_id)}`; the upload goes on once it is signed in.",
                SIGN_IN,
            )
        size = self.size(project)
        uploads, units = quota.needs(size)
        held = await quota.reserve(self.engine, project, size, uploads, units, self.quota_now(now))
        if held is None:
            reset, again = self.until_reset(now)
            done, spent = await quota.used(self.engine, project, self.quota_now(now))
            return Wait(
                again,
                f"{WAITS} for YouTube's daily quota of project {project} ({done} of "
                f"{size.uploads_per_day} uploads and {spent:,} of {size.units_per_day:,} units used today): "
                f"it goes on after midnight Pacific time, {_when(reset)}.",
                QUOTA,
            )
        self.held[c.lease_token] = held
        return {
            "YOUTUBE_CLIENT_ID": client[0],
            "YOUTUBE_CLIENT_SECRET": client[1],
            "YOUTUBE_REFRESH_TOKEN": account.refresh_token,
        }

    async def after(
        self, c: Claimed, result: Mapping[str, Any] | None, error: Mapping[str, Any] | None, now: datetime
    ) -> Wait | None:
        """Books what the script used; a refused sign-in or quota makes the upload wait (returned)."""
        held = self.held.pop(c.lease_token, None)
        channel = self.channels.get(c.channel_id)
        project = (
            held.project if held else (channel.youtube.project if channel and channel.youtube else "default")
        )
        spent = ((result or {}).get("meta") or {}).get("quota")
        if held is not None and isinstance(spent, Mapping):
            used = quota.as_charged(
                self.size(project), int(spent.get("uploads", 0)), int(spent.get("units", 0))
            )
            await quota.settle(self.engine, held, *used, now)
        code = (error or {}).get("provider_code")
        if code == "invalid_grant":
            await accounts.mark_refused(
                self.engine, c.channel_id, "Google says the sign-in expired or was revoked", now
            )
            return Wait(
                now + self.recheck,
                f"{WAITS}: channel {c.channel_id}'s YouTube sign-in expired or was revoked. On "
                f"the daemon's host run `{sign_in_command(c.channel_id)}`; the upload goes on once it is "
                "signed in.",
                SIGN_IN,
            )
        if code == "quotaExceeded":
            await quota.use_up(self.engine, project, self.size(project), self.quota_now(now))
            reset, again = self.until_reset(now)
            return Wait(
                again,
                f"{WAITS}: YouTube says project {project}'s daily quota is used up; it goes on "
                f"after midnight Pacific time, {_when(reset)}.",
                QUOTA,
            )
        return None


def _suffix(project: str) -> str:
    return project.upper().replace("-", "_")


def _when(moment: datetime) -> str:
    local = moment.astimezone(PACIFIC)
    return f"{moment.strftime('%Y-%m-%d %H:%M')} UTC ({local.strftime('%H:%M %Z')})"
