"""The outbox: pending Notion writes, one row per (page, property), newest value wins, and keyed
comments written once.

Properties are written only when changed and coalesced per page into one update. Before Status is
written the page is read: a Status that differs from the daemon's last write means the operator
acted, and the daemon's value is dropped in favour of theirs. Notion has no conditional writes, so
an operator's change can still cross a write of ours in flight: when intake took their Status while
our write was out, theirs is written back at once, with a comment.

A write Notion did not answer (a timeout, a 5xx, the daemon killed mid-call) may be applied late,
after newer values: each write is marked in the DB before it is sent, and a page whose write went
unanswered is written again once `late_s` has passed. A comment whose POST went unanswered is looked
for on the page after `late_s`, and posted again only if it is not there.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from daemon.crashpoints import crash_point
from daemon.db.models import Comment, Outbox, PageSeen
from daemon.logs import get_logger
from daemon.notion.board import BoardNotReady, send_files, write_board
from daemon.notion.body import write_storyboard_block
from daemon.notion.gateway import (
    AmbiguousWrite,
    NotionError,
    NotionGateway,
    NotionNotFound,
    NotionRejected,
    NotionUnavailable,
)
from daemon.notion.props import option_name, text_value
from daemon.notion.uploads import Uploads
from daemon.retry import backoff_seconds
from services.states import CommentState
from services.status import Status, action_for, asked_on

JSON = dict[str, Any]
STATUS = "Status"
STORYBOARD_BODY = "__storyboard__"  # not a property: the Storyboard block of the page body
BOARD_BODY = "__board__"  # not a property: the scene board in the page body (daemon/notion/board.py)
BODY_ROWS = (STORYBOARD_BODY, BOARD_BODY)  # written first, in this order, each in several calls
# A review Status and its comment ask the operator to judge what the board shows: they wait while
# the page's board has changes not yet written.
REVIEW_STATUSES = frozenset(
    s.value for s in (Status.STORYBOARD_REVIEW, Status.ASSETS_REVIEW, Status.FINAL_REVIEW)
)
REVIEW_COMMENT_SUFFIX = "_review"
BOARD_PACE_S = 10.0
HELD_STATUS_S = 5.0  # a Status held back for the operator's change is looked at again after this
LATE_WRITE_S = 120.0  # see Settings.notion_late_write_s


async def set_property(conn: AsyncConnection, page_id: str, prop: str, value: JSON, now: datetime) -> bool:
    """Queues a property value; returns False when it equals the value already queued or written."""
    row = (
        await conn.execute(
            select(Outbox.id, Outbox.value, Outbox.version).where(
                Outbox.page_id == page_id, Outbox.property == prop
            )
        )
    ).first()
    if row is None:
        try:
            async with conn.begin_nested():
                await conn.execute(
                    insert(Outbox).values(
                        page_id=page_id,
                        property=prop,
                        value=value,
                        version=1,
                        sent_version=0,
                        attempts=0,
                        next_attempt_at=now,
                        updated_at=now,
                    )
                )
            return True
        except IntegrityError:  # queued at the same moment by another writer: update it below
            row = (
                await conn.execute(
                    select(Outbox.id, Outbox.value, Outbox.version).where(
                        Outbox.page_id == page_id, Outbox.property == prop
                    )
                )
            ).one()
    if row.value == value:
        return False
    await conn.execute(
        update(Outbox)
        .where(Outbox.id == row.id)
        .values(
            value=value,
            version=Outbox.version + 1,
            attempts=0,
            next_attempt_at=now,
            last_error=None,
            updated_at=now,
        )
    )
    return True


async def acknowledge_status(conn: AsyncConnection, page_id: str, status: str, now: datetime) -> None:
    """The operator's Status becomes the baseline the daemon's next Status write is compared with."""
    row = (
        await conn.execute(select(Outbox.id).where(Outbox.page_id == page_id, Outbox.property == STATUS))
    ).first()
    value = {"status": status}
    if row is None:
        await conn.execute(
            insert(Outbox).values(
                page_id=page_id,
                property=STATUS,
                value=value,
                version=1,
                sent_version=1,
                sent_value=value,
                attempts=0,
                next_attempt_at=now,
                updated_at=now,
            )
        )
    else:
        await conn.execute(
            update(Outbox)
            .where(Outbox.id == row.id)
            .values(
                value=value,
                sent_value=value,
                sent_version=Outbox.version + 1,
                version=Outbox.version + 1,
                updated_at=now,
                # Theirs is newer than any write of ours still out: no doubt about an earlier one.
                out_value=None,
            )
        )


async def comment_queued(conn: AsyncConnection, key: str) -> bool:
    """A comment with this key was queued before (its body need not be made again)."""
    return await conn.scalar(select(Comment.id).where(Comment.key == key).limit(1)) is not None


async def add_comment(conn: AsyncConnection, page_id: str, key: str, body: str, now: datetime) -> bool:
    """Queues a comment once per key; returns False when that key was queued before."""
    try:
        async with conn.begin_nested():
            await conn.execute(
                insert(Comment).values(
                    page_id=page_id,
                    key=key,
                    body=body,
                    state=CommentState.PENDING,
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
        return True
    except IntegrityError:
        return False


class OutboxWriter:
    def __init__(
        self,
        engine: AsyncEngine,
        notion: NotionGateway,
        on_page_gone: Any = None,
        late_s: float = LATE_WRITE_S,
        uploads: Uploads | None = None,
    ) -> None:
        self.engine = engine
        self.notion = notion
        self.uploads = uploads  # None: no scene board (its rows stay queued)
        self._sending_files = asyncio.Lock()
        self._board_written: dict[str, float] = {}  # page -> when its board was last written
        self.on_page_gone = on_page_gone
        self.late_s = late_s
        # Set by the leader's jobs: a flush stops at the next write once the lease is not ours.
        self.leading: Callable[[], bool] = lambda: True
        self.bot_id: str | None = None  # the integration's user: its comments are the daemon's
        self.next_due: datetime | None = None  # see _next_due
        self.log = get_logger(job="outbox")

    async def send_board_files(self, now: datetime) -> None:
        """Sends the files of the boards due to be written, before the flush: an upload can take
        long, and the flush holds the lock intake waits for. A board is written once its files are
        in; until then its page's review Status and comment wait."""
        if self.uploads is None or self._sending_files.locked():
            return  # a round is sending already (the outbox also runs after a poll that acted)
        async with self._sending_files:
            await self._send_board_files(now)

    async def _send_board_files(self, now: datetime) -> None:
        assert self.uploads is not None
        async with self.engine.connect() as conn:
            values = list(
                await conn.scalars(
                    select(Outbox.value).where(
                        Outbox.property == BOARD_BODY,
                        Outbox.version > Outbox.sent_version,
                        Outbox.next_attempt_at <= now,
                    )
                )
            )
        for value in values:
            if not self.leading():
                return
            try:
                await send_files(self.uploads, value, now)
            except NotionError as exc:  # unreachable or unanswered: the next round tries again
                self.log.warning("board_files_deferred", error=str(exc))
                return

    async def flush(self, now: datetime) -> int:
        """Writes what is due; returns the number of Notion writes made."""
        writes = await self._flush_properties(now)
        writes += await self._flush_comments(now)
        self.next_due = await self._next_due()
        return writes

    async def _next_due(self) -> datetime | None:
        """When something left waiting (a write deferred or held, a recheck, a comment) falls due: an
        idle daemon flushes then instead of at its next full sync."""
        async with self.engine.connect() as conn:
            times = [
                await conn.scalar(
                    select(func.min(Outbox.next_attempt_at)).where(Outbox.version > Outbox.sent_version)
                ),
                await conn.scalar(select(func.min(Outbox.recheck_at))),
            ]
            comments = await conn.execute(
                select(Comment.next_attempt_at, Comment.recheck_at)
                .where(Comment.state == CommentState.PENDING)
                .limit(200)
            )
            times += [max(c.next_attempt_at, c.recheck_at or c.next_attempt_at) for c in comments]
        return min((t for t in times if t is not None), default=None)

    # Properties ------------------------------------------------------------------------------------
    async def _flush_properties(self, now: datetime) -> int:
        await self._recheck_due(now)
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(Outbox)
                    .where(Outbox.version > Outbox.sent_version, Outbox.next_attempt_at <= now)
                    .order_by(Outbox.updated_at)
                    .limit(200)
                )
            ).all()
        by_page: dict[str, list[Any]] = defaultdict(list)
        for row in rows:
            by_page[row.page_id].append(row)
        writes = 0
        for page_id, page_rows in by_page.items():
            if not self.leading():
                break
            try:
                writes += await self._write_page(page_id, page_rows, now)
            except NotionNotFound:
                self.log.warning("notion_page_gone", page=page_id)
                await self._defer(page_rows, now, "the page is gone or no longer shared", hours=1)
                if self.on_page_gone is not None:
                    await self.on_page_gone(page_id)
            except AmbiguousWrite as exc:
                # The values go again soon (writing a value twice is harmless); a block append, which
                # is not, waits until a late one would have landed and is looked for first.
                await self._unanswered(Outbox, [r.id for r in page_rows])
                await self._defer(page_rows, now, str(exc), late=True)
            except NotionUnavailable as exc:
                await self._defer(page_rows, now, str(exc))
            except NotionRejected as exc:
                self.log.error("notion_write_rejected", page=page_id, error=str(exc))
                await self._defer(page_rows, now, str(exc), hours=1)
        return writes

    async def _recheck_due(self, now: datetime) -> None:
        """A page with a write that went unanswered long enough ago to have landed by now, late or not,
        gets every value of ours written again: a late write may have put older values back."""
        async with self.engine.connect() as conn:
            pages = list(
                await conn.scalars(select(Outbox.page_id).where(Outbox.recheck_at <= now).distinct())
            )
        if not pages:
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                update(Outbox)
                .where(Outbox.page_id.in_(pages), Outbox.version == Outbox.sent_version)
                .values(sent_version=Outbox.version - 1, next_attempt_at=now)
            )
            await conn.execute(
                update(Outbox).where(Outbox.page_id.in_(pages)).values(recheck_at=None, next_attempt_at=now)
            )
        self.log.info("notion_pages_rewritten_after_unanswered_write", pages=len(pages))

    async def _write_page(self, page_id: str, rows: list[Any], now: datetime) -> int:
        writes = 0
        status_row = None
        sent: list[Any] = []
        # The body first (the Storyboard block, then the board: several calls each); the page's
        # Status is read last.
        review = any(r.property == STATUS and r.value.get("status") in REVIEW_STATUSES for r in rows)
        for row in sorted(rows, key=lambda r: BODY_ROWS.index(r.property) if r.property in BODY_ROWS else 9):
            if row.property in BODY_ROWS:
                writes += await self._write_body(page_id, row, now, review)
            elif row.property != STATUS:
                sent.append(row)
            elif row.recheck_at is not None and row.recheck_at > now:
                await self._hold_until_recheck(row)
            elif row.value.get("status") in REVIEW_STATUSES and await self._board_unwritten(page_id):
                await self._hold(row, now + timedelta(seconds=HELD_STATUS_S))
            else:
                status_row = row
        if not sent and status_row is None:
            return writes
        return writes + await self._write_properties(page_id, sent, status_row, now)

    async def _write_properties(self, page_id: str, sent: list[Any], status_row: Any, now: datetime) -> int:
        """The page's property values in one PATCH, the Status among them if the page still shows
        ours (an operator's Status wins). Returns the writes made (0 or 1)."""
        # Marked before the Status is read: an operator's edit made between the read and the PATCH
        # is overwritten (Notion has no conditional writes), so nothing else happens in between; a
        # database write there (SQLite busy with the workers) once let a Cancelled through.
        marked = [*sent, *([status_row] if status_row is not None else [])]
        await self._sending(marked, now)
        properties: JSON = {row.property: _value(row) for row in sent}
        try:
            # The PATCH's token too is taken before the read: waiting for the rate limit between the
            # two (a third of a second at Notion's 3 a second) was most of that window.
            await self.notion.take()
            if status_row is not None:
                kind = await self._status_kind_if_ours(page_id, status_row, now)
                if kind is None:
                    await self._not_sending(status_row)
                else:
                    properties[STATUS] = {kind: {"name": status_row.value["status"]}}
                    sent.append(status_row)
            if properties:
                # Not repeated by the gateway: an unanswered write is this writer's to follow up.
                await self.notion.call(
                    "PATCH", f"pages/{page_id}", body={"properties": properties}, idempotent=False, paid=True
                )
        except NotionNotFound:
            # An answer, not a silence: the page is in the trash (or unshared) and nothing was
            # written, so no late write can land. Left marked, the page back from the trash kept
            # our older Status until the recheck, though the video was paused meanwhile.
            for row in marked:
                await self._not_sending(row)
            raise
        if not properties:
            return 0
        crash_point("outbox_after_property_write")
        await self._mark_sent(sent, now)
        return 1

    async def _write_body(self, page_id: str, row: Any, now: datetime, review: bool = False) -> int:
        """The page body's Storyboard block or its board; returns the writes made (0 or 1). A board
        is written at most once per BOARD_PACE_S while its video is at work (each write reads the
        page's blocks: several calls of the Notion budget), at once when a review waits for it."""
        if row.property == BOARD_BODY:
            if self.uploads is None:
                return 0
            last = self._board_written.get(page_id)
            if not review and last is not None and time.monotonic() - last < BOARD_PACE_S:
                return 0
            self._board_written[page_id] = time.monotonic()
        await self._sending([row], now)
        try:
            if row.property == STORYBOARD_BODY:
                await write_storyboard_block(self.notion, page_id, str(row.value["yaml"]))
            else:
                assert self.uploads is not None
                await write_board(self.notion, self.uploads, page_id, row.value, row.sent_value, now)
        except BoardNotReady:  # its files go first, outside the lock (send_board_files)
            await self._not_sending(row)
            return 0
        await self._mark_sent([row], now)
        return 1

    async def _not_sending(self, row: Any) -> None:
        """A row marked as out whose write was not sent after all (the operator's Status won)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(Outbox).where(Outbox.id == row.id).values(recheck_at=None, out_value=None)
            )

    async def _board_unwritten(self, page_id: str) -> bool:
        """The page's board has changes not written yet (queued, or its write deferred)."""
        if self.uploads is None:
            return False
        async with self.engine.connect() as conn:
            return bool(
                await conn.scalar(
                    select(func.count()).where(
                        Outbox.page_id == page_id,
                        Outbox.property == BOARD_BODY,
                        Outbox.version > Outbox.sent_version,
                    )
                )
            )

    async def _hold(self, row: Any, until: datetime) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(update(Outbox).where(Outbox.id == row.id).values(next_attempt_at=until))

    async def _hold_until_recheck(self, row: Any) -> None:
        """An earlier Status write of this page is unanswered and may still land: no other Status goes
        out (not even the same one again) before the recheck. The page shows our next Status only
        once no late write of ours can put an older one over what the operator sets on seeing it."""
        await self._hold(row, row.recheck_at)

    def _late(self) -> datetime:
        """When a write sent now, and not answered, can no longer land. From the clock, not from the
        flush's start: a flush can take seconds (slow answers, 429 pauses) before a write goes out, and
        a recheck counted from its start came before the late write landed (a comment posted twice in
        the outage chaos run)."""
        return datetime.now(UTC) + timedelta(seconds=self.late_s)

    async def _unanswered(self, table: Any, ids: list[int]) -> None:
        """A write went unanswered: its recheck is counted from now, when the client gave up on it
        (it may have waited for the rate limit after it was marked)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(table)
                .where(table.id.in_(ids), table.recheck_at.is_not(None))
                .values(recheck_at=self._late())
            )

    async def _sending(self, rows: list[Any], now: datetime) -> None:
        """Marks rows as out before their write is sent: if no answer comes (or the daemon dies before
        it does), the page is written again once a late write would have landed."""
        until = self._late()
        async with self.engine.begin() as conn:
            for row in rows:
                await conn.execute(
                    update(Outbox)
                    .where(Outbox.id == row.id, Outbox.recheck_at.is_(None))
                    .values(recheck_at=until, out_value=row.value)
                )

    async def _status_kind_if_ours(self, page_id: str, row: Any, now: datetime) -> str | None:
        """Reads the page: if the operator set an operator status (Queued, Cancelled, an approval...)
        since our last write, theirs wins: our Status waits, unchanged, until intake has acted on
        theirs and acknowledged it as the new baseline (None). Any other hand edit is overwritten.
        Otherwise returns how this page's data source types Status ("select" or "status"): channels
        may sit in data sources of either kind."""
        page = await self.notion.call("GET", f"pages/{page_id}")
        prop = page.get("properties", {}).get(STATUS) or {}
        current = option_name(prop)
        ours = (row.sent_value or {}).get("status")
        kind = prop.get("type") if prop.get("type") in ("select", "status") else "select"
        if await self._settle_unanswered(row, current):
            ours = row.out_value["status"]
        if ours is None or current == ours or action_for(current or "") is None:
            return str(kind)
        self.log.info("operator_status_wins", page=page_id, operator=current, held=row.value.get("status"))
        async with self.engine.begin() as conn:  # look again later rather than on every flush
            await conn.execute(
                update(Outbox)
                .where(Outbox.id == row.id)
                .values(next_attempt_at=now + timedelta(seconds=HELD_STATUS_S))
            )
        return None

    async def _settle_unanswered(self, row: Any, current: str | None) -> bool:
        """Settles a Status write of ours that went unanswered and can no longer land (rechecked):
        whether the page counts as having shown it. True when it does: the page shows it now, or
        the page shows the operator's Status from before it, which they could ask of a page showing
        ours: either ours never landed, or it did and they set theirs again on seeing it (a Ready
        page queued again). The doubt goes their way: intake takes theirs as a new change and ours
        waits for it. Otherwise the page shows our stale baseline, and ours is written again."""
        doubt = (row.out_value or {}).get("status") if row.recheck_at is None else None
        theirs = (row.sent_value or {}).get("status")
        if doubt is None or doubt == theirs:
            return False
        if current != doubt:
            action = action_for(current or "")
            if current != theirs or action is None or not asked_on(action, doubt):
                return False
            self.log.warning(
                "operator_status_after_unanswered_write", page=row.page_id, operator=current, ours=doubt
            )
        async with self.engine.begin() as conn:
            # (out_value is already the value of the write about to go: see _write_page)
            await conn.execute(update(Outbox).where(Outbox.id == row.id).values(sent_value=row.out_value))
            await conn.execute(update(PageSeen).where(PageSeen.page_id == row.page_id).values(status=doubt))
        return True

    async def _mark_sent(self, rows: list[Any], now: datetime) -> None:
        crossed: list[Any] = []
        async with self.engine.begin() as conn:
            for row in rows:
                if row.recheck_at is None:  # answered; no earlier write of this row is still out
                    await conn.execute(
                        update(Outbox).where(Outbox.id == row.id).values(recheck_at=None, out_value=None)
                    )
                # Only the version written counts as sent: a newer value queued meanwhile still goes out.
                done = await conn.execute(
                    update(Outbox)
                    .where(Outbox.id == row.id, Outbox.version == row.version)
                    .values(sent_version=row.version, sent_value=row.value, attempts=0, last_error=None)
                )
                if row.property != STATUS:
                    continue
                if done.rowcount:
                    await conn.execute(
                        update(PageSeen)
                        .where(PageSeen.page_id == row.page_id)
                        .values(status=row.value["status"])
                    )
                else:
                    crossed.append(row)
        for row in crossed:
            await self._restore_if_crossed(row, now)

    async def _restore_if_crossed(self, written: Any, now: datetime) -> None:
        """Our Status write was out while intake took the operator's Status (acknowledged it as the
        new baseline): if ours landed after theirs, the page shows ours. Theirs is written back at
        once, with a comment; their action has been applied already."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(Outbox).where(Outbox.id == written.id))).one()
        theirs = row.value.get("status")
        if row.version != row.sent_version or row.sent_value != row.value or action_for(theirs or "") is None:
            return  # a newer value of the daemon's is queued: it goes out at the next flush anyway
        page = await self.notion.call("GET", f"pages/{row.page_id}")
        current = option_name(page.get("properties", {}).get(STATUS) or {})
        if current == theirs:
            return  # their change landed after our write: the page shows it
        ours = written.value.get("status")
        self.log.warning("operator_status_restored", page=row.page_id, operator=theirs, crossed=ours)
        async with self.engine.begin() as conn:
            await conn.execute(
                update(Outbox)
                .where(Outbox.id == row.id, Outbox.version == row.version)
                .values(sent_version=row.version - 1, next_attempt_at=now)
            )
            body = (
                f"Status {theirs} was set while the daemon was updating this page to {ours}, and for a "
                f"moment the page showed {ours}. {theirs} has been applied and is back on the page."
            )
            await add_comment(conn, row.page_id, f"{row.page_id}:crossed:{theirs}:{row.version}", body, now)

    async def _defer(
        self, rows: list[Any], now: datetime, error: str, hours: float = 0, late: bool = False
    ) -> None:
        async with self.engine.begin() as conn:
            for row in rows:
                delay = hours * 3600 or backoff_seconds(row.attempts + 1, 2.0, 300.0)
                due = now + timedelta(seconds=delay)
                if late and row.property in BODY_ROWS:
                    due = max(due, self._late())
                await conn.execute(
                    update(Outbox)
                    .where(Outbox.id == row.id)
                    .values(attempts=Outbox.attempts + 1, last_error=error[:500], next_attempt_at=due)
                )

    # Comments --------------------------------------------------------------------------------------
    async def _flush_comments(self, now: datetime) -> int:
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(Comment)
                    .where(
                        Comment.state == CommentState.PENDING,
                        Comment.next_attempt_at <= now,
                        or_(Comment.recheck_at.is_(None), Comment.recheck_at <= now),
                        # A comment asks the operator to act on the page's Status: it waits while a
                        # Status write of ours may still land late (see _hold_until_recheck).
                        ~exists().where(
                            Outbox.page_id == Comment.page_id,
                            Outbox.property == STATUS,
                            Outbox.recheck_at > now,
                        ),
                        # A review's comment points at the board: it waits until the board is written.
                        ~(
                            Comment.key.endswith(REVIEW_COMMENT_SUFFIX)
                            & exists().where(
                                Outbox.page_id == Comment.page_id,
                                Outbox.property == BOARD_BODY,
                                Outbox.version > Outbox.sent_version,
                            )
                        ),
                    )
                    .order_by(Comment.id)
                    .limit(50)
                )
            ).all()
        writes = 0
        for row in rows:
            if not self.leading():
                break
            try:
                landed = await self._earlier_try(row) if row.attempts > 0 else None
                if landed is not None:
                    await self._comment_sent(row.id, now, landed)  # an earlier try did land: written once
                    continue
                # Counted before the call, and the next try put after the time a late POST would
                # have landed: after a crash mid-call, or no answer, the next try looks for the
                # comment first instead of writing it twice.
                async with self.engine.begin() as conn:
                    await conn.execute(
                        update(Comment)
                        .where(Comment.id == row.id)
                        .values(
                            attempts=Comment.attempts + 1,
                            recheck_at=self._late(),
                        )
                    )
                made = await self.notion.call(
                    "POST",
                    "comments",
                    body={
                        "parent": {"page_id": row.page_id},
                        "rich_text": text_value(row.body)["rich_text"],
                    },
                    idempotent=False,
                )
                writes += 1
                crash_point("outbox_after_comment")
                await self._comment_sent(row.id, now, str(made.get("id") or "") or None)
            except AmbiguousWrite as exc:  # it may land late: looked for once it would have
                await self._unanswered(Comment, [row.id])
                self.log.warning("notion_comment_unanswered", page=row.page_id, key=row.key, error=str(exc))
            except NotionError as exc:  # not applied (429s, refused, page gone): tried again later
                delay = backoff_seconds(row.attempts + 1, 2.0, 300.0)
                async with self.engine.begin() as conn:
                    await conn.execute(
                        update(Comment)
                        .where(Comment.id == row.id)
                        .values(next_attempt_at=now + timedelta(seconds=delay), recheck_at=None)
                    )
                self.log.warning("notion_comment_deferred", page=row.page_id, key=row.key, error=str(exc))
        return writes

    async def _earlier_try(self, row: Any) -> str | None:
        """The Notion id of an earlier try of this comment that landed, if one did: a comment of ours
        on the page with the same text, made no earlier than the minute the comment was queued
        (Notion gives comment times to the minute), that no other comment row of ours is known to
        be (each keeps the id of its comment): two comments of the same text in one minute, the
        second unanswered, were once taken for one and the second never posted. The text carries no
        key: the operator reads these comments."""
        if self.bot_id is None:
            self.bot_id = str((await self.notion.call("GET", "users/me"))["id"])
        async with self.engine.connect() as conn:
            claimed = set(
                await conn.scalars(
                    select(Comment.notion_id).where(
                        Comment.page_id == row.page_id, Comment.notion_id.is_not(None), Comment.id != row.id
                    )
                )
            )
        queued = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
        since = queued.replace(second=0, microsecond=0)
        cursor: str | None = None
        while True:
            query: JSON = {"block_id": row.page_id, "page_size": 100}
            if cursor:
                query["start_cursor"] = cursor
            listing = await self.notion.call("GET", "comments", query=query)
            for comment in listing.get("results", []):
                text = "".join(p.get("plain_text", "") for p in comment.get("rich_text", []))
                made = datetime.fromisoformat(str(comment.get("created_time", "")).replace("Z", "+00:00"))
                mine = (comment.get("created_by") or {}).get("id") == self.bot_id
                if mine and text == row.body and made >= since and comment.get("id") not in claimed:
                    return str(comment["id"])
            cursor = listing.get("next_cursor")
            if not listing.get("has_more") or not cursor:
                return None

    async def _comment_sent(self, comment_id: int, now: datetime, notion_id: str | None) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                update(Comment)
                .where(Comment.id == comment_id)
                .values(state=CommentState.SENT, sent_at=now, notion_id=notion_id)
            )


def _value(row: Any) -> JSON:
    value = row.value
    if "text" in value:
        return text_value(str(value["text"]))
    return dict(value)
