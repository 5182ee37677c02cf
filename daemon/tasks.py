"""Tasks: create or re-plan a task, expand its plan once the storyboard exists, approve gates."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from daemon.channels import Channel
from daemon.dag import lock_task, refresh
from daemon.db.engine import returned_id
from daemon.db.models import Item, Ledger, Task
from daemon.errors import PlanError
from daemon.lease import free_slot
from daemon.notion.outbox import add_comment
from daemon.plan_store import apply_plan
from daemon.rebuy import MediaRemoved
from daemon.workspace import write_atomic
from services import paths
from services.errors import ServiceError
from services.plan import (
    MUSIC_EXTENSIONS,
    PLAN_VERSION,
    MusicOptions,
    PlannedItem,
    PlanOptions,
    UploadOptions,
    build_plan,
)
from services.pricing import Pricing, to_micros
from services.states import ItemState, TaskState
from services.storyboard import Storyboard, parse_storyboard


def plan_options(channel: Channel) -> PlanOptions:
    return PlanOptions(
        atmosphere_default=channel.atmosphere,
        voice_id=channel.voice.voice_id,
        voice_model=channel.voice.model_id,
        voice_settings=channel.voice.settings.model_dump(),
        gates=channel.gates.model_dump(),
        scenes=channel.scenes,
        captions=caption_style(channel),
        transitions=channel.transitions.model_dump(),
        bookends=channel.bookends.model_dump(exclude_defaults=True),
        max_clip_slowdown=channel.max_clip_slowdown,
        music=MusicOptions(
            channel.music.source,
            channel.music.style,
            music_tracks(channel.music.folder) if channel.music.source == "folder" else (),
        ),
        levels=channel.levels.model_dump(),
        format=channel.format,
        clip_mode=channel.clip_mode,
        youtube=None
        if channel.youtube is None
        else UploadOptions(
            channel.youtube.privacy,
            channel.youtube.category_id,
            channel.youtube.tags,
            channel.youtube.caption_language,
        ),
    )


# A Short's captions, where the channel's file does not say otherwise: centred in the tall frame, and
# smaller (a share of the frame's height, which is 1.8 times a landscape frame's).
SHORTS_CAPTIONS = {"position": "middle", "size": 0.035}


def caption_style(channel: Channel) -> dict[str, Any]:
    style = channel.captions.model_dump()
    if channel.format == "shorts":
        style |= {k: v for k, v in SHORTS_CAPTIONS.items() if k not in channel.captions.model_fields_set}
    return style


def music_tracks(folder: Path | None) -> tuple[tuple[str, str], ...]:
    """The folder's audio files (sub-folders too), each with a version (size and modification
    time: a replaced file makes a new cut)."""
    if folder is None or not folder.is_dir():
        return ()
    tracks = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in MUSIC_EXTENSIONS and path.is_file():
            stat = path.stat()
            tracks.append((str(path), f"{stat.st_size}-{stat.st_mtime_ns}"))
    return tuple(tracks)


def estimator(pricing: Pricing | None) -> Callable[[PlannedItem], int]:
    """What one run of an item is expected to cost, for budget reservations (0 without prices)."""

    def estimate(item: PlannedItem) -> int:
        if pricing is None:
            return 0
        data = item.input
        params: dict[str, object] = {
            "asset": {"images": 1},
            "clip": {"duration": str(data.get("duration", 5)), "mode": data.get("mode", "std")},
            "narration": {"characters": len(str(data.get("text", "")))},
            "sfx": {"seconds": data.get("duration", 5)},
            "music": {"seconds": data.get("duration", 60)},
        }.get(item.kind, {})
        # A length the script takes from the narration ("auto"): what the plan reserves for it.
        params = {**params, **item.reserve}
        if item.kind == "storyboard" and data.get("given"):
            return 0
        return to_micros(pricing.estimate_item_cost(item.kind, params))

    return estimate


class Pipeline:
    def __init__(
        self,
        engine: AsyncEngine,
        channels: Mapping[str, Channel],
        workspace: Path,
        *,
        auto_approve: bool = False,
        pricing: Pricing | None = None,
    ) -> None:
        self.engine = engine
        self.channels = channels
        self.workspace = workspace
        self.auto_approve = auto_approve
        self.estimate = estimator(pricing)
        # Set by the composition root to wake this process's worker when new work appears.
        self.on_change: Callable[[], None] | None = None

    def notify(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def channel(self, channel_id: str) -> Channel:
        channel = self.channels.get(channel_id)
        if channel is None:
            known = ", ".join(sorted(self.channels)) or "none configured"
            raise PlanError(f"unknown channel '{channel_id}'; known channels: {known}")
        return channel

    async def submit(
        self,
        channel_id: str,
        slug: str,
        request: Mapping[str, Any],
        now: datetime,
        *,
        storyboard: Storyboard | None = None,
        page_id: str | None = None,
        priority: int = 1,
        rebuy_micros: int | None = None,
    ) -> int:
        """Creates the task, or starts a new pass of an existing one; returns the task id.

        A given storyboard is written to the workspace and its item is done at once. Without one,
        a storyboard generated in an earlier pass is kept while the request is unchanged. A pass
        that would buy again files retention removed raises rebuy.MediaRemoved, with nothing
        changed, unless the operator confirmed up to `rebuy_micros` (micro-dollars).
        """
        channel_options = plan_options(self.channel(channel_id))
        # The names become folders: checked once, here, where a task enters (PathRefused names the
        # field and the fix); every path built from them later is layout only (services/paths.py).
        channel_id, slug = paths.channel_id(channel_id), paths.project_slug_of(slug)
        given = storyboard is not None
        async with self.engine.begin() as conn:
            task_id = await self._upsert_task(conn, channel_id, slug, request, now, page_id, priority)
            options = await _task_options(conn, task_id, channel_options)
            if storyboard is None:
                storyboard = await self._generated_storyboard(conn, task_id, request, options)
            planned = build_plan(request, storyboard, options, given=given)
            await apply_plan(
                conn, task_id, planned, now, self.workspace, self.estimate, rebuy_micros=rebuy_micros
            )
            if storyboard is not None and given:
                await self._store_given(conn, task_id, channel_id, slug, storyboard, now)
            await refresh(conn, task_id, now, auto_approve=self.auto_approve)
        return task_id

    async def _upsert_task(
        self,
        conn: AsyncConnection,
        channel_id: str,
        slug: str,
        request: Mapping[str, Any],
        now: datetime,
        page_id: str | None,
        priority: int,
    ) -> int:
        row = (
            await conn.execute(
                select(Task.id, Task.pass_no).where(Task.channel_id == channel_id, Task.project_slug == slug)
            )
        ).first()
        values = {
            "state": "active",
            "error": None,
            "request": dict(request),
            "updated_at": now,
            "priority": priority,
            "title": str(request.get("title", "")),
            "rebuy_offer": None,  # answered: this pass buys what it was offered, or nothing removed
        }
        if row is None:
            return returned_id(
                await conn.scalar(
                    insert(Task)
                    .values(
                        channel_id=channel_id,
                        project_slug=slug,
                        notion_page_id=page_id,
                        pass_no=1,
                        plan_version=PLAN_VERSION,
                        created_at=now,
                        **values,
                    )
                    .returning(Task.id)
                )
            )
        await conn.execute(update(Task).where(Task.id == row.id).values(pass_no=row.pass_no + 1, **values))
        return int(row.id)

    async def _generated_storyboard(
        self, conn: AsyncConnection, task_id: int, request: Mapping[str, Any], options: PlanOptions
    ) -> Storyboard | None:
        """The storyboard an earlier pass generated, if it was generated from this same request."""
        wanted = next(p for p in build_plan(request, None, options) if p.key == "storyboard")
        row = (
            await conn.execute(
                select(Item.input_hash, Item.state).where(Item.task_id == task_id, Item.key == "storyboard")
            )
        ).first()
        if row is None or row.input_hash != wanted.input_hash or row.state != ItemState.SUCCEEDED:
            return None
        content = await conn.scalar(select(Task.storyboard).where(Task.id == task_id))
        return None if content is None else parse_storyboard(content)

    async def _store_given(
        self,
        conn: AsyncConnection,
        task_id: int,
        channel_id: str,
        slug: str,
        storyboard: Storyboard,
        now: datetime,
    ) -> None:
        """A storyboard the operator gave needs no script: its item is done with the file written."""
        content = storyboard.model_dump(mode="json")
        # Checked to stay inside the workspace, symbolic links resolved: the operator's own file.
        target = paths.Workspace(self.workspace.absolute()).project(channel_id, slug).storyboard()
        relative = str(target.relative_to(self.workspace.absolute()))
        write_atomic(target, json.dumps(content, indent=2, ensure_ascii=False).encode())
        await conn.execute(update(Task).where(Task.id == task_id).values(storyboard=content))
        await conn.execute(
            update(Item)
            .where(Item.task_id == task_id, Item.key == "storyboard", Item.state != ItemState.SUCCEEDED)
            .values(state=ItemState.SUCCEEDED, output_path=relative, finished_at=now, updated_at=now)
        )

    async def on_storyboard(self, conn: AsyncConnection, task_id: int, path: Path) -> None:
        """Runs in the storyboard item's completion: validate it, then plan every other item."""
        task = (await conn.execute(select(Task.channel_id, Task.request).where(Task.id == task_id))).one()
        now_row = await conn.scalar(
            select(Item.updated_at).where(Item.task_id == task_id, Item.key == "storyboard")
        )
        assert now_row is not None
        options = await _task_options(conn, task_id, plan_options(self.channel(task.channel_id)))
        try:
            storyboard = parse_storyboard(json.loads(path.read_text(encoding="utf-8")))
            planned = build_plan(task.request or {}, storyboard, options)
        except (ServiceError, ValueError) as exc:
            await conn.execute(
                update(Task)
                .where(Task.id == task_id)
                .values(state=TaskState.ERROR, error=f"the generated storyboard is not usable: {exc}")
            )
            return
        await conn.execute(
            update(Task).where(Task.id == task_id).values(storyboard=storyboard.model_dump(mode="json"))
        )
        try:
            await apply_plan(conn, task_id, planned, now_row, self.workspace, self.estimate)
        except MediaRemoved as exc:
            # Not reached in practice (a new storyboard replaces every item), but never a silent
            # purchase: the task stops, and Queued with the page's confirmation goes on.
            await conn.execute(
                update(Task)
                .where(Task.id == task_id)
                .values(state=TaskState.ERROR, error=f"{exc.reason[:1].upper()}{exc.reason[1:]}.")
            )

    async def set_publish(
        self, task_id: int, publish: Mapping[str, Any], now: datetime, *, rebuy_micros: int | None = None
    ) -> None:
        """The page's publishing choices at the final approval: the upload's input follows them
        (the upload has not run: it waits behind the final gate being approved)."""
        async with self.engine.begin() as conn:
            task = (
                await conn.execute(
                    select(Task.channel_id, Task.request, Task.storyboard).where(Task.id == task_id)
                )
            ).one()
            request = dict(task.request or {})
            if request.get("publish", {}) == dict(publish) or task.storyboard is None:
                return
            request["publish"] = dict(publish)
            options = await _task_options(conn, task_id, plan_options(self.channel(task.channel_id)))
            item = await conn.scalar(
                select(Item.input).where(Item.task_id == task_id, Item.key == "storyboard")
            )
            given = isinstance(item, dict) and bool(item.get("given"))
            planned = build_plan(request, parse_storyboard(task.storyboard), options, given=given)
            await conn.execute(update(Task).where(Task.id == task_id).values(request=request))
            await apply_plan(
                conn, task_id, planned, now, self.workspace, self.estimate, rebuy_micros=rebuy_micros
            )


