"""Intake: one query per data source per poll, each changed page turned into an operator action.

The query asks for pages in an actionable status edited on or after the start of the previous poll
(minus a margin: Notion rounds last_edited_time down to the minute). A page is acted on when its
status or its inputs differ from what intake last knew, so a page seen twice makes one task and the
daemon's own writes (never an operator status) trigger nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, assert_never

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.channels import Channel
from daemon.dag import approve_gate
from daemon.db.models import Comment, Item, Outbox, PageSeen, PageUnread, PollCursor, Task
from daemon.errors import DaemonError, PlanError
from daemon.logs import get_logger
from daemon.notion.body import read_storyboard_block
from daemon.notion.gateway import JSON, NotionError, NotionGateway, NotionNotFound
from daemon.notion.outbox import STATUS, acknowledge_status, add_comment, set_property
from daemon.notion.props import option_name, plain_text
from daemon.notion.publish import publish_choices
from daemon.notion.schema import SourceInfo
from daemon.rebuy import OFFER_VALID, MediaRemoved, offered
from daemon.retry import backoff_seconds
from daemon.tasks import Pipeline, cancel_task, pause_task
from services.errors import ServiceError, StoryboardError
from services.paths import project_slug
from services.prompts import characters
from services.states import CommentState, TaskState
from services.status import (
    ACTIONABLE,
    AT_WORK,
    Action,
    ItemView,
    Status,
    action_for,
    decide,
    gate_of,
    shown_status,
    waiting_gate,
)
from services.storyboard import YOUTUBE_TITLE_LIMIT, parse_storyboard_yaml

WINDOW_MARGIN = timedelta(minutes=2)
CURSOR_SAVE_S = 60.0
UNREAD_PER_POLL = 5  # unread pages read again per poll (one request each)
UNREAD_BACKOFF_CAP_S = 60.0
RECONCILE_S = 600.0  # every Queued page looked at, whatever its age
INPUTS = ("Title", "Topic", "Story Direction", "Channel", "Priority")
PRIORITY = {"High": 0, "Normal": 1, "Low": 2}
# Topic and Story Direction become command-line arguments of the storyboard script (Linux allows
# 128 KiB per argument: 32,768 characters of 4 bytes) and part of one model prompt. Notion allows
# 200,000 characters per property, so the limits are the daemon's own.
TOPIC_LIMIT = 2_000
DIRECTION_LIMIT = 10_000
# A Storyboard block of 60 scenes is about 30,000 characters; YAML this long parses in a second.
STORYBOARD_LIMIT = 100_000
MAX_PROBLEMS = 20  # storyboard problems shown in the Error Log; the rest after the first fixes
PROBLEM_WIDTH = 400  # characters of one problem line (a misspelt field name may be a page long)


class PageProblem(DaemonError):
    """A page cannot be produced as it is; the message tells the operator what to fix."""


class ApprovalRefused(DaemonError):
    """An approval cannot be taken as the page is (its publishing choices); the review waits."""


@dataclass(frozen=True)
class Source:
    info: SourceInfo
    channels: tuple[Channel, ...]


class Intake:
    def __init__(
        self, engine: AsyncEngine, notion: NotionGateway, pipeline: Pipeline, sources: list[Source]
    ) -> None:
        self.engine = engine
        self.notion = notion
        self.pipeline = pipeline
        self.sources = sources
        # Set by the leader's jobs: a poll stops at the next page once the lease is not ours.
        self.leading: Callable[[], bool] = lambda: True
        # The outbox writer's lock (NotionJobs shares it): a Status put back is decided while no
        # write of the daemon's is in flight.
        self.write_lock = asyncio.Lock()
        self.cursors: dict[str, datetime | None] = {}  # data source -> the last poll's start
        self.cursor_saved: dict[str, datetime] = {}
        # Pages without a production, as last looked at (status, inputs): later polls return them
        # while they stay in the edit window, and they need no statement until they change.
        self.unproduced: dict[str, tuple[str | None, str]] = {}
        self.unread: dict[str, dict[str, tuple[datetime, int]]] = {}  # ds -> page -> (due, attempts)
        self.unread_loaded: dict[str, datetime] = {}
        self.reconciled: dict[str, datetime] = {}
        self.log = get_logger(job="intake")

    async def poll(self, now: datetime) -> int:
        """One query per data source; returns the number of pages acted on."""
        acted = 0
        for source in self.sources:
            acted += await self.poll_source(source, now)
        return acted

    async def poll_source(self, source: Source, now: datetime) -> int:
        ds = source.info.data_source_id
        if ds not in self.cursors:
            async with self.engine.connect() as conn:
                self.cursors[ds] = await conn.scalar(
                    select(PollCursor.last_poll_started_at).where(PollCursor.data_source_id == ds)
                )
        pages = await self._query(source, self.cursors[ds])
        await self._load_unread(ds, now)
        acted = 0
        for page in pages:
            if not self.leading():
                return acted  # the cursor stays: the next leader's poll sees the rest again
            acted += await self._handle_or_keep(source, page, now)
        handled = {str(p["id"]) for p in pages}
        acted += await self._read_again(source, handled, now)
        acted += await self._reconcile(source, handled, now)
        self.cursors[ds] = now
        # The cursor is kept in memory and saved now and then (every CURSOR_SAVE_S, or when a page
        # was acted on): the query's window reaches WINDOW_MARGIN further back than the cursor, so a
        # new leader starting from a saved cursor a minute old still sees every change.
        saved = self.cursor_saved.get(ds)
        if acted or saved is None or (now - saved).total_seconds() >= CURSOR_SAVE_S:
            await self._save_cursor(ds, now)
            self.cursor_saved[ds] = now
        return acted

    async def _query(self, source: Source, since: datetime | None) -> list[JSON]:
        """The first poll asks for every page in an operator status; later polls for the pages edited
        in the window in an operator status or one of a video in production: such a status set by
        hand, or left on a page back from the trash, is put right too. Drafts and finished pages
        (Ready, Published, Error) are left out: thousands imported at once would come back, a
        hundred a request, on every poll for minutes."""
        kind = source.info.status_type
        query_filter: JSON = {
            "or": [{"property": STATUS, kind: {"equals": s.value}} for s in sorted(ACTIONABLE)]
        }
        if since is not None:
            window = (since - WINDOW_MARGIN).replace(second=0, microsecond=0)
            edited = {
                "timestamp": "last_edited_time",
                "last_edited_time": {"on_or_after": window.isoformat().replace("+00:00", "Z")},
            }
            # Every Status but Draft and the finished ones: an operator status, one of a video in
            # production, and one the daemon does not know (an option typed into the list), which
            # is put back with a comment naming the options. Written as exclusions, since Notion
            # nests filters two levels at most.
            # Only options the property has (a Status property's filter naming another is refused;
            # a channel without YouTube need not have Published or Scheduled).
            known = source.info.status_options
            left_out = sorted(s for s in set(Status) - ACTIONABLE - AT_WORK if not known or s.value in known)
            query_filter = {
                "and": [
                    edited,
                    {"property": STATUS, kind: {"is_not_empty": True}},
                    *({"property": STATUS, kind: {"does_not_equal": s.value}} for s in left_out),
                ]
            }
        body: JSON = {
            "filter": query_filter,
            "sorts": [{"timestamp": "last_edited_time", "direction": "ascending"}],
            "page_size": 100,
        }
        pages: list[JSON] = []
        while True:
            result = await self.notion.call(
                "POST", f"data_sources/{source.info.data_source_id}/query", body=body
            )
            pages.extend(result.get("results", []))
            if not result.get("has_more") or not result.get("next_cursor"):
                return pages
            body = {**body, "start_cursor": result["next_cursor"]}

    # Pages that could not be read ---------------------------------------------------------------------
    async def _handle_or_keep(
        self, source: Source, page: JSON, now: datetime, *, reconciling: bool = False
    ) -> int:
        """Handles a page; one that cannot be read now (its blocks, Notion failing) is kept in
        page_unread and read again at later polls, since the window moves on without it."""
        ds, page_id = source.info.data_source_id, str(page["id"])
        try:
            acted = await self._handle(source, page, now, reconciling=reconciling)
        except NotionError as exc:
            self.log.warning("intake_page_deferred", page=page_id, error=str(exc))
            await self._keep_unread(ds, page_id, str(exc), now)
            return 0
        if page_id in self.unread.get(ds, {}):
            await self._forget_unread(ds, page_id)
        return acted

    async def _load_unread(self, ds: str, now: datetime) -> None:
        """The unread pages, from the DB at the first poll and every CURSOR_SAVE_S (another daemon
        may have led meanwhile); kept in memory between, so an idle poll makes no statement."""
        loaded = self.unread_loaded.get(ds)
        if loaded is not None and (now - loaded).total_seconds() < CURSOR_SAVE_S:
            return
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(PageUnread.page_id, PageUnread.next_attempt_at, PageUnread.attempts).where(
                    PageUnread.data_source_id == ds
                )
            )
            self.unread[ds] = {r.page_id: (r.next_attempt_at, r.attempts) for r in rows}
        self.unread_loaded[ds] = now

    async def _keep_unread(self, ds: str, page_id: str, error: str, now: datetime) -> None:
        attempts = self.unread.get(ds, {}).get(page_id, (now, 0))[1] + 1
        due = now + timedelta(seconds=backoff_seconds(attempts, 2.0, UNREAD_BACKOFF_CAP_S))
        self.unread.setdefault(ds, {})[page_id] = (due, attempts)
        async with self.engine.begin() as conn:
            insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            values = {"attempts": attempts, "last_error": error[:500], "next_attempt_at": due}
            await conn.execute(
                insert(PageUnread)
                .values(page_id=page_id, data_source_id=ds, first_failed_at=now, **values)
                .on_conflict_do_update(index_elements=[PageUnread.page_id], set_=values)
            )

    async def _forget_unread(self, ds: str, page_id: str) -> None:
        self.unread.get(ds, {}).pop(page_id, None)
        async with self.engine.begin() as conn:
            await conn.execute(delete(PageUnread).where(PageUnread.page_id == page_id))

    async def _read_again(self, source: Source, handled: set[str], now: datetime) -> int:
        """Reads the unread pages that are due (a few per poll), as the query would have shown them."""
        ds = source.info.data_source_id
        due = [p for p, (at, _) in self.unread.get(ds, {}).items() if at <= now and p not in handled]
        acted = 0
        for page_id in due[:UNREAD_PER_POLL]:
            if not self.leading():
                break
            try:
                page = await self.notion.call("GET", f"pages/{page_id}")
            except NotionNotFound:
                await self._forget_unread(ds, page_id)  # deleted or unshared: nothing left to do
                continue
            except NotionError as exc:
                await self._keep_unread(ds, page_id, str(exc), now)
                continue
            if page.get("in_trash"):
                await self._forget_unread(ds, page_id)
                continue
            acted += await self._handle_or_keep(source, page, now)
        return acted

    async def _reconcile(self, source: Source, handled: set[str], now: datetime) -> int:
        """Every RECONCILE_S, one query for every Queued page, whatever its age: a Queued page with
        no production (a poll that could not act on it, a crash in between) is acted on now. Such a
        page is no new edit: it never confirms buying again what retention removed (it may be the
        refused Queued itself, its put-back not on the page yet); a pass that needs it is refused
        again."""
        ds = source.info.data_source_id
        last = self.reconciled.get(ds)
        if last is not None and (now - last).total_seconds() < RECONCILE_S:
            return 0
        self.reconciled[ds] = now
        kind = source.info.status_type
        body: JSON = {"filter": {"property": STATUS, kind: {"equals": Status.QUEUED.value}}, "page_size": 100}
        acted = 0
        while True:
            result = await self.notion.call("POST", f"data_sources/{ds}/query", body=body)
            for page in result.get("results", []):
                if not self.leading():
                    return acted
                page_id = str(page["id"])
                if page_id in handled:
                    continue  # acted on by this poll (a refusal may not be on the page yet)
                task = await self._task_of(page_id)
                if task is None or task.state != TaskState.ACTIVE:
                    self.log.warning("intake_reconciled_queued_page", page=page_id)
                    await self._forget_seen(page_id)
                    acted += await self._handle_or_keep(source, page, now, reconciling=True)
            if not result.get("has_more") or not result.get("next_cursor"):
                return acted
            body = {**body, "start_cursor": result["next_cursor"]}

    async def _forget_seen(self, page_id: str) -> None:
        self.unproduced.pop(page_id, None)
        async with self.engine.begin() as conn:
            await conn.execute(delete(PageSeen).where(PageSeen.page_id == page_id))

    async def _save_cursor(self, ds: str, now: datetime) -> None:
        async with self.engine.begin() as conn:
            insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            await conn.execute(
                insert(PollCursor)
                .values(data_source_id=ds, last_poll_started_at=now)
                .on_conflict_do_update(
                    index_elements=[PollCursor.data_source_id], set_={"last_poll_started_at": now}
                )
            )

    # One page --------------------------------------------------------------------------------------
    async def _handle(self, source: Source, page: JSON, now: datetime, *, reconciling: bool = False) -> int:
        page_id = str(page["id"])
        props = page.get("properties", {})
        status = option_name(props.get(STATUS))
        fingerprint = inputs_hash(props)
        action = action_for(status or "")
        if action is None:
            return await self._look_at(source, page, status, fingerprint, now)
        async with self.engine.connect() as conn:
            seen = (
                await conn.execute(
                    select(PageSeen.status, PageSeen.props_hash).where(PageSeen.page_id == page_id)
                )
            ).first()
        if seen is not None and seen.status == status and seen.props_hash == fingerprint:
            return 0
        self.unproduced.pop(page_id, None)
        same_status = seen is not None and seen.status == status
        await self._act(source, page, action, status or "", same_status, now, reconciling=reconciling)
        await self._remember(page_id, source.info.data_source_id, status, fingerprint, now)
        return 1

    async def _look_at(
        self, source: Source, page: JSON, status: str | None, fingerprint: str, now: datetime
    ) -> int:
        """A page in a status the operator does not set. On a page the daemon writes, it is put back
        if it is a hand edit; it is never remembered in page_seen: the snapshot may be older than
        the daemon's own latest write (recorded there by the outbox), and a stale status there would
        make that write look like the operator's next time. A page with no production is remembered
        once, in memory too, and costs nothing until it changes."""
        page_id = str(page["id"])
        if self.unproduced.get(page_id) == (status, fingerprint):
            return 0
        if await self._task_of(page_id) is not None:
            return 1 if await self._put_back(page, status, now) else 0
        await self._remember(page_id, source.info.data_source_id, status, fingerprint, now)
        self.unproduced[page_id] = (status, fingerprint)
        return 0

    async def _act(
        self,
        source: Source,
        page: JSON,
        action: Action,
        status: str,
        same_status: bool,
        now: datetime,
        *,
        reconciling: bool = False,
    ) -> None:
        page_id = str(page["id"])
        task = await self._task_of(page_id)
        gate = await self._waiting_gate(task.id) if task else None
        if same_status and task is not None and task.state == TaskState.ACTIVE:
            return  # only the page's inputs changed while it is in production: nothing to do
        decision = decide(action, task.state if task else None, gate)
        log = self.log.bind(page=page_id, action=action.value, task=task.id if task else None)
        # A Status set again after a refusal for files retention removed confirms buying them, when
        # it is a new edit over the put-back: decided before this Status becomes the baseline.
        rebuy = None
        if task is not None and task.rebuy_offer and decision.allowed and not same_status and not reconciling:
            rebuy = await self._confirmed_rebuy(page_id, status, task.rebuy_offer, now)
        async with self.engine.begin() as conn:
            await acknowledge_status(conn, page_id, status, now)
        if not decision.allowed:
            log.info("operator_action_refused", reason=decision.reason)
            await self._refuse(page, status, decision.reason, now)
            return
        try:
            await self._apply(source, page, action, task, now, rebuy)
        except ApprovalRefused as exc:
            log.info("operator_action_refused", reason=str(exc))
            await self._refuse(page, status, f"{exc} Then set Approved again", now)
        except MediaRemoved as exc:
            log.info("operator_action_refused", reason=exc.reason, rebuy_usd=exc.micros / 1_000_000)
            await self._refuse(
                page,
                status,
                f"{exc.reason}. Nothing was bought. Set Status to {status} again within "
                f"{OFFER_VALID.days} days to buy them",
                now,
                offer=exc,
            )
        except (PageProblem, PlanError, ServiceError) as exc:
            log.info("page_not_producible", problem=str(exc))
            await self._page_error(page_id, str(exc), now)
        else:
            log.info("operator_action_applied")
            self.pipeline.notify()

    async def _apply(
        self, source: Source, page: JSON, action: Action, task: Any, now: datetime, rebuy: int | None
    ) -> None:
        if action is Action.START:
            await self._start(source, page, now, rebuy)
        elif action is Action.CANCEL:
            await cancel_task(self.engine, task.id, now)
        elif action is Action.PAUSE:
            await pause_task(self.engine, task.id, now)
        elif (
            action is Action.APPROVE_STORYBOARD
            or action is Action.APPROVE_ASSETS
            or action is Action.APPROVE_FINAL
        ):
            if action is Action.APPROVE_FINAL:
                await self._publish_as_approved(page, task, now, rebuy)
            gate = gate_of(action)
            assert gate is not None
            await approve_gate(self.engine, task.id, gate, now)
        else:
            assert_never(action)

    async def _start(self, source: Source, page: JSON, now: datetime, rebuy: int | None = None) -> None:
        props = page.get("properties", {})
        problems: list[str] = []
        channel: Channel | None = None
        try:
            channel = self._channel_of(source, props)
        except PageProblem as exc:
            problems.append(str(exc))
        priority_name = option_name(props.get("Priority"))
        if priority_name and priority_name not in PRIORITY:
            problems.append(
                f"Priority '{priority_name}' is not a priority: pick High, Normal or Low (or leave it empty "
                "for Normal)."
            )
        block = await read_storyboard_block(self.notion, str(page["id"]))
        storyboard = None
        has_block = bool(block.text and block.text.strip())
        if block.text and has_block and len(block.text) > STORYBOARD_LIMIT:
            problems.append(
                f"The Storyboard block is {len(block.text):,} characters, over the limit of "
                f"{STORYBOARD_LIMIT:,}: shorten it by {characters(len(block.text) - STORYBOARD_LIMIT)}."
            )
        elif block.text and has_block:
            try:
                # Off the event loop: a long block takes seconds to parse, and the poll, the outbox
                # and the workers' heartbeats share the loop.
                storyboard = await asyncio.to_thread(parse_storyboard_yaml, block.text)
            except StoryboardError as exc:
                problems.append(_storyboard_problems(exc))
        title = plain_text(props.get("Title")).strip()
        topic = plain_text(props.get("Topic")).strip()
        direction = plain_text(props.get("Story Direction")).strip()
        problems += _text_problems("Title", title, YOUTUBE_TITLE_LIMIT, "YouTube's limit")
        if not has_block:
            # Title, Topic and Story Direction write the storyboard when the page has none of its own.
            if not topic:
                problems.append(
                    "Topic is empty: write what the video is about in Topic (or put a storyboard in a "
                    "Storyboard block)."
                )
            if not title:
                problems.append("Title is empty: give the video a title.")
            problems += _text_problems("Topic", topic, TOPIC_LIMIT, "the limit")
            problems += _text_problems("Story Direction", direction, DIRECTION_LIMIT, "the limit")
        publish: dict[str, Any] = {}
        if channel is not None and channel.youtube is not None:
            if "<" in title or ">" in title:
                problems.append("Title: YouTube refuses < and > in a title; remove them.")
            publish, publish_problems = publish_choices(props, now, channel.youtube.tags)
            problems += publish_problems
        if problems or channel is None:
            raise PageProblem("\n".join([*problems, "Fix this, then set Status to Queued again."]))
        request = {
            "title": title or (storyboard.title if storyboard else ""),
            "topic": topic,
            "direction": direction,
            "scenes": channel.scenes,
            **({"publish": publish} if channel.youtube is not None and publish else {}),
        }
        await self.pipeline.submit(
            channel.id,
            project_slug(str(page["id"])),
            request,
            now,
            storyboard=storyboard,
            page_id=str(page["id"]),
            priority=PRIORITY.get(priority_name or "Normal", 1),
            rebuy_micros=rebuy,
        )

    async def _publish_as_approved(self, page: JSON, task: Any, now: datetime, rebuy: int | None) -> None:
        """The page's publishing choices as they are when the video is approved: they may have
        been edited during the review. A problem with them refuses the approval (PageProblem)."""
        channel = self.pipeline.channels.get(task.channel_id)
        if channel is None or channel.youtube is None:
            return
        publish, problems = publish_choices(page.get("properties", {}), now, channel.youtube.tags)
        if problems:
            raise ApprovalRefused(" ".join(problems))
        await self.pipeline.set_publish(task.id, publish, now, rebuy_micros=rebuy)

    def _channel_of(self, source: Source, props: JSON) -> Channel:
        if len(source.channels) == 1 and not (
            source.channels[0].notion and source.channels[0].notion.channel_option
        ):
            return source.channels[0]
        chosen = option_name(props.get("Channel"))
        for channel in source.channels:
            if channel.notion and channel.notion.channel_option == chosen:
                return channel
        known = ", ".join(str(c.notion.channel_option) for c in source.channels if c.notion)
        if not chosen:
            raise PageProblem(f"Channel is empty: pick one of {known}.")
        raise PageProblem(f"Channel '{_clip(chosen)}' is not a channel of this daemon: pick one of {known}.")

    async def _put_back(self, page: JSON, status: str | None, now: datetime) -> bool:
        """A Status the operator may not set (a daemon status) on a page with a production: the
        daemon's own is written again, with one comment saying why.
        Returns whether it was put back. The page shown our previous Status while a newer one waits
        in the outbox is not a hand edit: its waiting writes go now (a page back from the trash)."""
        page_id = str(page["id"])
        row = await self._status_row(page_id)
        if row is None or status == row.value.get("status"):
            return False
        if (
            row.version > row.sent_version
            or row.recheck_at is not None
            or status == (row.sent_value or {}).get("status")
        ):
            # A write of ours is due (one that crossed the operator's is among them), one went
            # unanswered and may land late (the outbox writes the page again once it cannot), or
            # the page shows our previous write: not a hand edit; the outbox sets the page right.
            await self._due_now(page_id, now)
            return False
        # Under the outbox's lock, with the page read again: a write of ours may have landed after
        # the query read the page, and it is not a hand edit.
        async with self.write_lock:
            fresh = await self.notion.call("GET", f"pages/{page_id}")
            current = option_name(fresh.get("properties", {}).get(STATUS))
            row = await self._status_row(page_id)
            assert row is not None
            ours = {row.value.get("status"), (row.sent_value or {}).get("status")}
            if current != status or current in ours:
                return False
            async with self.engine.begin() as conn:
                await conn.execute(
                    update(Outbox)
                    .where(Outbox.id == row.id)
                    .values(sent_version=row.version - 1, next_attempt_at=now, updated_at=now)
                )
                body = put_back_comment(status or "(empty)", str(row.value.get("status")))
                key = f"{page_id}:put-back:{status}:{page.get('last_edited_time')}"
                await add_comment(conn, page_id, key, body, now)
        self.log.info("status_put_back", page=page_id, operator=status, shown=row.value.get("status"))
        return True

    async def _status_row(self, page_id: str) -> Any:
        async with self.engine.connect() as conn:
            return (
                await conn.execute(
                    select(
                        Outbox.id,
                        Outbox.value,
                        Outbox.sent_value,
                        Outbox.version,
                        Outbox.sent_version,
                        Outbox.recheck_at,
                    ).where(Outbox.page_id == page_id, Outbox.property == STATUS)
                )
            ).first()

    async def _due_now(self, page_id: str, now: datetime) -> None:
        """The page's deferred writes and comments go at the next flush (it was away: trashed). A
        write of ours that went unanswered keeps its recheck time: the page showing an older value
        does not prove that write has landed, and one sent now could be overwritten by it."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(Outbox)
                .where(
                    Outbox.page_id == page_id,
                    Outbox.version > Outbox.sent_version,
                    Outbox.next_attempt_at > now,
                )
                .values(next_attempt_at=now)
            )
            await conn.execute(
                update(Comment)
                .where(
                    Comment.page_id == page_id,
                    Comment.state == CommentState.PENDING,
                    Comment.next_attempt_at > now,
                )
                .values(next_attempt_at=now)
            )

    async def _refuse(
        self, page: JSON, status: str, reason: str, now: datetime, offer: MediaRemoved | None = None
    ) -> None:
        """The Status put back, with a comment saying why. With `offer` (a pass refused for files
        retention removed), what it would have bought is remembered, tied to this put-back: the same
        Status set again over it confirms that much (`_confirmed_rebuy`), no more."""
        page_id = str(page["id"])
        task = await self._task_of(page_id)
        # Read before the write transaction: on SQLite a second connection inside it would wait on it.
        restore = await self._shown(task.id, task.state) if task is not None else None
        async with self.engine.begin() as conn:
            # Keyed by the edit: the same edit seen again (a retried poll) is not commented twice.
            key = f"{page_id}:refused:{status}:{page.get('last_edited_time')}"
            await add_comment(conn, page_id, key, f"Status {status} was not applied: {reason}.", now)
            if restore is None:
                return
            await set_property(conn, page_id, STATUS, {"status": restore.value}, now)
            if offer is not None:
                put_back = (
                    await conn.execute(
                        select(Outbox.version).where(Outbox.page_id == page_id, Outbox.property == STATUS)
                    )
                ).scalar_one()
                await conn.execute(
                    update(Task).where(Task.id == task.id).values(rebuy_offer=offer.offer(now, put_back))
                )

    async def _confirmed_rebuy(
        self, page_id: str, status: str, offer: dict[str, Any], now: datetime
    ) -> int | None:
        """What the operator confirmed buying again (rebuy.offered) by setting `status` on a page the
        refusal's put-back had reached. The outbox records its own writes: under its lock (no write
        of ours in flight), the page's Status row must say the last Status on the page is one of the
        daemon's (an operator's one acknowledged is not), written and answered, and the page, read
        again, must show theirs over it. Otherwise (the put-back still queued or unanswered, a page
        read before it landed) nothing is confirmed: the pass is refused and asked again."""
        async with self.write_lock:
            row = await self._status_row(page_id)
            written = (row.sent_value or {}).get("status") if row is not None else None
            if row is None or row.recheck_at is not None or not written or action_for(written) is not None:
                return None
            fresh = await self.notion.call("GET", f"pages/{page_id}")
            if option_name(fresh.get("properties", {}).get(STATUS)) != status:
                return None
            return offered(offer, now, int(row.sent_version))

    async def _page_error(self, page_id: str, problem: str, now: datetime) -> None:
        problem = _printable(problem)
        task = await self._task_of(page_id)
        async with self.engine.begin() as conn:
            if task is not None and task.state == TaskState.ACTIVE:
                await conn.execute(
                    update(Task)
                    .where(Task.id == task.id)
                    .values(state=TaskState.ERROR, error=problem, updated_at=now)
                )
            await set_property(conn, page_id, STATUS, {"status": Status.ERROR.value}, now)
            await set_property(conn, page_id, "Error Log", {"text": problem}, now)
            digest = hashlib.sha256(problem.encode()).hexdigest()[:12]
            await add_comment(
                conn, page_id, f"{page_id}:problem:{digest}", f"This page needs a fix. {problem}", now
            )

    # DB helpers ------------------------------------------------------------------------------------
    async def _task_of(self, page_id: str) -> Any:
        async with self.engine.connect() as conn:
            return (
                await conn.execute(
                    select(Task.id, Task.state, Task.channel_id, Task.rebuy_offer).where(
                        Task.notion_page_id == page_id
                    )
                )
            ).first()

    async def _waiting_gate(self, task_id: int) -> str | None:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(Item.kind, Item.state).where(Item.task_id == task_id))
            return waiting_gate(ItemView(r.kind, r.state) for r in rows)

    async def _shown(self, task_id: int, state: str) -> Status:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(Item.kind, Item.state).where(Item.task_id == task_id))
            return shown_status(state, [ItemView(r.kind, r.state) for r in rows])

    async def _remember(
        self, page_id: str, ds: str, status: str | None, fingerprint: str, now: datetime
    ) -> None:
        async with self.engine.begin() as conn:
            insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            values = {"status": status, "props_hash": fingerprint, "seen_at": now, "data_source_id": ds}
            await conn.execute(
                insert(PageSeen)
                .values(page_id=page_id, **values)
                .on_conflict_do_update(index_elements=[PageSeen.page_id], set_=values)
            )


