"""Budgets and weights follow the channel files while the daemon runs.

An operator told "Budget reached" raises the budget in the channel's YAML file; the daemon reads
the folder again when a file changes, and the waiting video goes on within seconds, with no
restart. Only `budgets` and `weight` apply at once; any other change (a new channel, a Notion
binding, gates, voice) is logged as needing a restart. A file that no longer parses is logged
with the field and the fix, and the last good settings stay.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from daemon.budget import Budget
from daemon.channels import Channel, load_channels
from daemon.claim import ClaimPolicy
from daemon.errors import ConfigError
from services.pricing import to_micros

CHECK_S = 5.0  # how often the folder's files are looked at (a stat each, no reading)
LIVE_FIELDS = frozenset({"budgets", "weight"})


def budget_of(channel: Channel) -> Budget:
    """In whole micro-dollars, rounded as costs are (int(2.01 * 1_000_000) is 2_009_999)."""
    b = channel.budgets
    return Budget(to_micros(Decimal(str(b.per_video_usd))), to_micros(Decimal(str(b.per_day_usd))))


def with_channels(policy: ClaimPolicy, channels: dict[str, Channel]) -> ClaimPolicy:
    """The policy with the channels' weights and budgets."""
    return replace(
        policy,
        weights={c.id: c.weight for c in channels.values()},
        budgets={c.id: budget_of(c) for c in channels.values()},
    )


Signature = tuple[tuple[str, int, int], ...]


def files_signature(folder: Path) -> Signature:
    """Name, mtime and size of each channel file: taken before the files are read, so that an edit
    made while they are being read is seen as a change."""
    found = []
    with contextlib.suppress(OSError):
        for path in sorted(folder.glob("*.yaml")):
            with contextlib.suppress(OSError):
                st = path.stat()
                found.append((path.name, st.st_mtime_ns, st.st_size))
    return tuple(found)


class ChannelWatch:
    def __init__(
        self, folder: Path, channels: dict[str, Channel], policy: ClaimPolicy, log: Any, seen: Signature
    ) -> None:
        """`seen`: the files' signature from before `channels` were read from them."""
        self.folder = folder
        self.channels = dict(channels)
        self.policy = policy
        self.log = log
        self.seen = seen

    def check(self) -> bool:
        """Reads the folder again if a file changed; True when budgets or weights changed."""
        now = files_signature(self.folder)
        if now == self.seen:
            return False
        self.seen = now
        try:
            fresh = load_channels(self.folder)
        except ConfigError as exc:
            self.log.error(
                "channel_files_invalid_kept_previous",
                reason=str(exc),
                action="fix the file; the daemon reads it again when it changes",
            )
            return False
        changed = []
        for cid in sorted(set(fresh) | set(self.channels)):
            old, new = self.channels.get(cid), fresh.get(cid)
            if old is None or new is None:
                self.log.warning("channel_change_needs_restart", channel=cid, change="added or removed")
                continue
            fields = {name for name in Channel.model_fields if getattr(old, name) != getattr(new, name)}
            if fields - LIVE_FIELDS:
                self.log.warning(
                    "channel_change_needs_restart", channel=cid, fields=sorted(fields - LIVE_FIELDS)
                )
            if fields & LIVE_FIELDS:
                changed.append(cid)
                self.channels[cid] = self.channels[cid].model_copy(
                    update={name: getattr(new, name) for name in LIVE_FIELDS}
                )
        if not changed:
            return False
        self.policy = with_channels(self.policy, self.channels)
        self.log.info(
            "channel_budgets_reloaded",
            channels=changed,
            budgets={cid: self.channels[cid].budgets.model_dump() for cid in changed},
            weights={cid: self.channels[cid].weight for cid in changed},
        )
        return True

    async def run(self, stop: asyncio.Event, on_change: Callable[[ClaimPolicy], Awaitable[None]]) -> None:
        """Runs beside the worker in one task group: nothing here may raise, or the worker stops."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), CHECK_S)
            if stop.is_set():
                break
            try:
                if self.check():
                    await on_change(self.policy)
            except Exception as exc:
                self.log.error("channel_files_check_failed", error=str(exc))
