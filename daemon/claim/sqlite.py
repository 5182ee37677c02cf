"""SQLite's claim: the decisions daemon/queries.py describes, in one BEGIN IMMEDIATE transaction."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.budget import refusal_text
from daemon.claim.common import (
    BUDGET_TRIES,
    Claimed,
    ClaimPolicy,
    ClaimResult,
    idempotency_key,
)
from daemon.db.driver import sqlite_driver, sqlite_time
from daemon.fairness import stride
from daemon.lease import grace
from daemon.queries import (
    ATTEMPT_STARTED_SQLITE,
    CLAIM_LIMIT,
    FREE_SLOTS_SQLITE,
    ITEM_TAKEN_SQLITE,
    PASS_ADVANCED_SQLITE,
    RESERVE_SQLITE,
    SLOT_TAKEN_SQLITE,
    SPENT_SQLITE,
    picks_sqlite,
)
from services.paths import attempt_output


async def claim_sqlite(
    engine: AsyncEngine,
    provider: str,
    owner: str,
    now: datetime,
    ttl: float,
    extension_for: Mapping[str, str],
    policy: ClaimPolicy,
    limit: int = 1,
) -> ClaimResult:
    at = sqlite_time(now)
    expires = sqlite_time(now + timedelta(seconds=ttl))
    slot_expires = sqlite_time(now + timedelta(seconds=ttl) + grace(ttl))
    strides = {channel: stride(policy.weights, channel) for channel in policy.weights}
    values: dict[str, object] = {"provider": provider, "now": at}
    for n, (channel, step) in enumerate(strides.items()):
        values[f"c{n}"], values[f"s{n}"] = channel, step
    picks = picks_sqlite(len(strides))
    token = uuid.uuid4().hex  # one per claim; each item's is token-<its place>, as PostgreSQL's
    over: list[tuple[int, str]] = []
    claimed: list[Claimed] = []
    async with sqlite_driver(engine) as db, db.transaction():
        limit = max(1, min(limit, CLAIM_LIMIT))
        slots = [row[0] for row in await db.fetch(FREE_SLOTS_SQLITE, (provider, at, limit))]
        if not slots:
            return ClaimResult()
        for _ in range(BUDGET_TRIES):
            skipped = json.dumps([task for task, _ in over])
            rows = await db.fetch(picks, {**values, "skipped": skipped, "limit": len(slots)})
            budgeted = [n for n, row in enumerate(rows) if row[2] in policy.budgets]
            if budgeted and budgeted[0] > 0:
                rows = rows[: budgeted[0]]  # the items before the first with a budget
            elif budgeted:
                rows = rows[:1]  # an item whose channel has a budget is claimed alone
                (_, task_id, channel, _, key, _, _, _, _, estimate, *_) = rows[0]
                budget = policy.budgets[channel]
                day = policy.day_of(now)  # no budget_lock row: BEGIN IMMEDIATE already serialises
                spent = await db.fetchrow(SPENT_SQLITE, (task_id, channel, day))
                assert spent is not None
                why = refusal_text(spent[0], spent[1], channel, day, estimate, key, budget)
                if why is not None:
                    over.append((task_id, why))
                    continue
            got: dict[str, int] = {}
            for place, (row, slot) in enumerate(zip(rows, slots, strict=False), start=1):
                (item_id, task_id, channel, kind, key, data, input_hash, attempts, job_id, estimate,
                 generation, slug, floor, deps) = row  # fmt: skip
                lease_token = f"{token}-{place}"
                number = attempts + 1
                await db.fetch(SLOT_TAKEN_SQLITE, (item_id, lease_token, slot_expires, provider, slot))
                await db.fetch(ITEM_TAKEN_SQLITE, (owner, lease_token, expires, number, at, item_id))
                if channel in policy.budgets:
                    day = policy.day_of(now)
                    await db.fetch(RESERVE_SQLITE, (task_id, item_id, number, channel, estimate, day, at))
                got[channel] = got.get(channel, 0) + 1
                ikey = idempotency_key(channel, slug, key, input_hash, generation)
                out = attempt_output(channel, slug, key, number, extension_for.get(kind, ""))
                await db.fetch(ATTEMPT_STARTED_SQLITE, (item_id, number, ikey, out, lease_token, owner, at))
                claimed.append(
                    Claimed(
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
                        lease_token=lease_token,
                        idempotency_key=ikey,
                        attempt_output=out,
                        resume=job_id,
                        deps=json.loads(deps) if deps else {},
                    )
                )
            for channel, count in got.items():
                by = count * stride(policy.weights, channel)
                await db.fetch(PASS_ADVANCED_SQLITE, (provider, channel, floor + by, floor, by))
            break
    return ClaimResult(tuple(claimed), tuple(over))