def _text_problems(name: str, text: str, limit: int, limit_owner: str) -> list[str]:
    """A page text's rules (those of the storyboard's text): no control characters, within a limit."""
    problems = []
    for position, char in enumerate(text):
        if char not in "\n\t" and unicodedata.category(char) in ("Cc", "Cs"):
            problems.append(
                f"{name} contains the control character U+{ord(char):04X} at character {position + 1:,}: "
                "remove it (only line breaks and tabs are allowed)."
            )
            break
    if len(text) > limit:
        problems.append(
            f"{name} is {len(text):,} characters, over {limit_owner} of {limit:,}: shorten it by "
            f"{characters(len(text) - limit)}."
        )
    return problems


def _storyboard_problems(exc: StoryboardError) -> str:
    """The storyboard's problems for the Error Log: the first ones, each clipped to a readable line."""
    shown = [_clip(p, PROBLEM_WIDTH) for p in exc.problems[:MAX_PROBLEMS]]
    more = len(exc.problems) - len(shown)
    if more:
        shown.append(f"... and {more:,} more; fix these first and the rest will be listed.")
    return "The Storyboard block of this page has problems:\n" + "\n".join(shown)


def _printable(text: str) -> str:
    """Operator text echoed in a problem, with control characters shown as escapes (\\x00): they
    would be invisible in the Error Log, and PostgreSQL stores no NUL in text or JSONB."""
    return "".join(
        char.encode("unicode_escape").decode("ascii")
        if char not in "\n\t" and unicodedata.category(char) in ("Cc", "Cs")
        else char
        for char in text
    )


