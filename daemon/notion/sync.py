"""From the DB to the page: each task's Status, Progress, Cost, Error Log, Updated, Output, its
storyboard block and its comments, queued in the outbox only when they change."""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from daemon.budget import Spend, dollars, task_spend, usd
from daemon.commands import final_path
from daemon.db.models import Attempt, Item, Task
from daemon.notion.board import board_value
from daemon.notion.outbox import (
    BOARD_BODY,
    STATUS,
    STORYBOARD_BODY,
    add_comment,
    comment_queued,
    set_property,
)
from daemon.notion.schema import YOUTUBE_URL
from daemon.youtube.gate import WAITS
from services.plan import UPLOAD_ITEM
from services.states import AttemptOutcome, ItemState, TaskState
from services.status import ItemView, Status, progress_line, shown_status
from services.storyboard import parse_storyboard, storyboard_to_yaml

_REVIEW_COMMENTS = {
    Status.STORYBOARD_REVIEW: "The storyboard is ready for review: the Scenes section of this page shows "
    "each scene's narration, and the Storyboard block holds the whole plan. Edit the block if you like, "
    "then set Status to Storyboard Approved.",
    Status.ASSETS_REVIEW: "The images are ready for review in the Assets section of this page. "
    "Set Status to Assets Approved to make the video clips.",
    Status.FINAL_REVIEW: "The video is assembled: watch it in the Video section of this page "
    "(the file is {video} on the daemon's host).{facts} Then set Status to Approved.",
}


async def sync_tasks(
    engine: AsyncEngine, workspace: Path, now: datetime, watched: set[int] | None
) -> set[int]:
    """Queues the writes of every task at work, or watched (at work last time: it may have just
    finished); with `watched` None, of every task. Returns the tasks to watch next time."""
    async with engine.begin() as conn:
        query = select(Task).where(Task.notion_page_id.is_not(None))
        if watched is not None:
            query = query.where(
                or_(
                    Task.state.in_((TaskState.ACTIVE, TaskState.PAUSED, TaskState.BUDGET)),
                    Task.id.in_(watched),
                )
            )
        tasks = (await conn.execute(query)).all()
        if tasks:
            ids = [t.id for t in tasks]
            views = await item_counts(conn, ids)
            spends = await task_spend(conn, ids)
            for task in tasks:
                spend = spends.get(task.id, Spend())
                await _sync_one(conn, task, views.get(task.id, []), spend, workspace, now)
    # A task's last change (done, error, cancelled) commits after a sync saw it at work: watch it once
    # more, so its final state is always written.
    return {t.id for t in tasks if t.state in (TaskState.ACTIVE, TaskState.PAUSED, TaskState.BUDGET)}


async def item_counts(conn: AsyncConnection, task_ids: list[int]) -> dict[int, list[tuple[str, str, int]]]:
    """Each task's items counted by (kind, state): what the page (and `status`) shows is made of it."""
    rows = await conn.execute(
        select(Item.task_id, Item.kind, Item.state, func.count())
        .where(Item.task_id.in_(task_ids))
        .group_by(Item.task_id, Item.kind, Item.state)
    )
    out: dict[int, list[tuple[str, str, int]]] = defaultdict(list)
    for task_id, kind, state, count in rows:
        out[task_id].append((kind, state, int(count)))
    return out


async def _sync_one(
    conn: AsyncConnection,
    task: Any,
    rows: list[tuple[str, str, int]],
    spend: Spend,
    workspace: Path,
    now: datetime,
) -> None:
    page = str(task.notion_page_id)
    views = [ItemView(kind, state) for kind, state, _ in rows]
    status = shown_status(task.state, views)
    counts = done_of_kinds(rows)
    # Cost is everything paid for this page, every pass, cancelled and replaced work included.
    cost = float(dollars(spend.total_micros))
    progress = progress_line(counts, cost)
    if spend.submitted_micros and task.state != TaskState.ACTIVE:
        progress += f" (incl. {usd(spend.submitted_micros)} of clips bought before the video stopped: "
        progress += "queue the page again to collect them)"
    upload = await _upload(conn, task.id) if any(kind == "upload" for kind, _, _ in rows) else None
    if upload is not None:
        status, progress = _publishing(task, status, progress, upload, now)
    changed = await set_property(conn, page, STATUS, {"status": status.value}, now)
    changed |= await set_property(conn, page, "Progress", {"text": progress}, now)
    if upload is not None:
        await set_property(conn, page, YOUTUBE_URL, {"url": upload.url}, now)
    await set_property(conn, page, "Cost", {"number": cost}, now)
    await set_property(conn, page, "Error Log", {"text": _error_log(task)}, now)
    video = _video_url(task, workspace)
    await set_property(conn, page, "Output", {"url": video}, now)
    if changed:
        await set_property(conn, page, "Updated", {"date": {"start": now.isoformat()}}, now)
    await _storyboard_body(conn, task, page, now)
    board = await board_value(conn, task, workspace)
    if board is not None:
        await set_property(conn, page, BOARD_BODY, board, now)
    await _comments(conn, task, page, status, workspace, video, now)
    if upload is not None:
        await _upload_comments(conn, task, page, status, upload, now)