async def _task_options(conn: AsyncConnection, task_id: int, options: PlanOptions) -> PlanOptions:
    """The channel's plan options at the task's own plan version."""
    version = await conn.scalar(select(Task.plan_version).where(Task.id == task_id))
    return dataclasses.replace(options, plan_version=int(version or 1))


async def cancel_task(engine: AsyncEngine, task_id: int, now: datetime) -> int:
    """Stops a task: running items lose their lease (their daemons kill the scripts at the next
    heartbeat, and no completion is accepted), nothing else starts. Returns the items cancelled."""
    async with engine.begin() as conn:
        await lock_task(conn, task_id)
        tokens = [
            r[0]
            for r in await conn.execute(
                select(Item.lease_token).where(Item.task_id == task_id, Item.state == ItemState.RUNNING)
            )
        ]
        for token in tokens:
            if token:
                await free_slot(conn, token)
        running = select(Item.id).where(Item.task_id == task_id, Item.state == ItemState.RUNNING)
        await conn.execute(
            update(Ledger)
            .where(Ledger.item_id.in_(running), Ledger.entry == "reservation", Ledger.open.is_(True))
            .values(open=False)
        )
        done = await conn.execute(
            update(Item)
            .where(
                Item.task_id == task_id,
                Item.state.in_((ItemState.RUNNING, ItemState.READY, ItemState.BLOCKED)),
            )
            .values(
                state=ItemState.CANCELLED,
                lease_token=None,
                lease_owner=None,
                lease_expires_at=None,
                updated_at=now,
            )
        )
        await conn.execute(
            update(Task).where(Task.id == task_id).values(state=TaskState.CANCELLED, updated_at=now)
        )
        return int(done.rowcount)


async def pause_task(engine: AsyncEngine, task_id: int, now: datetime) -> None:
    """Running items finish; nothing new starts until the operator queues the page again."""
    async with engine.begin() as conn:
        await conn.execute(
            update(Task)
            .where(Task.id == task_id, Task.state == TaskState.ACTIVE)
            .values(state=TaskState.PAUSED, updated_at=now)
        )


async def pause_for_gone_page(engine: AsyncEngine, page_id: str, now: datetime) -> bool:
    """A page trashed or unshared while its video is in production: the task pauses (nothing is
    lost) and a comment waits for the page to come back. True when a task was paused."""
    async with engine.begin() as conn:
        done = await conn.execute(
            update(Task)
            .where(Task.notion_page_id == page_id, Task.state == TaskState.ACTIVE)
            .values(state=TaskState.PAUSED, error="the Notion page was trashed or unshared", updated_at=now)
        )
        if done.rowcount:
            await add_comment(
                conn,
                page_id,
                f"{page_id}:gone:{now.isoformat(timespec='seconds')}",
                "This page went to the trash (or stopped being shared) while its video was in "
                "production, so the video was paused: nothing was lost. Set Status to Queued to go on.",
                now,
            )
        return bool(done.rowcount)
