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
    FREE_SLOT_SQLITE,
    ITEM_TAKEN_SQLITE,
    PASS_ADVANCED_SQLITE,
    PICK_SQLITE,
    RESERVE_SQLITE,
    SLOT_TAKEN_SQLITE,
    SPENT_SQLITE,
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
) -> ClaimResult:
    at = sqlite_time(now)
    over: list[tuple[int, str]] = []
    async with sqlite_driver(engine) as db, db.transaction():
        slot = await db.fetchrow(FREE_SLOT_SQLITE, (provider, at))
        if slot is None:
            return ClaimResult()
        for _ in range(BUDGET_TRIES):
            skipped = json.dumps([task for task, _ in over])
            row = await db.fetchrow(PICK_SQLITE, {"provider": provider, "now": at, "skipped": skipped})
            if row is None:
                break
            (item_id, task_id, channel, kind, key, data, input_hash, attempts, job_id, estimate,
             generation, slug, floor, deps) = row  # fmt: skip
            budget = policy.budgets.get(channel)
            if budget is not None:
                day = policy.day_of(now)  # no budget_lock row: BEGIN IMMEDIATE already serialises
                spent = await db.fetchrow(SPENT_SQLITE, (task_id, channel, day))
                assert spent is not None
                why = refusal_text(spent[0], spent[1], channel, day, estimate, key, budget)
                if why is not None:
                    over.append((task_id, why))
                    continue
            token = uuid.uuid4().hex
            expires = sqlite_time(now + timedelta(seconds=ttl))
            slot_expires = sqlite_time(now + timedelta(seconds=ttl) + grace(ttl))
            number = attempts + 1
            await db.fetch(SLOT_TAKEN_SQLITE, (item_id, token, slot_expires, provider, slot[0]))
            await db.fetch(ITEM_TAKEN_SQLITE, (owner, token, expires, number, at, item_id))
            if budget is not None:
                await db.fetch(RESERVE_SQLITE, (task_id, item_id, number, channel, estimate, day, at))
            step = stride(policy.weights, channel)
            await db.fetch(PASS_ADVANCED_SQLITE, (provider, channel, floor + step, floor, step))
            ikey = idempotency_key(channel, slug, key, input_hash, generation)
            out = attempt_output(channel, slug, key, number, extension_for.get(kind, ""))
            await db.fetch(ATTEMPT_STARTED_SQLITE, (item_id, number, ikey, out, token, owner, at))
            claimed = Claimed(
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
            return ClaimResult(claimed, tuple(over))
    return ClaimResult(None, tuple(over))
