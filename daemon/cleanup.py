"""`nvd cleanup`: retention run by hand, or only shown (--dry-run), per video and in total."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.channels import Channel
from daemon.db.models import Task
from daemon.errors import DaemonError
from daemon.project_files import size_text
from daemon.retention import Policy, Removal, apply, scan
from services.paths import project_dir


async def policy_for(
    engine: AsyncEngine,
    channels: Mapping[str, Channel],
    default_days: int | None,
    *,
    channel: str | None,
    older_than_days: int | None,
    finals: bool,
) -> Policy:
    """The retention the command applies; an unknown channel is named with the known ones."""
    if channel is not None and channel not in channels:
        async with engine.connect() as conn:
            has_tasks = await conn.scalar(select(Task.id).where(Task.channel_id == channel).limit(1))
        if has_tasks is None:
            known = ", ".join(sorted(channels)) or "none configured"
            raise DaemonError(
                f"--channel {channel}: no such channel and no video of it; known channels: {known}"
            )
    return Policy(default_days, channels, older_than_days, channel, finals)


async def cleanup(
    engine: AsyncEngine, workspace: Path, policy: Policy, now: datetime, *, dry_run: bool
) -> list[str]:
    """Removes (or with `dry_run` only lists) what retention takes; returns the lines to print."""
    removals = await scan(engine, workspace, policy, now)
    lines = [] if policy.configured else [_no_retention()]
    if not removals:
        return [*lines, "nothing to remove"]
    if dry_run:
        for removal in removals:
            lines += _listing(removal, now)
        total = sum(r.size for r in removals)
        count = sum(len(r.files) for r in removals)
        lines.append(
            f"would free {size_text(total)} ({_count(count, 'file')}) from {_count(len(removals), 'video')}; "
            "nothing was removed (--dry-run)"
        )
        return lines
    results = await apply(engine, workspace, removals, now)
    for result in results:
        head = _head(result.removal, now)
        if result.skipped:
            lines.append(f"{head}: left as it is ({result.skipped})")
            continue
        marked = (
            f"; {_count(len(result.marked), 'step')} marked removed: a new pass that needs them asks before "
            "buying them again"
            if result.marked
            else ""
        )
        lines.append(f"{head}: removed {_count(result.files, 'file')}, {size_text(result.size)}{marked}")
    freed = sum(r.size for r in results)
    videos = sum(1 for r in results if r.files)
    lines.append(
        f"freed {size_text(freed)} ({_count(sum(r.files for r in results), 'file')}) from "
        f"{_count(videos, 'video')}"
    )
    return lines


def _no_retention() -> str:
    return (
        "no retention is set (RETENTION_DAYS, a channel's retention_days, or --older-than-days): only "
        "the attempts and temp files of done videos go"
    )


def _listing(removal: Removal, now: datetime) -> list[str]:
    lines = [_head(removal, now)]
    rows = [(f"{group}", n, size) for group, (n, size) in removal.groups().items()]
    rows.append(("total", len(removal.files), removal.size))
    width = max(len(name) for name, _, _ in rows)
    for name, n, size in rows:
        lines.append(f"    {name.ljust(width)}  {_count(n, 'file'):>10}  {size_text(size):>9}")
    return lines


def _head(removal: Removal, now: datetime) -> str:
    days = max(0, (now - removal.finished_at).days)
    title = f' "{removal.title}"' if removal.title else ""
    where = project_dir(removal.channel, removal.slug)
    return f"task {removal.task_id}{title} ({where}, done {_count(days, 'day')} ago)"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