@dataclass(frozen=True)
class Upload:
    """The upload item as the page shows it: what it published, or why it waits."""

    state: str
    waits: str | None  # the reason it waits (a sign-in, the quota), while it does
    url: str | None
    publish_at: str | None
    sent: str | None = None  # how far a running upload is
    privacy: str | None = None
    notes: list[str] = field(default_factory=list)  # a thumbnail or captions YouTube refused


async def _upload(conn: AsyncConnection, task_id: int) -> Upload | None:
    row = (
        await conn.execute(
            select(Item.id, Item.state, Item.error).where(Item.task_id == task_id, Item.key == UPLOAD_ITEM)
        )
    ).first()
    if row is None:
        return None
    # What it published (its succeeded attempt's result), or how far it is (its running attempt's).
    shown = {ItemState.SUCCEEDED: AttemptOutcome.SUCCEEDED, ItemState.RUNNING: AttemptOutcome.RUNNING}
    usage: Any = None
    if row.state in shown:
        usage = await conn.scalar(
            select(Attempt.usage)
            .where(Attempt.item_id == row.id, Attempt.outcome == shown[row.state])
            .order_by(Attempt.id.desc())
            .limit(1)
        )
    usage = usage if isinstance(usage, dict) else {}
    waits = (
        str(row.error) if row.state == ItemState.READY and row.error and row.error.startswith(WAITS) else None
    )
    progress = usage.get("progress") if row.state == ItemState.RUNNING else None
    sent = None
    if isinstance(progress, dict) and progress.get("total"):
        done, total = int(progress.get("uploaded", 0)), int(progress["total"])
        # In tenths: the page is written once per change, not once per chunk.
        sent = f"uploading: {10 * (10 * done // total)} % of {total / 1e6:.1f} MB sent"
    refused = usage.get("refused") if isinstance(usage.get("refused"), dict) else {}
    notes = [f"YouTube refused its {what}: {why}" for what, why in sorted(refused.items())]
    return Upload(
        str(row.state),
        waits,
        usage.get("url"),
        usage.get("publish_at"),
        sent,
        usage.get("privacy_status"),
        notes,
    )


def _publishing(
    task: Any, status: Status, progress: str, upload: Upload, now: datetime
) -> tuple[Status, str]:
    """Published, or Scheduled (private until its Publish At), once done; the upload's wait in the
    progress line while it waits."""
    if task.state == TaskState.DONE and upload.url:
        if upload.publish_at and datetime.fromisoformat(upload.publish_at.replace("Z", "+00:00")) > now:
            return Status.SCHEDULED, f"{progress} · scheduled for {upload.publish_at}"
        return Status.PUBLISHED, progress
    if upload.waits:
        return status, f"{progress} · {upload.waits}"
    if upload.sent:
        return status, f"{progress} · {upload.sent}"
    return status, progress


async def _upload_comments(
    conn: AsyncConnection, task: Any, page: str, status: Status, upload: Upload, now: datetime
) -> None:
    key = f"{page}:p{task.pass_no}"
    if status in (Status.PUBLISHED, Status.SCHEDULED) and upload.url:
        if status is Status.SCHEDULED:
            when = f" It is private until {upload.publish_at}, when YouTube publishes it."
        else:
            when = f" It is {upload.privacy}." if upload.privacy else ""
        notes = "".join(f" {note}" for note in upload.notes)
        body = f"The video is on YouTube: {upload.url}.{when}{notes}"
        await add_comment(conn, page, f"{key}:published", body, now)
    elif upload.waits:
        # One comment per reason (the quota's counts of the moment left out of the key).
        digest = hashlib.sha256(re.sub(r" \([^)]*used today\)", "", upload.waits).encode()).hexdigest()[:10]
        await add_comment(conn, page, f"{key}:upload_waits:{digest}", upload.waits, now)


