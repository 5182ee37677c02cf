"""Retention: the intermediate files of videos done long enough ago, found and removed.

A video is done when its task is (the page shows Ready, Published or Scheduled). Its attempts and
temp files go at any age; past its channel's retention (`retention_days`, else RETENTION_DAYS) its
images, frames, clips, narration, ambience beds, music and Notion previews go too; the final cut
only when asked (`cleanup --finals`). The items whose files go are marked `removed_at` first, in a
transaction that checks the task is still done: a new pass then knows they are gone and asks before
buying them again (daemon/rebuy.py). A file is unlinked only after that commit, and only if it was
not written since the scan. A video whose Notion page may still need its files (its board not yet
written as the video now is, its files not all uploaded, a write of the page queued or unanswered)
keeps them until a later run: with RETENTION_DAYS=0 a video just done is not stripped before its
page shows it.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from daemon.channels import Channel
from daemon.db.models import Item, Outbox, Task
from daemon.notion.board import board_value
from daemon.notion.outbox import BOARD_BODY
from daemon.project_files import GROUPS, Found, leftovers, prune_empty, remove
from services.states import ItemState, TaskState


@dataclass(frozen=True)
class Policy:
    """How long done videos keep their intermediate files, per channel (None: for ever)."""

    default_days: int | None
    channels: Mapping[str, Channel]
    override_days: int | None = None  # cleanup --older-than-days: every channel alike
    only_channel: str | None = None
    finals: bool = False

    def days_for(self, channel_id: str) -> int | None:
        if self.override_days is not None:
            return self.override_days
        channel = self.channels.get(channel_id)
        own = channel.retention_days if channel is not None else None
        if own == "never":
            return None
        return own if own is not None else self.default_days

    @property
    def configured(self) -> bool:
        """Whether any channel has a retention: without one the daemon's job does not run."""
        if self.override_days is not None or self.default_days is not None:
            return True
        return any(isinstance(c.retention_days, int) for c in self.channels.values())


@dataclass(frozen=True)
class Removal:
    """What goes from one done video (the files as the scan found them)."""

    task_id: int
    channel: str
    slug: str
    title: str
    finished_at: datetime
    files: tuple[Found, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def groups(self) -> dict[str, tuple[int, int]]:
        """(files, bytes) per group, in the project's layout order."""
        out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for f in self.files:
            out[f.group][0] += 1
            out[f.group][1] += f.size
        order = {group: i for i, group in enumerate(GROUPS)}
        return {g: (out[g][0], out[g][1]) for g in sorted(out, key=lambda g: order.get(g, len(order)))}


@dataclass
class Removed:
    """What a cleanup actually removed from one video."""

    removal: Removal
    files: int = 0
    size: int = 0
    skipped: str | None = None  # why nothing was removed (a new pass started, the page not written)
    marked: list[str] = field(default_factory=list)  # items now marked removed_at


async def scan(engine: AsyncEngine, workspace: Path, policy: Policy, now: datetime) -> list[Removal]:
    """Every done video with something to remove, oldest task first; nothing is changed."""
    query = select(
        Task.id,
        Task.channel_id,
        Task.project_slug,
        Task.title,
        Task.updated_at,
        Task.notion_page_id,
        Task.storyboard,
    ).where(Task.state == TaskState.DONE)
    if policy.only_channel is not None:
        query = query.where(Task.channel_id == policy.only_channel)
    async with engine.connect() as conn:
        done = (await conn.execute(query.order_by(Task.id))).all()
        tasks = [t for t in done if not await page_needs_files(conn, t, workspace)]

    def walk() -> list[Removal]:
        out = []
        for task in tasks:
            days = policy.days_for(task.channel_id)
            aged = days is not None and task.updated_at <= now - timedelta(days=days)
            files = leftovers(workspace, task.channel_id, task.project_slug, old=aged, finals=policy.finals)
            if files:
                out.append(
                    Removal(
                        task.id,
                        task.channel_id,
                        task.project_slug,
                        task.title,
                        task.updated_at,
                        tuple(files),
                    )
                )
        return out

    # A walk of many folders is file system work: off the event loop the workers' heartbeats share.
    return await asyncio.to_thread(walk)


async def apply(
    engine: AsyncEngine,
    workspace: Path,
    removals: Sequence[Removal],
    now: datetime,
    stop: asyncio.Event | None = None,
) -> list[Removed]:
    """Marks each video's items whose files go, then removes the files; a video that is no longer
    done as it was scanned (a new pass started) is skipped whole. `stop` ends it between videos."""
    done = []
    for removal in removals:
        if stop is not None and stop.is_set():
            break
        result = Removed(removal)
        outputs = {f.relative for f in removal.files}
        async with engine.begin() as conn:
            task = (
                await conn.execute(
                    select(Task.id, Task.state, Task.updated_at, Task.notion_page_id, Task.storyboard)
                    .where(Task.id == removal.task_id)
                    .with_for_update()
                )
            ).first()
            if task is None or task.state != TaskState.DONE or task.updated_at != removal.finished_at:
                result.skipped = "a new pass started since the scan"
                done.append(result)
                continue
            if await page_needs_files(conn, task, workspace):
                result.skipped = "its Notion page is still being written: kept until a later run"
                done.append(result)
                continue
            items = (
                await conn.execute(
                    select(Item.id, Item.key, Item.output_path).where(
                        Item.task_id == removal.task_id,
                        Item.state == ItemState.SUCCEEDED,
                        Item.removed_at.is_(None),
                    )
                )
            ).all()
            going = [i for i in items if i.output_path in outputs]
            if going:
                await conn.execute(
                    update(Item).where(Item.id.in_([i.id for i in going])).values(removed_at=now)
                )
            result.marked = sorted(i.key for i in going)

        def unlink(removal: Removal = removal, result: Removed = result) -> None:
            for found in removal.files:
                if remove(workspace, found):
                    result.files += 1
                    result.size += found.size
            prune_empty(workspace, removal.channel, removal.slug)

        await asyncio.to_thread(unlink)
        done.append(result)
    return done


async def page_needs_files(conn: AsyncConnection, task: Any, workspace: Path) -> bool:
    """Whether the task's Notion page may still need the video's files. The board (images, frames,
    clips, the final cut; daemon/notion/board.py) is written only once all its files are uploaded,
    so a board written as the video now is needs none of them. Until then they are needed: the
    board not yet queued as it is now (the sync has not seen the video done), or queued with its
    files still uploading; and a write of the page queued or unanswered (an unanswered one has every
    value of the page written again, the board with its files too: daemon/notion/outbox.py)."""
    if task.notion_page_id is None:
        return False
    page = str(task.notion_page_id)
    waiting = await conn.scalar(
        select(Outbox.id)
        .where(
            Outbox.page_id == page,
            or_(Outbox.version > Outbox.sent_version, Outbox.recheck_at.is_not(None)),
        )
        .limit(1)
    )
    if waiting is not None:
        return True
    board = await board_value(conn, task, workspace)
    if board is None:
        return False
    written = await conn.scalar(
        select(Outbox.sent_value).where(Outbox.page_id == page, Outbox.property == BOARD_BODY)
    )
    return bool(written != board)
