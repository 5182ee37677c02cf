"""Tables: tasks, items and their edges, attempts, provider slots, ledger, outbox, comments, leader.

The DB is the single source of truth for pipeline state. Money is kept in integer micro-dollars
(exact on both databases). Enumerations are plain strings: no native enums (portable migrations).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from daemon.db.types import JSONType, UTCDateTime
from services.states import AttemptOutcome, CommentState, ItemState, TaskState, UploadState, check_sql

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: JSONType}


class Task(Base):
    __tablename__ = "task"
    __table_args__ = (
        UniqueConstraint("channel_id", "project_slug"),
        CheckConstraint(check_sql("state", TaskState), name="state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel_id: Mapped[str] = mapped_column(String(64))
    project_slug: Mapped[str] = mapped_column(String(64))
    notion_page_id: Mapped[str | None] = mapped_column(String(64), index=True)
    title: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16), default=TaskState.ACTIVE.value)  # a TaskState
    priority: Mapped[int] = mapped_column(Integer, default=1)  # 0 high, 1 normal, 2 low
    pass_no: Mapped[int] = mapped_column(Integer, default=1)
    # services/plan.py's PLAN_VERSION when the task was created: how its plan is built for good.
    plan_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    storyboard: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    request: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # topic, direction, ... from intake
    error: Mapped[str | None] = mapped_column(Text)
    final_video_path: Mapped[str | None] = mapped_column(Text)
    # What a new pass refused for media retention removed would buy again, and when it was asked
    # ({"at", "micros", "items", "put_back"}): a Queued set again soon after, over the put-back,
    # confirms it (daemon/rebuy.py).
    rebuy_offer: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Item(Base):
    __tablename__ = "item"
    __table_args__ = (
        UniqueConstraint("task_id", "key"),
        # The claim's hot path: ready items of a provider, by due time.
        Index("ix_item_claim", "provider", "state", "next_attempt_at"),
        Index("ix_item_lease", "lease_owner", "lease_token"),
        CheckConstraint(check_sql("state", ItemState), name="state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("task.id", ondelete="CASCADE"), index=True)
    channel_id: Mapped[str] = mapped_column(String(64))  # copied from the task: fair claims need it
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(96))
    input: Mapped[dict[str, Any]] = mapped_column(JSONType)
    input_hash: Mapped[str] = mapped_column(String(64))
    # blocked | ready | running | succeeded | failed | cancelled
    state: Mapped[str] = mapped_column(String(16))  # an ItemState
    provider: Mapped[str] = mapped_column(String(32))  # gemini | kling | elevenlabs | local | operator
    priority: Mapped[int] = mapped_column(Integer, default=1)  # claim order in a channel (item_priority)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_token: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]
    # A Kling task id, or a YouTube upload session URL (long: text, migration 0015).
    provider_job_id: Mapped[str | None] = mapped_column(Text)
    # Bumped each time the item is reset (new input, or a new pass after it failed): part of its
    # idempotency key, which every attempt of one generation shares, so a retry finds the job an
    # earlier attempt submitted instead of paying for another.
    generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    output_path: Mapped[str | None] = mapped_column(Text)
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    # What one run is expected to cost (the price table, PRICING_FILE), reserved in the ledger at claim time.
    estimate_micros: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    # When retention removed its output file (the item stays succeeded; daemon/rebuy.py decides
    # whether a new pass needs it again). Cleared when the item is made again.
    removed_at: Mapped[datetime | None]


class ItemEdge(Base):
    __tablename__ = "item_edge"

    item_id: Mapped[int] = mapped_column(ForeignKey("item.id", ondelete="CASCADE"), primary_key=True)
    depends_on: Mapped[int] = mapped_column(
        ForeignKey("item.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Attempt(Base):
    """Written before a script starts; its idempotency key is what a resumed run looks up."""

    __tablename__ = "attempt"
    __table_args__ = (
        UniqueConstraint("item_id", "number"),
        CheckConstraint(check_sql("outcome", AttemptOutcome), name="outcome"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("item.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    idempotency_key: Mapped[str] = mapped_column(String(128), index=True)
    output_path: Mapped[str] = mapped_column(Text)
    lease_token: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(128))
    pid: Mapped[int | None] = mapped_column(Integer)
    provider_job_id: Mapped[str | None] = mapped_column(Text)
    # running | succeeded | transient | permanent | timeout | lost | fenced | released | cancelled
    outcome: Mapped[str] = mapped_column(
        String(16), default=AttemptOutcome.RUNNING.value
    )  # an AttemptOutcome
    exit_code: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str | None] = mapped_column(Text)
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class ProviderSlot(Base):
    """One row per allowed concurrent item of a provider; a claim takes a free row.

    Freeness is decided on this row alone (holder NULL or its lease expired), so PostgreSQL's
    re-check of a locked row under READ COMMITTED sees a slot another daemon just took.
    """

    __tablename__ = "provider_slot"

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    slot_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int | None] = mapped_column(Integer)
    lease_token: Mapped[str | None] = mapped_column(String(64), index=True)
    expires_at: Mapped[datetime | None]


class ChannelShare(Base):
    """Stride scheduling per provider: the channel with the lowest turn goes next, and each claim
    moves its channel's turn on by 1/weight, so slots are shared by weight."""

    __tablename__ = "channel_share"

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Double as the migration made it (a bare float is Float before SQLAlchemy 2.1, Double after).
    turn: Mapped[float] = mapped_column(Double, default=0.0)


