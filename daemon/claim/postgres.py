"""PostgreSQL's fast claim: one statement of data-modifying CTEs, the general path's decisions."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.budget import SPENT_SQL as SPENT
from daemon.budget import refusal_text
from daemon.claim.common import BUDGET_TRIES, Claimed, ClaimPolicy, attempt_output, idempotency_key
from daemon.db.engine import PgDriver, pg_driver
from daemon.fairness import stride

# Returned when the claim is the general path's to make.
GENERAL: Any = object()


def _strides(weights: Mapping[str, int]) -> str:
    """Each channel's stride (1/weight) for the statement's advance. PostgreSQL computes the general
    path's greatest(pass, floor) + stride as greatest(pass + stride, floor + stride): the same
    double, since rounding is monotonic."""
    return json.dumps({channel: stride(weights, channel) for channel in weights})


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
# the claim. Each channel offers its first _PER_CHANNEL eligible items, so items other claims hold
# locked are passed over as the general path's SKIP LOCKED would.
#
# Nothing is written when the chosen item's channel has a budget ($8): the budgeted claim follows,
# in a transaction that takes the channel-day lock first (a new snapshot must see the money other
# claims reserved before it). Nothing is written either, and the general path claims, when a
# channel's first _WINDOW ready items are all ineligible (a paused task's backlog, a provider's
# backoff), so that its first eligible item, further on, is not known here.
_WINDOW = 64
_PER_CHANNEL = 8

# The chosen item's lease, attempt and pass, once `go` holds (id, floor, slot_no) of a locked item
# and slot; $2 now, $3 token, $4 expires, $5 owner, $6 strides, $7 extensions. The slot is held a
# grace (half the TTL, lease.grace) longer than the lease.
_CLAIM_WRITES_PG = """
taken AS (
    UPDATE provider_slot s SET item_id = go.id, lease_token = $3,
                               expires_at = $4::timestamptz + ($4::timestamptz - $2::timestamptz) / 2
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
        LIMIT {_PER_CHANNEL}
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

# The budgeted claim of the item CLAIM_PG chose, in the transaction that holds its channel-day
# lock: this statement's snapshot sees every reservation made before the lock was ours. Nothing is
# written unless the estimate fits, and the item is still ready and free, and a slot is free.
# $1-$7 as CLAIM_PG, $8 item, $9 floor, $10 estimate, $11 day, $12 per-video limit,
# $13 per-day limit, $14 channel, $15 task.
CLAIM_BUDGETED_PG = f"""
WITH spent AS (
    SELECT
        (SELECT coalesce(sum(amount_micros), 0) FROM ledger
         WHERE task_id = $15 AND {SPENT})::bigint AS task_spent,
        (SELECT coalesce(sum(amount_micros), 0) FROM ledger
         WHERE channel_id = $14 AND day = $11 AND {SPENT})::bigint AS day_spent
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


async def claim_pg(
    engine: AsyncEngine,
    provider: str,
    owner: str,
    now: datetime,
    ttl: float,
    extension_for: Mapping[str, str],
    policy: ClaimPolicy,
) -> Any:
    """Claimed, None, or GENERAL when the claim is the general path's to make."""
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
        for _ in range(BUDGET_TRIES):
            row = await db.fetchrow(CLAIM_PG, *args, list(policy.budgets), skipped)
            if row["blind"]:
                return GENERAL
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
                return GENERAL  # the item or the slot was taken meanwhile: settle it the slow way
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
