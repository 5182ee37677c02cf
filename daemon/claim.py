"""Claim: one short transaction takes a provider slot and a ready item, and writes the attempt.

The slot row is what bounds a provider's concurrency across every daemon on the database; the
attempt (with its idempotency key and its own output path) exists before any script starts.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from daemon.budget import Budget, day_of, lock_channel_day, refusal, refusal_text, reserve
from daemon.db.engine import PgDriver, pg_driver, sqlite_driver, sqlite_time
from daemon.db.models import Attempt, ChannelShare, Item, ItemEdge, ProviderSlot, Task
from daemon.fairness import advance, effective_pass, floor_pass


@dataclass(frozen=True)
class Claimed:
    item_id: int
    task_id: int
    channel_id: str
    project_slug: str
    kind: str
    key: str
    provider: str
    input: dict[str, Any]
    input_hash: str
    attempt_no: int
    lease_token: str
    idempotency_key: str
    attempt_output: str  # relative to the workspace
    # The provider job an earlier attempt of this generation recorded: resumed, never paid again.
    resume: str | None
    deps: dict[str, str] = field(default_factory=dict)  # dependency key -> its output path


def idempotency_key(channel: str, slug: str, key: str, input_hash: str, generation: int) -> str:
    """Deterministic per (item, input, generation), shared by the generation's attempts: a retry
    after a crash or a timeout submits under the same key, so the provider's copy is found, not
    paid for again. Unique per provider account; readable in logs."""
    digest = hashlib.sha256(f"{channel}/{slug}/{key}/{input_hash}/{generation}".encode()).hexdigest()[:12]
    return f"{slug[:16]}-{key[:24]}-g{generation}-{digest}"


def attempt_output(channel: str, slug: str, key: str, number: int, extension: str) -> str:
    return f"channels/{channel}/projects/{slug}/attempts/{key}-a{number}{extension}"


async def ensure_slots(engine: AsyncEngine, limits: dict[str, int]) -> None:
    """Makes the slot rows match the configured limits (extra free rows removed)."""
    async with engine.begin() as conn:
        for provider, limit in limits.items():
            rows = await conn.execute(select(ProviderSlot.slot_no).where(ProviderSlot.provider == provider))
            have = {r[0] for r in rows}
            missing = [n for n in range(limit) if n not in have]
            if missing:
                await conn.execute(
                    insert(ProviderSlot), [{"provider": provider, "slot_no": n} for n in missing]
                )
            await conn.execute(
                delete(ProviderSlot).where(
                    ProviderSlot.provider == provider,
                    ProviderSlot.slot_no >= limit,
                    ProviderSlot.item_id.is_(None),
                )
            )


@dataclass
class ClaimPolicy:
    """Who goes first and what may be spent: channel weights, budgets, and the budget day."""

    weights: Mapping[str, int] = field(default_factory=dict)
    budgets: Mapping[str, Budget] = field(default_factory=dict)
    day_of: Callable[[datetime], str] = field(default_factory=lambda: day_of("UTC"))
    # Tasks a claim found over budget, with the message; the caller marks them waiting (outside
    # the claim's transaction, so the claim never takes a task lock while holding an item lock).
    over_budget: list[tuple[int, str]] = field(default_factory=list)


DEFAULT_POLICY = ClaimPolicy()
CANDIDATES = 4  # ready items looked at per claim before giving up on budget-blocked tasks


async def claim(
    engine: AsyncEngine,
    provider: str,
    owner: str,
    now: datetime,
    ttl: float,
    extension_for: Mapping[str, str],
    policy: ClaimPolicy = DEFAULT_POLICY,
) -> Claimed | None:
    """Claims one ready item of `provider`, or returns None when no slot or no affordable item is free."""
    if engine.dialect.name == "sqlite":
        return await _claim_sqlite(engine, provider, owner, now, ttl, extension_for, policy)
    fast = await _claim_pg(engine, provider, owner, now, ttl, extension_for, policy)
    if fast is not _GENERAL:
        return fast if isinstance(fast, Claimed) else None
    return await _claim_general(engine, provider, owner, now, ttl, extension_for, policy)


async def _claim_general(
    engine: AsyncEngine,
    provider: str,
    owner: str,
    now: datetime,
    ttl: float,
    extension_for: Mapping[str, str],
    policy: ClaimPolicy,
) -> Claimed | None:
    """The claim as a transaction of single SQLAlchemy statements, the definition the fast paths
    below follow. PostgreSQL's fast path hands a claim over to it in two rare cases: a channel
    whose first ready items are all ineligible, and a budgeted item taken by another daemon
    between two statements."""
    async with engine.begin() as conn:
        slot = await _free_slot(conn, provider, now)
        if slot is None:
            return None
        floor = await floor_pass(conn, provider, now)
        row, day = await _affordable_item(conn, provider, now, floor, policy)
        if row is None:
            return None
        token = uuid.uuid4().hex
        expires = now + timedelta(seconds=ttl)
        await conn.execute(
            update(ProviderSlot)
            .where(ProviderSlot.provider == provider, ProviderSlot.slot_no == slot)
            .values(item_id=row.id, lease_token=token, expires_at=expires)
        )
        number = row.attempts + 1
        await conn.execute(
            update(Item)
            .where(Item.id == row.id)
            .values(
                state="running",
                lease_owner=owner,
                lease_token=token,
                lease_expires_at=expires,
                attempts=number,
                updated_at=now,
            )
        )
        if day is not None:
            await reserve(conn, row.task_id, row.id, number, row.channel_id, day, row.estimate_micros, now)
        await advance(conn, provider, row.channel_id, floor, policy.weights)
        slug = await conn.scalar(select(Task.project_slug).where(Task.id == row.task_id))
        assert slug is not None
        key = idempotency_key(row.channel_id, slug, row.key, row.input_hash, row.generation)
        out = attempt_output(row.channel_id, slug, row.key, number, extension_for.get(row.kind, ""))
        await conn.execute(
            insert(Attempt).values(
                item_id=row.id,
                number=number,
                idempotency_key=key,
                output_path=out,
                lease_token=token,
                owner=owner,
                outcome="running",
                started_at=now,
                cost_micros=0,
            )
        )
        deps = await dependency_outputs(conn, row.id)
        return Claimed(
            item_id=row.id,
            task_id=row.task_id,
            channel_id=row.channel_id,
            project_slug=slug,
            kind=row.kind,
            key=row.key,
            provider=provider,
            input=dict(row.input),
            input_hash=row.input_hash,
            attempt_no=number,
            lease_token=token,
            idempotency_key=key,
            attempt_output=out,
            resume=row.provider_job_id,
            deps=deps,
        )


async def _affordable_item(
    conn: AsyncConnection, provider: str, now: datetime, floor: float, policy: ClaimPolicy
) -> tuple[Any, str | None]:
    """The fairest ready item whose estimated cost fits its budgets, and the budget day it is
    reserved on (None when its channel has no budget)."""
    skipped: list[int] = []
    for _ in range(CANDIDATES):
        row = await _ready_item(conn, provider, now, floor, skipped)
        if row is None:
            return None, None
        budget = policy.budgets.get(row.channel_id)
        if budget is None:
            return row, None
        day = policy.day_of(now)
        await lock_channel_day(conn, row.channel_id, day)
        why = await refusal(conn, row.task_id, row.channel_id, day, row.estimate_micros, row.key, budget)
        if why is None:
            return row, day
        policy.over_budget.append((row.task_id, why))
        skipped.append(row.task_id)
    return None, None


async def ready_providers(engine: AsyncEngine, providers: list[str], now: datetime) -> list[str]:
    """Which of these providers have a ready item due now in an active task (one indexed query)."""
    if not providers:
        return []
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(Item.provider)
            .join(Task, and_(Task.id == Item.task_id, Task.state == "active"))
            .where(Item.provider.in_(providers), Item.state == "ready", Item.next_attempt_at <= now)
            .group_by(Item.provider)
        )
        found = {r[0] for r in rows}
    return [p for p in providers if p in found]


async def _free_slot(conn: AsyncConnection, provider: str, now: datetime) -> int | None:
    query = (
        select(ProviderSlot.slot_no)
        .where(
            ProviderSlot.provider == provider,
            or_(ProviderSlot.item_id.is_(None), ProviderSlot.expires_at < now),
        )
        .order_by(ProviderSlot.slot_no)
        .limit(1)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return await conn.scalar(query)


async def _ready_item(
    conn: AsyncConnection, provider: str, now: datetime, floor: float, skipped: list[int]
) -> Any:
    """The next item in fair order: the channel furthest behind its share, then High before
    Normal before Low, then the oldest task."""
    query = (
        select(
            Item.id,
            Item.task_id,
            Item.channel_id,
            Item.kind,
            Item.key,
            Item.input,
            Item.input_hash,
            Item.attempts,
            Item.provider_job_id,
            Item.estimate_micros,
            Item.generation,
        )
        .join(Task, and_(Task.id == Item.task_id, Task.state == "active"))
        .outerjoin(
            ChannelShare, and_(ChannelShare.provider == provider, ChannelShare.channel_id == Item.channel_id)
        )
        .where(Item.provider == provider, Item.state == "ready", Item.next_attempt_at <= now)
        .order_by(effective_pass(conn, floor), Item.priority, Item.task_id, Item.id)
        .limit(1)
    )
    if skipped:
        query = query.where(Item.task_id.not_in(skipped))
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(of=Item, skip_locked=True)
    return (await conn.execute(query)).first()


async def dependency_outputs(conn: AsyncConnection, item_id: int) -> dict[str, str]:
    rows = await conn.execute(
        select(Item.key, Item.output_path)
        .join(ItemEdge, ItemEdge.depends_on == Item.id)
        .where(ItemEdge.item_id == item_id)
    )
    return {r.key: r.output_path for r in rows if r.output_path}


async def running_count(conn: AsyncConnection, provider: str) -> int:
    return int(
        await conn.scalar(
            select(func.count()).select_from(Item).where(Item.provider == provider, Item.state == "running")
        )
        or 0
    )


# The fast paths ----------------------------------------------------------------------------------
# Both take the general path's decisions, with the fewest round trips each database allows:
#   slot:    the lowest free slot row of the provider (holder NULL or its lease expired);
#   item:    the fairest eligible item (ready, due, in an active task): channel by effective pass
#            (its pass lifted to the floor, the lowest pass among channels with eligible items; a
#            channel never served goes just below the floor), then priority, task, item;
#   budget:  only when the item's channel has one: under the channel-day lock, the video's and
#            the day's spent-or-reserved money plus the estimate must fit, or the task is noted
#            over budget and skipped (at most CANDIDATES tasks per claim), and the estimate is
#            reserved;
#   writes:  the lease on slot and item, attempts + 1, the channel's pass advanced by 1/weight, the
#            attempt row with its idempotency key and output path; the claim returns the item with
#            its dependencies' outputs.
# The fair order is read from the front of ix_item_fair instead of by sorting the whole ready
# backlog: the channels with ready items (a loose index scan), then each channel's first eligible
# items in (priority, task, id) order. The cost no longer grows with the backlog.
_GENERAL: Any = object()


def _strides(weights: Mapping[str, int]) -> str:
    """Each channel's stride (1/weight) for the statement's advance. PostgreSQL computes the general
    path's greatest(pass, floor) + stride as greatest(pass + stride, floor + stride): the same
    double, since rounding is monotonic."""
    return json.dumps({channel: 1.0 / max(1, weight) for channel, weight in weights.items()})


def _claimed(row: Mapping[str, Any], provider: str, token: str, deps: Mapping[str, str]) -> Claimed:
    return Claimed(
        item_id=row["id"],
        task_id=row["task_id"],
        channel_id=row["channel_id"],
        project_slug=row["slug"],
        kind=row["kind"],
        key=row["key"],
        provider=provider,
        input=dict(row["input"]),
        input_hash=row["input_hash"],
        attempt_no=row["attempts"],
        lease_token=token,
        idempotency_key=row["idempotency_key"],
        attempt_output=row["attempt_output"],
        resume=row["provider_job_id"],
        deps=dict(deps),
    )


# PostgreSQL ------------------------------------------------------------------------------------------
# One statement of data-modifying CTEs, run in autocommit (its own transaction: one round trip):
# lock the slot (SKIP LOCKED), choose the item and lock it (SKIP LOCKED), write everything, return
# the claim. Each channel offers its first _CANDIDATES eligible items, so items other claims hold
# locked are passed over as the general path's SKIP LOCKED would.
#
# Nothing is written when the chosen item's channel has a budget ($8): the budgeted claim follows,
# in a transaction that takes the channel-day lock first (a new snapshot must see the money other
# claims reserved before it). Nothing is written either, and the general path claims, when a
# channel's first _WINDOW ready items are all ineligible (a paused task's backlog, a provider's
# backoff), so that its first eligible item, further on, is not known here.
_WINDOW = 64
_CANDIDATES = 8

# The chosen item's lease, attempt and pass, once `go` holds (id, floor, slot_no) of a locked item
# and slot; $2 now, $3 token, $4 expires, $5 owner, $6 strides, $7 extensions.
_CLAIM_WRITES_PG = """
taken AS (
    UPDATE provider_slot s SET item_id = go.id, lease_token = $3, expires_at = $4
    FROM go WHERE s.provider = $1 AND s.slot_no = go.slot_no
    RETURNING s.slot_no
),
run AS (
    UPDATE item i SET state = 'running', lease_owner = $5, lease_token = $3, lease_expires_at = $4,
                      attempts = i.attempts + 1, updated_at = $2
    FROM go WHERE i.id = go.id
    RETURNING i.id, i.task_id, i.channel_id, i.kind, i.key, i.input, i.input_hash, i.attempts,
              i.provider_job_id, i.generation, i.estimate_micros, go.floor
),
named AS (
    SELECT r.*,
        left(r.slug, 16) || '-' || left(r.key, 24) || '-g' || r.generation || '-'
            || left(encode(sha256(convert_to(concat_ws('/', r.channel_id, r.slug, r.key,
                                                       r.input_hash, r.generation), 'UTF8')),
                           'hex'), 12) AS idempotency_key,
        'channels/' || r.channel_id || '/projects/' || r.slug || '/attempts/' || r.key
            || '-a' || r.attempts || coalesce($7::jsonb ->> r.kind, '') AS attempt_output
    FROM (SELECT run.*, (SELECT t.project_slug FROM task t WHERE t.id = run.task_id) AS slug
          FROM run OFFSET 0) r
),
att AS (
    INSERT INTO attempt (item_id, number, idempotency_key, output_path, lease_token, owner, outcome,
                         started_at, cost_micros)
    SELECT id, attempts, idempotency_key, attempt_output, $3, $5, 'running', $2, 0 FROM named
    RETURNING id
),
share AS (
    INSERT INTO channel_share AS cs (provider, channel_id, pass_value)
    SELECT $1, channel_id, floor + coalesce(($6::jsonb ->> channel_id)::float8, 1.0) FROM run
    ON CONFLICT (provider, channel_id) DO UPDATE
    SET pass_value = greatest(cs.pass_value + coalesce(($6::jsonb ->> excluded.channel_id)::float8, 1.0),
                              excluded.pass_value)
    RETURNING 1
)"""

_CLAIMED_COLUMNS_PG = """
       named.id, named.task_id, named.channel_id, named.kind, named.key, named.input,
       named.input_hash, named.attempts, named.provider_job_id, named.generation, named.slug,
       named.idempotency_key, named.attempt_output,
       (SELECT coalesce(jsonb_object_agg(d.key, d.output_path), '{}'::jsonb)
        FROM item_edge e CROSS JOIN LATERAL (
            SELECT d.key, d.output_path FROM item d WHERE d.id = e.depends_on OFFSET 0) d
        WHERE e.item_id = named.id AND d.output_path <> '') AS deps"""

# $1 provider, $2 now, $3 token, $4 expires, $5 owner, $6 strides, $7 extensions, $8 channels with
# a budget, $9 tasks skipped (over budget).
CLAIM_PG = f"""
WITH RECURSIVE chans(channel_id) AS (
    SELECT min(channel_id) FROM item WHERE provider = $1 AND state = 'ready'
  UNION ALL
    SELECT (SELECT min(i.channel_id) FROM item i
            WHERE i.provider = $1 AND i.state = 'ready' AND i.channel_id > c.channel_id)
    FROM chans c WHERE c.channel_id IS NOT NULL
),
slot AS (
    SELECT slot_no FROM provider_slot
    WHERE provider = $1 AND (item_id IS NULL OR expires_at < $2)
    ORDER BY slot_no LIMIT 1
    FOR UPDATE SKIP LOCKED
),
live AS (
    SELECT channel_id FROM chans WHERE channel_id IS NOT NULL AND EXISTS (SELECT FROM slot)
),
cand AS (
    SELECT x.id, x.channel_id FROM live CROSS JOIN LATERAL (
        SELECT w.id, w.channel_id FROM (
            SELECT i.id, i.channel_id, i.priority, i.task_id, i.next_attempt_at FROM item i
            WHERE i.provider = $1 AND i.channel_id = live.channel_id AND i.state = 'ready'
            ORDER BY i.priority, i.task_id, i.id
            LIMIT {_WINDOW}
        ) w
        WHERE w.next_attempt_at <= $2 AND w.task_id <> ALL ($9::int[])
          AND (SELECT t.state FROM task t WHERE t.id = w.task_id) = 'active'
        ORDER BY w.priority, w.task_id, w.id
        LIMIT {_CANDIDATES}
    ) x
),
blind AS (
    SELECT FROM live
    WHERE CASE WHEN EXISTS (SELECT FROM cand WHERE cand.channel_id = live.channel_id) THEN false
               ELSE (SELECT count(*) FROM (
                        SELECT FROM item i
                        WHERE i.provider = $1 AND i.channel_id = live.channel_id AND i.state = 'ready'
                        LIMIT {_WINDOW}) w) = {_WINDOW} END
),
fl AS (
    SELECT coalesce(min(cs.pass_value), 0)::float8 AS f
    FROM channel_share cs
    WHERE cs.provider = $1 AND cs.channel_id IN (SELECT channel_id FROM cand)
),
pick AS (
    SELECT i.id, i.channel_id, i.task_id, i.key, i.estimate_micros, (SELECT f FROM fl) AS floor
    FROM item i
    LEFT JOIN channel_share cs ON cs.provider = $1 AND cs.channel_id = i.channel_id
    WHERE i.id = ANY (ARRAY(SELECT id FROM cand)) AND i.state = 'ready' AND i.next_attempt_at <= $2
      AND NOT EXISTS (SELECT FROM blind)
    ORDER BY CASE WHEN cs.pass_value IS NULL THEN (SELECT f FROM fl) - 0.5
                  ELSE greatest(cs.pass_value, (SELECT f FROM fl)) END,
             i.priority, i.task_id, i.id
    LIMIT 1
    FOR UPDATE OF i SKIP LOCKED
),
go AS (
    SELECT pick.id, pick.floor, slot.slot_no FROM pick, slot
    WHERE pick.channel_id <> ALL ($8::text[])
),{_CLAIM_WRITES_PG}
SELECT EXISTS (SELECT FROM blind) AS blind, pick.id AS picked, pick.channel_id AS picked_channel,
       pick.task_id AS picked_task, pick.key AS picked_key, pick.estimate_micros AS picked_estimate,
       pick.floor AS picked_floor,{_CLAIMED_COLUMNS_PG}
