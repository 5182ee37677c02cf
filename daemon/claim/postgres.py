"""PostgreSQL's claim: the decisions daemon/queries.py describes, in one statement of data-modifying
CTEs, or two short transactions when the first item's channel has a budget."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.budget import refusal_text
from daemon.claim.common import (
    BUDGET_TRIES,
    Claimed,
    ClaimPolicy,
    ClaimRequest,
    ClaimResult,
    idempotency_key,
)
from daemon.db.driver import PgDriver, pg_driver
from daemon.fairness import stride
from daemon.queries import CLAIM_BUDGETED_PG, CLAIM_LIMIT, CLAIM_PG, WINDOWS
from services.paths import attempt_output


def _strides(weights: Mapping[str, int]) -> str:
    """Each channel's stride (1/weight) for the statement's advance. The statement computes SQLite's
    max(turn, floor) + stride as greatest(turn + stride, floor + stride): the same double, since
    rounding is monotonic."""
    return json.dumps({channel: stride(weights, channel) for channel in weights})


def _claimed(row: Mapping[str, Any], provider: str) -> Claimed:
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
        lease_token=row["lease_token"],
        idempotency_key=row["idempotency_key"],
        attempt_output=row["attempt_output"],
        resume=row["provider_job_id"],
        deps=dict(row["deps"]),
    )


_PLAIN = re.compile(r"[A-Za-z0-9_.:-]*")


def _budget_lock_pg(channel: str, day: str) -> tuple[str, tuple[Any, ...]]:
    """The channel-day lock a budgeted claim takes first, as two statements to send with BEGIN:
    inlined when the values are plain (one round trip), else with parameters (two)."""
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


def _args(r: ClaimRequest) -> tuple[Any, ...]:
    """CLAIM_PG's $1-$7."""
    return (
        r.provider,
        r.now,
        uuid.uuid4().hex,
        r.now + timedelta(seconds=r.ttl),
        r.owner,
        _strides(r.policy.weights),
        json.dumps(dict(r.extension_for)),
    )


async def claim_within_pg(db: PgDriver, request: ClaimRequest) -> ClaimResult | None:
    """The claim as one more statement of the caller's transaction (a batch of completions: the
    places they free are taken again without a round trip and a commit of their own). None when
    this claim needs more than the one statement (its first pick has a budget, or a channel's first
    ready items are all ineligible): the caller claims after its commit, with `claim_pg`."""
    limit = max(1, min(request.limit, CLAIM_LIMIT))
    rows = await db.fetch(CLAIM_PG[WINDOWS[0], limit], *_args(request), list(request.policy.budgets), [])
    row = rows[0]
    if row["blind"] or (row["id"] is None and row["picked"] is not None):
        return None
    if row["id"] is None:
        return ClaimResult()
    taken = [await _checked(db, _claimed(r, request.provider), request.extension_for, r) for r in rows]
    return ClaimResult(tuple(taken))


async def claim_pg(
    engine: AsyncEngine,
    provider: str,
    owner: str,
    now: datetime,
    ttl: float,
    extension_for: Mapping[str, str],
    policy: ClaimPolicy,
    limit: int = 1,
) -> ClaimResult:
    limit = max(1, min(limit, CLAIM_LIMIT))
    args = _args(ClaimRequest(provider, owner, now, ttl, extension_for, policy, limit))
    skipped: list[int] = []
    over: list[tuple[int, str]] = []
    windows = iter(WINDOWS)
    window = next(windows)
    tries = 0
    async with pg_driver(engine) as db:
        while tries < BUDGET_TRIES:
            rows = await db.fetch(CLAIM_PG[window, limit], *args, list(policy.budgets), skipped)
            row = rows[0]
            if row["blind"]:
                window = next(windows)  # a channel's first `window` ready items are all ineligible
                continue
            if row["id"] is not None:
                taken = [await _checked(db, _claimed(r, provider), extension_for, r) for r in rows]
                return ClaimResult(tuple(taken), tuple(over))
            if row["picked"] is None:
                break  # no free slot, or nothing eligible
            tries += 1
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
                one = await _checked(db, _claimed(got, provider), extension_for, got)
                return ClaimResult((one,), tuple(over))
            if got["fits"]:
                continue  # the item or the slot was taken meanwhile: choose again
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
            over.append((row["picked_task"], why))
            skipped.append(row["picked_task"])
    return ClaimResult((), tuple(over))


async def _checked(
    db: PgDriver, c: Claimed, extension_for: Mapping[str, str], row: Mapping[str, Any]
) -> Claimed:
    """The Python functions define the idempotency key and the attempt's output path (the SQLite
    path and older releases named earlier attempts with them). The statement's spelling agrees on
    a UTF-8 database; any other gets its attempt row repaired here."""
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