class BudgetLock(Base):
    """One row per channel and budget day: claims that reserve money for a channel take it, so two
    daemons cannot both spend the last dollar."""

    __tablename__ = "budget_lock"

    channel_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)


class Ledger(Base):
    """Money: a reservation before an item starts, replaced by the actual cost when it is done."""

    __tablename__ = "ledger"
    __table_args__ = (UniqueConstraint("item_id", "attempt_no", "entry"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("task.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[int] = mapped_column(Integer)
    attempt_no: Mapped[int] = mapped_column(Integer)
    channel_id: Mapped[str] = mapped_column(String(64))
    entry: Mapped[str] = mapped_column(String(16))  # reservation | actual
    amount_micros: Mapped[int] = mapped_column(BigInteger)
    day: Mapped[str] = mapped_column(String(10), index=True)  # budget day, YYYY-MM-DD
    open: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]


class Outbox(Base):
    """Pending Notion property writes: one row per (page, property), newest value wins."""

    __tablename__ = "outbox"
    __table_args__ = (UniqueConstraint("page_id", "property"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    page_id: Mapped[str] = mapped_column(String(64))
    property: Mapped[str] = mapped_column(String(64))
    value: Mapped[dict[str, Any]] = mapped_column(JSONType)
    version: Mapped[int] = mapped_column(Integer, default=1)
    sent_version: Mapped[int] = mapped_column(Integer, default=0)
    sent_value: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime]
    # A write of this row went unanswered (a timeout, a 5xx, the daemon killed mid-call) and Notion
    # may still apply it late, over newer values: at this time the page's values are written again.
    recheck_at: Mapped[datetime | None]
    # The value that write carried (cleared once answered): a page showing the operator's earlier
    # Status at the recheck may mean ours never landed, or that they set theirs again after it did.
    out_value: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class Comment(Base):
    """Pending Notion comments, each with a unique key so it is written once."""

    __tablename__ = "comment"
    __table_args__ = (CheckConstraint(check_sql("state", CommentState), name="state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    page_id: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(160), unique=True)
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=CommentState.PENDING.value)  # a CommentState
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    # A POST went out and no answer came (or the daemon died mid-call): it may land late, so the
    # comment is not posted again before this time, and is looked for on the page first.
    recheck_at: Mapped[datetime | None]
    notion_id: Mapped[str | None] = mapped_column(String(64))  # the comment Notion made, once known


class NotionUpload(Base):
    """A file sent to Notion, once per content: its hash and Notion's upload id, so a retry after a
    crash finds its earlier upload instead of sending the bytes again."""

    __tablename__ = "notion_upload"
    __table_args__ = (CheckConstraint(check_sql("state", UploadState), name="state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    filename: Mapped[str] = mapped_column(String(200))  # carries the hash: found again by name
    content_type: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # an UploadState
    upload_id: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[datetime | None]  # an upload not attached by then is gone
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class PollCursor(Base):
    __tablename__ = "poll_cursor"

    data_source_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_poll_started_at: Mapped[datetime | None]


class PageSeen(Base):
    """What intake last knew of a page: its status (ours or the operator's) and a hash of its inputs."""

    __tablename__ = "page_seen"

    page_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    data_source_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str | None] = mapped_column(String(64))
    props_hash: Mapped[str] = mapped_column(String(64))
    seen_at: Mapped[datetime]


class PageUnread(Base):
    """A page intake was shown but could not read (its blocks, a retrieve): read again until it is,
    across restarts, since the poll's window moves on without it."""

    __tablename__ = "page_unread"

    page_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    data_source_id: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    first_failed_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]


class Leader(Base):
    """The singleton jobs' lease (intake, outbox) when several daemons share the DB."""

    __tablename__ = "leader"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(128))
    token: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[datetime | None]


# Partial index for claims on PostgreSQL and SQLite alike (only ready rows are hot).
Index(
    "ix_item_ready",
    Item.provider,
    Item.next_attempt_at,
    postgresql_where=text("state = 'ready'"),
    sqlite_where=text("state = 'ready'"),
)
# The fair claim: a provider's channels with ready items, and each channel's ready items in claim
# order (priority, task, item), read from the front of this index.
Index(
    "ix_item_fair",
    Item.provider,
    Item.channel_id,
    Item.priority,
    Item.task_id,
    Item.id,
    postgresql_where=text("state = 'ready'"),
    sqlite_where=text("state = 'ready'"),
)


class YouTubeAccount(Base):
    """A channel's YouTube sign-in (`nvd youtube-auth`): its refresh token, encrypted
    with TOKEN_KEY (Fernet), never in logs or Notion. `revoked_at`: Google refused the token
    (expired or revoked); the channel's uploads wait until it signs in again."""

    __tablename__ = "youtube_account"

    channel_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    project: Mapped[str] = mapped_column(String(64))  # the Google Cloud project that signed it in
    refresh_token: Mapped[bytes] = mapped_column(LargeBinary)  # Fernet token
    youtube_channel: Mapped[str | None] = mapped_column(String(200))  # its title, for the operator
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(Text)


class YouTubeQuota(Base):
    """What a Google Cloud project used of its YouTube quota on a Pacific day: uploads (their own
    bucket) and units (everything else). Reserved before each upload runs, set right by the
    script's own count afterwards."""

    __tablename__ = "youtube_quota"

    project: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # America/Los_Angeles date
    uploads: Mapped[int] = mapped_column(Integer, default=0)
    units: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime]