def done_of_kinds(rows: list[tuple[str, str, int]]) -> dict[str, tuple[int, int]]:
    """(done, total) per item kind, from item_counts' rows: the progress line's figures."""
    counts: dict[str, tuple[int, int]] = defaultdict(lambda: (0, 0))
    for kind, state, n in rows:
        done, total = counts[kind]
        counts[kind] = (done + (n if state == "succeeded" else 0), total + n)
    return counts


def _error_log(task: Any) -> str:
    if task.state == TaskState.BUDGET and task.error:
        return str(task.error)
    if task.state != TaskState.ERROR or not task.error:
        return ""
    return f"{task.error}\nFix it, then set Status to Queued: finished parts are kept and not paid for again."


def _video_url(task: Any, workspace: Path) -> str | None:
    if task.state != TaskState.DONE or not task.final_video_path:
        return None
    return (workspace / str(task.final_video_path)).resolve().as_uri()


async def _storyboard_body(conn: AsyncConnection, task: Any, page: str, now: datetime) -> None:
    """A generated storyboard goes into the page body, so the operator can read and edit it."""
    if task.storyboard is None:
        return
    given = await conn.scalar(select(Item.input).where(Item.task_id == task.id, Item.key == "storyboard"))
    if isinstance(given, dict) and given.get("given"):
        return  # the operator's own block stays as they wrote it
    yaml_text = storyboard_to_yaml(parse_storyboard(task.storyboard))
    await set_property(conn, page, STORYBOARD_BODY, {"yaml": yaml_text}, now)


async def _comments(
    conn: AsyncConnection,
    task: Any,
    page: str,
    status: Status,
    workspace: Path,
    video: str | None,
    now: datetime,
) -> None:
    key = f"{page}:p{task.pass_no}"
    template = _REVIEW_COMMENTS.get(status)
    if template is not None:
        review_key = f"{key}:{status.name.lower()}"
        if status is Status.FINAL_REVIEW and await comment_queued(conn, review_key):
            return  # posted already: the file's figures are not read again at every sync
        facts = await _final_cut_facts(conn, task.id) if status is Status.FINAL_REVIEW else ""
        body = template.format(
            video=workspace / final_path("assembly", "assembly", task.channel_id, task.project_slug),
            facts=facts,
        )
        await add_comment(conn, page, review_key, body, now)
    elif status is Status.ERROR:
        await add_comment(conn, page, f"{key}:error", f"This video stopped. {_error_log(task)}", now)
    elif task.state == TaskState.BUDGET and task.error:
        digest = hashlib.sha256(str(task.error).encode()).hexdigest()[:10]
        await add_comment(conn, page, f"{key}:budget:{digest}", f"This video is waiting. {task.error}", now)
    elif status is Status.READY and video and not await comment_queued(conn, f"{key}:ready"):
        facts = await _final_cut_facts(conn, task.id)
        body = f"The video is ready: watch it in the Video section of this page (the file: {video}).{facts}"
        await add_comment(conn, page, f"{key}:ready", body, now)


async def _final_cut_facts(conn: AsyncConnection, task_id: int) -> str:
    """What the assembly measured on the encoded file, in one sentence (empty when unknown)."""
    usage = await conn.scalar(
        select(Attempt.usage)
        .join(Item, Item.id == Attempt.item_id)
        .where(Item.task_id == task_id, Item.kind == "assembly", Attempt.outcome == AttemptOutcome.SUCCEEDED)
        .order_by(Attempt.id.desc())
        .limit(1)
    )
    if not isinstance(usage, dict) or usage.get("duration_s") is None:
        return ""
    parts = [f"{usage['duration_s']:.1f} s"]
    if usage.get("width") and usage.get("height"):
        parts.append(f"{usage['width']}x{usage['height']}")
    if usage.get("loudness_lufs") is not None:
        parts.append(f"loudness {usage['loudness_lufs']:.1f} LUFS")
    if usage.get("true_peak_dbtp") is not None:
        parts.append(f"true peak {usage['true_peak_dbtp']:.1f} dBTP")
    if usage.get("captions"):
        parts.append(
            f"{usage['captions']} captions (burned in, a subtitle track, and an .srt beside the file)"
        )
    facts = " Measured on the file: " + ", ".join(parts) + "."
    if usage.get("loudness_in_spec") is False:
        facts += (
            " The loudness is outside YouTube's advice (the target +-0.5 LU, a true peak at most -1 dBTP):"
            " listen to it before approving; a narration much quieter or louder than the others is the"
            " usual cause (regenerate it, then queue the page again)."
        )
    return facts