FROM (SELECT) one LEFT JOIN pick ON true LEFT JOIN named ON true
"""

# Money spent or held: actual costs and open reservations (budget._spent).
_SPENT = "(entry = 'actual' OR (entry = 'reservation' AND open))"

# The budgeted claim of the item CLAIM_PG chose, in the transaction that holds its channel-day
# lock: this statement's snapshot sees every reservation made before the lock was ours. Nothing is
# written unless the estimate fits, and the item is still ready and free, and a slot is free.
# $1-$7 as CLAIM_PG, $8 item, $9 floor, $10 estimate, $11 day, $12 per-video limit,
# $13 per-day limit, $14 channel, $15 task.
CLAIM_BUDGETED_PG = f"""
WITH spent AS (
    SELECT
        (SELECT coalesce(sum(amount_micros), 0) FROM ledger
         WHERE task_id = $15 AND {_SPENT})::bigint AS task_spent,
        (SELECT coalesce(sum(amount_micros), 0) FROM ledger
         WHERE channel_id = $14 AND day = $11 AND {_SPENT})::bigint AS day_spent
),
fits AS (
    SELECT task_spent + $10 <= $12 AND day_spent + $10 <= $13 AS ok FROM spent
),
slot AS (
    SELECT slot_no FROM provider_slot
    WHERE provider = $1 AND (item_id IS NULL OR expires_at < $2) AND (SELECT ok FROM fits)
    ORDER BY slot_no LIMIT 1
    FOR UPDATE SKIP LOCKED
),
pick AS (
    SELECT i.id FROM item i
    WHERE i.id = $8 AND i.state = 'ready' AND i.next_attempt_at <= $2 AND EXISTS (SELECT FROM slot)
      AND (SELECT t.state FROM task t WHERE t.id = i.task_id) = 'active'
    FOR UPDATE SKIP LOCKED
),
go AS (
    SELECT pick.id, $9::float8 AS floor, slot.slot_no FROM pick, slot
),{_CLAIM_WRITES_PG},
reserved AS (
    INSERT INTO ledger (task_id, item_id, attempt_no, channel_id, entry, amount_micros, day, open,
                        created_at)
    SELECT task_id, id, attempts, channel_id, 'reservation', $10, $11, true, $2 FROM run
    RETURNING 1
)
SELECT spent.task_spent, spent.day_spent, (SELECT ok FROM fits) AS fits,{_CLAIMED_COLUMNS_PG}
FROM spent LEFT JOIN named ON true
"""

_PLAIN = re.compile(r"[A-Za-z0-9_.:-]*")


def _budget_lock_pg(channel: str, day: str) -> tuple[str, tuple[Any, ...]]:
    """The general path's lock_channel_day, as two statements to send with BEGIN: inlined when the
    values are plain (one round trip), else with parameters (two)."""
    if _PLAIN.fullmatch(channel) and _PLAIN.fullmatch(day):
        values = f"'{channel}', '{day}'"
        return (
            f"INSERT INTO budget_lock (channel_id, day) VALUES ({values}) ON CONFLICT DO NOTHING; "
            f"SELECT FROM budget_lock WHERE (channel_id, day) = ({values}) FOR UPDATE",
            (),
        )
    return (
        "WITH lock AS (INSERT INTO budget_lock (channel_id, day) VALUES ($1, $2) "
        "ON CONFLICT (channel_id, day) DO UPDATE SET day = excluded.day RETURNING 1) SELECT FROM lock",
        (channel, day),
    )


async def _claim_pg(
    engine: AsyncEngine,
    provider: str,
    owner: str,
    now: datetime,
    ttl: float,
    extension_for: Mapping[str, str],
    policy: ClaimPolicy,
) -> Any:
    """Claimed, None, or _GENERAL when the claim is the general path's to make."""
    token = uuid.uuid4().hex
    args = (
        provider,
        now,
        token,
        now + timedelta(seconds=ttl),
        owner,
        _strides(policy.weights),
        json.dumps(dict(extension_for)),
    )
    skipped: list[int] = []
    async with pg_driver(engine) as db:
        for _ in range(CANDIDATES):
            row = await db.fetchrow(CLAIM_PG, *args, list(policy.budgets), skipped)
            if row["blind"]:
                return _GENERAL
            if row["id"] is not None:
                return await _checked(db, _claimed(row, provider, token, row["deps"]), extension_for, row)
            if row["picked"] is None:
                return None  # no free slot, or nothing eligible
            budget = policy.budgets[row["picked_channel"]]
            day = policy.day_of(now)
            first, first_args = _budget_lock_pg(row["picked_channel"], day)
            async with db.transaction(first=first, first_args=first_args):
                got = await db.fetchrow(
                    CLAIM_BUDGETED_PG,
                    *args,
                    row["picked"],
                    row["picked_floor"],
                    row["picked_estimate"],
                    day,
                    budget.per_video_micros,
                    budget.per_day_micros,
                    row["picked_channel"],
                    row["picked_task"],
                )
            if got["id"] is not None:
                return await _checked(db, _claimed(got, provider, token, got["deps"]), extension_for, got)
            if got["fits"]:
                return _GENERAL  # the item or the slot was taken meanwhile: settle it the slow way
            why = refusal_text(
                got["task_spent"],
                got["day_spent"],
                row["picked_channel"],
                day,
                row["picked_estimate"],
                row["picked_key"],
                budget,
            )
            assert why is not None
            policy.over_budget.append((row["picked_task"], why))
            skipped.append(row["picked_task"])
    return None


