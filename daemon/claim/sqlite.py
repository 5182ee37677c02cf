"""SQLite's fast claim: the general path's decisions in one BEGIN IMMEDIATE transaction."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.budget import SPENT_SQL as SPENT
from daemon.budget import refusal_text
from daemon.claim.common import BUDGET_TRIES, Claimed, ClaimPolicy, attempt_output, idempotency_key
from daemon.db.engine import sqlite_driver, sqlite_time
from daemon.fairness import stride
from daemon.lease import grace

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
SELECT (SELECT coalesce(sum(amount_micros), 0) FROM ledger WHERE task_id = ? AND {SPENT}),
       (SELECT coalesce(sum(amount_micros), 0) FROM ledger WHERE channel_id = ? AND day = ? AND {SPENT})
"""
_RESERVE_SQLITE = """
INSERT INTO ledger (task_id, item_id, attempt_no, channel_id, entry, amount_micros, day, open, created_at)
VALUES (?, ?, ?, ?, 'reservation', ?, ?, 1, ?)
"""


async def claim_sqlite(
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
        for _ in range(BUDGET_TRIES):
            row = await db.fetchrow(
                _PICK_SQLITE, {"provider": provider, "now": at, "skipped": json.dumps(skipped)}
            )
            if row is None:
                return None
            (item_id, task_id, channel, kind, key, data, input_hash, attempts, job_id, estimate,
             generation, slug, floor, deps) = row  # fmt: skip
            budget = policy.budgets.get(channel)
            if budget is not None:
                day = policy.day_of(now)  # no budget_lock row: BEGIN IMMEDIATE already serialises
                spent = await db.fetchrow(_SPENT_SQLITE, (task_id, channel, day))
                assert spent is not None
                why = refusal_text(spent[0], spent[1], channel, day, estimate, key, budget)
                if why is not None:
                    policy.over_budget.append((task_id, why))
                    skipped.append(task_id)
                    continue
            token = uuid.uuid4().hex
            expires = sqlite_time(now + timedelta(seconds=ttl))
            slot_expires = sqlite_time(now + timedelta(seconds=ttl) + grace(ttl))
            number = attempts + 1
            await db.fetch(
                "UPDATE provider_slot SET item_id = ?, lease_token = ?, expires_at = ? "
                "WHERE provider = ? AND slot_no = ?",
                (item_id, token, slot_expires, provider, slot[0]),
            )
            await db.fetch(
                "UPDATE item SET state = 'running', lease_owner = ?, lease_token = ?, lease_expires_at = ?, "
                "attempts = ?, updated_at = ? WHERE id = ?",
                (owner, token, expires, number, at, item_id),
            )
            if budget is not None:
                await db.fetch(_RESERVE_SQLITE, (task_id, item_id, number, channel, estimate, day, at))
            step = stride(policy.weights, channel)
            await db.fetch(
                "INSERT INTO channel_share (provider, channel_id, pass_value) VALUES (?, ?, ?) "
                "ON CONFLICT (provider, channel_id) DO UPDATE SET pass_value = max(pass_value, ?) + ?",
                (provider, channel, floor + step, floor, step),
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