def _clip(text: str, width: int = 100) -> str:
    """At most `width` characters, keeping both ends: a problem line says where first, the fix last."""
    if len(text) <= width:
        return text
    half = (width - 5) // 2
    return f"{text[:half]} ... {text[-half:]}"


def inputs_hash(props: JSON) -> str:
    relevant = {name: plain_text(props.get(name)) or option_name(props.get(name)) for name in INPUTS}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


_HINTS = {
    Status.STORYBOARD_REVIEW: "When the storyboard is right, set Storyboard Approved.",
    Status.ASSETS_REVIEW: "When the images are right, set Assets Approved.",
    Status.FINAL_REVIEW: "When the video is right, set Approved.",
    Status.PAUSED: "Set Queued to go on.",
    Status.ERROR: "Fix what the Error Log says, then set Queued.",
    Status.READY: "Set Queued to make it again.",
    Status.PUBLISHED: "Set Queued to make it again.",
    Status.CANCELLED: "Set Queued to start it again.",
}


def put_back_comment(status: str, shown: str) -> str:
    try:
        hint = _HINTS.get(Status(shown), "To stop the video set Cancelled; to hold it, Paused.")
    except ValueError:
        hint = ""
    if status not in set(Status) and status != "(empty)":
        known = ", ".join(s.value for s in sorted(ACTIONABLE))
        return (
            f"Status {status} is not one the daemon knows (a new option typed into the list?): it is "
            f"back to {shown}. The ones you can set: {known}. {hint}"
        ).strip()
    return f"Status {status} is the daemon's to show, not one to set: it is back to {shown}. {hint}".strip()