async def _checked(
    db: PgDriver, c: Claimed, extension_for: Mapping[str, str], row: Mapping[str, Any]
) -> Claimed:
    """The Python functions define the idempotency key and the attempt's output path (earlier
    attempts may have come from the general path). The statement's spelling agrees on a UTF-8
    database; any other gets its attempt row repaired here."""
    key = idempotency_key(c.channel_id, c.project_slug, c.key, c.input_hash, row["generation"])
    out = attempt_output(c.channel_id, c.project_slug, c.key, c.attempt_no, extension_for.get(c.kind, ""))
    if (key, out) == (c.idempotency_key, c.attempt_output):
        return c
    await db.fetch(
        "UPDATE attempt SET idempotency_key = $1, output_path = $2 WHERE item_id = $3 AND number = $4",
        key,
        out,
        c.item_id,
        c.attempt_no,
    )
    return replace(c, idempotency_key=key, attempt_output=out)


# SQLite ------------------------------------------------------------------------------------------
# BEGIN IMMEDIATE serialises every writer, so the statements run one after another with nothing
# in between: no row locks, and each channel's single first eligible item is exact.
_PICK_SQLITE = """
WITH RECURSIVE chans(channel_id) AS (
    SELECT (SELECT min(channel_id) FROM item WHERE provider = :provider AND state = 'ready')
  UNION ALL
    SELECT (SELECT min(i.channel_id) FROM item i
            WHERE i.provider = :provider AND i.state = 'ready' AND i.channel_id > c.channel_id)
    FROM chans c WHERE c.channel_id IS NOT NULL
),
firsts AS (
    SELECT (SELECT i.id FROM item i
            WHERE i.provider = :provider AND i.channel_id = c.channel_id AND i.state = 'ready'
              AND i.next_attempt_at <= :now
              AND i.task_id NOT IN (SELECT value FROM json_each(:skipped))
              AND (SELECT t.state FROM task t WHERE t.id = i.task_id) = 'active'
            ORDER BY i.priority, i.task_id, i.id LIMIT 1) AS id
    FROM chans c WHERE c.channel_id IS NOT NULL
),
cand AS (
    SELECT i.id, i.channel_id, i.priority, i.task_id, cs.pass_value
    FROM firsts f JOIN item i ON i.id = f.id
    LEFT JOIN channel_share cs ON cs.provider = :provider AND cs.channel_id = i.channel_id
),
fl AS (SELECT coalesce(min(pass_value), 0.0) AS f FROM cand)
SELECT i.id, i.task_id, i.channel_id, i.kind, i.key, i.input, i.input_hash, i.attempts,
       i.provider_job_id, i.estimate_micros, i.generation,
       (SELECT t.project_slug FROM task t WHERE t.id = i.task_id),
       (SELECT f FROM fl),
       (SELECT json_group_object(d.key, d.output_path) FROM item_edge e JOIN item d ON d.id = e.depends_on
        WHERE e.item_id = i.id AND d.output_path <> '')
FROM cand JOIN item i ON i.id = cand.id
ORDER BY CASE WHEN cand.pass_value IS NULL THEN (SELECT f FROM fl) - 0.5
              ELSE max(cand.pass_value, (SELECT f FROM fl)) END,
         cand.priority, cand.task_id, cand.id
LIMIT 1
"""
_SPENT_SQLITE = f"""
SELECT (SELECT coalesce(sum(amount_micros), 0) FROM ledger WHERE task_id = ? AND {_SPENT}),
       (SELECT coalesce(sum(amount_micros), 0) FROM ledger WHERE channel_id = ? AND day = ? AND {_SPENT})
"""
_RESERVE_SQLITE = """
INSERT INTO ledger (task_id, item_id, attempt_no, channel_id, entry, amount_micros, day, open, created_at)
VALUES (?, ?, ?, ?, 'reservation', ?, ?, 1, ?)
"""


