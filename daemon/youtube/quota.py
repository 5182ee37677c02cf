"""The YouTube quota per Google Cloud project and Pacific day: reserved before an upload runs
(what it may use at most), set right by the script's own count when it ends. An upload that does
not fit waits until the quota resets, at midnight Pacific time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from daemon.channels import YouTubeQuota as QuotaSize
from daemon.db.models import YouTubeQuota

PACIFIC = ZoneInfo("America/Los_Angeles")
# The units one upload may use besides videos.insert (the current quota table): looking for an
# earlier copy by its marker (channels.list, playlistItems.list, videos.list: 1 each), the
# thumbnail (thumbnails.set 50) and the captions (captions.list 50, captions.insert 400).
UNITS_PER_UPLOAD = 3 + 50 + 50 + 400


def quota_day(now: datetime) -> str:
    return now.astimezone(PACIFIC).date().isoformat()


def next_reset(now: datetime) -> datetime:
    """The next midnight in America/Los_Angeles, as an aware UTC time."""
    local = now.astimezone(PACIFIC)
    midnight = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=PACIFIC)
    return midnight.astimezone(ZoneInfo("UTC"))


@dataclass(frozen=True)
class Reservation:
    project: str
    day: str
    uploads: int
    units: int


def needs(size: QuotaSize) -> tuple[int, int]:
    """(uploads, units) an upload may take. A resumed session makes no new videos.insert call,
    unless the session turns out gone: one is reserved every time and given back by `settle`."""
    if size.insert_units:  # an older project: the upload counts in units
        return 0, UNITS_PER_UPLOAD + size.insert_units
    return 1, UNITS_PER_UPLOAD


def as_charged(size: QuotaSize, uploads: int, units: int) -> tuple[int, int]:
    """What a script's count (uploads, units) costs the project: an older project's uploads are
    units of its one bucket."""
    if size.insert_units:
        return 0, units + uploads * size.insert_units
    return uploads, units


async def reserve(
    engine: AsyncEngine, project: str, size: QuotaSize, uploads: int, units: int, now: datetime
) -> Reservation | None:
    """Takes (uploads, units) of today's quota if both fit; None when they do not."""
    day = quota_day(now)
    async with engine.begin() as conn:
        await _ensure_row(conn, project, day, now)
        done = await conn.execute(
            update(YouTubeQuota)
            .where(
                YouTubeQuota.project == project,
                YouTubeQuota.day == day,
                YouTubeQuota.uploads + uploads <= size.uploads_per_day,
                YouTubeQuota.units + units <= size.units_per_day,
            )
            .values(uploads=YouTubeQuota.uploads + uploads, units=YouTubeQuota.units + units, updated_at=now)
        )
    return Reservation(project, day, uploads, units) if done.rowcount == 1 else None


async def settle(
    engine: AsyncEngine, held: Reservation, used_uploads: int, used_units: int, now: datetime
) -> None:
    """Replaces a reservation by what the upload used (its script's count)."""
    async with engine.begin() as conn:
        await conn.execute(
            update(YouTubeQuota)
            .where(YouTubeQuota.project == held.project, YouTubeQuota.day == held.day)
            .values(
                uploads=YouTubeQuota.uploads + (used_uploads - held.uploads),
                units=YouTubeQuota.units + (used_units - held.units),
                updated_at=now,
            )
        )


async def use_up(engine: AsyncEngine, project: str, size: QuotaSize, now: datetime) -> None:
    """YouTube said the quota is used up (another program on the project, a smaller quota than
    configured): the rest of the day counts as used, so uploads wait for the reset."""
    day = quota_day(now)
    async with engine.begin() as conn:
        await _ensure_row(conn, project, day, now)
        await conn.execute(
            update(YouTubeQuota)
            .where(YouTubeQuota.project == project, YouTubeQuota.day == day)
            .values(uploads=size.uploads_per_day, units=size.units_per_day, updated_at=now)
        )


async def used(engine: AsyncEngine, project: str, now: datetime) -> tuple[int, int]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                select(YouTubeQuota.uploads, YouTubeQuota.units).where(
                    YouTubeQuota.project == project, YouTubeQuota.day == quota_day(now)
                )
            )
        ).first()
    return (int(row.uploads), int(row.units)) if row is not None else (0, 0)


async def _ensure_row(conn: AsyncConnection, project: str, day: str, now: datetime) -> None:
    exists = await conn.scalar(
        select(YouTubeQuota.project).where(YouTubeQuota.project == project, YouTubeQuota.day == day)
    )
    if exists is not None:
        return
    try:
        async with conn.begin_nested():
            await conn.execute(
                insert(YouTubeQuota).values(project=project, day=day, uploads=0, units=0, updated_at=now)
            )
    except IntegrityError:
        pass  # another daemon made it first