async def _claim_sqlite(
    engine: AsyncEngine,
    provider: str,
    owner: str,
    now: datetime,
    ttl: float,
    extension_for: Mapping[str, str],
    policy: ClaimPolicy,
) -> Claimed | None:
    at = sqlite_time(now)
    async with sqlite_driver(engine) as db, db.transaction():
        slot = await db.fetchrow(
            "SELECT slot_no FROM provider_slot WHERE provider = ? AND (item_id IS NULL OR expires_at < ?) "
            "ORDER BY slot_no LIMIT 1",
            (provider, at),
        )
        if slot is None:
            return None
        skipped: list[int] = []
        for _ in range(CANDIDATES):
            row = await db.fetchrow(
                _PICK_SQLITE, {"provider": provider, "now": at, "skipped": json.dumps(skipped)}
            )
            if row is None:
                return None
            (item_id, task_id, channel, kind, key, data, input_hash, attempts, job_id, estimate,
             generation, slug, floor, deps) = row  # fmt: skip
            budget = policy.budgets.get(channel)
            if budget is not None:
                day = policy.day_of(now)
                await db.fetch(
                    "INSERT INTO budget_lock (channel_id, day) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    (channel, day),
                )
                spent = await db.fetchrow(_SPENT_SQLITE, (task_id, channel, day))
                assert spent is not None
                why = refusal_text(spent[0], spent[1], channel, day, estimate, key, budget)
                if why is not None:
                    policy.over_budget.append((task_id, why))
                    skipped.append(task_id)
                    continue
            token = uuid.uuid4().hex
            expires = sqlite_time(now + timedelta(seconds=ttl))
            number = attempts + 1
            await db.fetch(
                "UPDATE provider_slot SET item_id = ?, lease_token = ?, expires_at = ? "
                "WHERE provider = ? AND slot_no = ?",
                (item_id, token, expires, provider, slot[0]),
            )
            await db.fetch(
                "UPDATE item SET state = 'running', lease_owner = ?, lease_token = ?, lease_expires_at = ?, "
                "attempts = ?, updated_at = ? WHERE id = ?",
                (owner, token, expires, number, at, item_id),
            )
            if budget is not None:
                await db.fetch(_RESERVE_SQLITE, (task_id, item_id, number, channel, estimate, day, at))
            stride = 1.0 / max(1, policy.weights.get(channel, 1))
            await db.fetch(
                "INSERT INTO channel_share (provider, channel_id, pass_value) VALUES (?, ?, ?) "
                "ON CONFLICT (provider, channel_id) DO UPDATE SET pass_value = max(pass_value, ?) + ?",
                (provider, channel, floor + stride, floor, stride),
            )
            ikey = idempotency_key(channel, slug, key, input_hash, generation)
            out = attempt_output(channel, slug, key, number, extension_for.get(kind, ""))
            await db.fetch(
                "INSERT INTO attempt (item_id, number, idempotency_key, output_path, lease_token, owner, "
                "outcome, started_at, cost_micros) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, 0)",
                (item_id, number, ikey, out, token, owner, at),
            )
            return Claimed(
                item_id=item_id,
                task_id=task_id,
                channel_id=channel,
                project_slug=slug,
                kind=kind,
                key=key,
                provider=provider,
                input=json.loads(data),
                input_hash=input_hash,
                attempt_no=number,
                lease_token=token,
                idempotency_key=ikey,
                attempt_output=out,
                resume=job_id,
                deps=json.loads(deps) if deps else {},
            )
    return None
