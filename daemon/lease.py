"""Leases: the batched heartbeat, the sweep of expired leases, and the release of a lease."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from daemon.budget import close_reservation
from daemon.db.driver import driver_in
from daemon.db.models import Attempt, Item, ProviderSlot
from daemon.queries import SLOT_FREED
from services.states import AttemptOutcome, ItemState


def grace(ttl: float) -> timedelta:
    """How long past its expiry a lease stays its daemon's: a database outage (or a slow beat) a
    little longer than the TTL loses nothing. Sweeps wait for it, and a provider slot is held this
    much longer than its lease, so no claim takes it from a daemon that is about to renew."""
    return timedelta(seconds=ttl / 2)


async def heartbeat(engine: AsyncEngine, tokens: Collection[str], now: datetime, ttl: float) -> set[str]:
    """Extends every lease still ours in one statement per table; returns the tokens that were lost.

    A lease is ours while its item still holds our token (running) and its provider slot does too:
    one that ran out during a database outage is renewed, since nobody took it (the token fences
    every writer); one swept or re-claimed, or whose slot was taken, is lost.
    """
    if not tokens:
        return set()
    expires = now + timedelta(seconds=ttl)
    async with engine.begin() as conn:
        with_slot = select(ProviderSlot.lease_token).where(ProviderSlot.lease_token.in_(list(tokens)))
        # The items are taken in id order, as several completions in one transaction take them
        # (complete.complete_many): neither can hold one item while waiting for another's.
        ours = (
            select(Item.id)
            .where(Item.lease_token.in_(with_slot), Item.state == ItemState.RUNNING)
            .order_by(Item.id)
            .with_for_update()
        )
        kept_rows = await conn.execute(
            update(Item).where(Item.id.in_(ours)).values(lease_expires_at=expires).returning(Item.lease_token)
        )
        kept = {r[0] for r in kept_rows}
        if kept:
            await conn.execute(
                update(ProviderSlot)
                .where(ProviderSlot.lease_token.in_(kept))
                .values(expires_at=expires + grace(ttl))
            )
    return set(tokens) - kept


async def sweep_expired(engine: AsyncEngine, now: datetime, ttl: float) -> int:
    """Hands items whose lease expired more than its grace ago (a dead or frozen daemon, or one cut
    off from the database) back to the ready queue."""
    stale = now - grace(ttl)
    async with engine.begin() as conn:
        rows = (
            await conn.execute(
                select(Item.id, Item.lease_token).where(
                    Item.state == ItemState.RUNNING, Item.lease_expires_at < stale
                )
            )
        ).all()
        for row in rows:
            await _release(
                conn,
                row.id,
                row.lease_token,
                now,
                outcome=AttemptOutcome.LOST,
                next_attempt_at=now,
                message="lease expired: its daemon died or stalled",
            )
    return len(rows)


async def release(
    engine: AsyncEngine,
    item_id: int,
    token: str,
    now: datetime,
    *,
    outcome: str,
    next_attempt_at: datetime,
    message: str | None = None,
    exit_code: int | None = None,
) -> bool:
    """Puts a claimed item back to ready (retry later, or another daemon now), fenced by the token."""
    async with engine.begin() as conn:
        return await _release(
            conn,
            item_id,
            token,
            now,
            outcome=outcome,
            next_attempt_at=next_attempt_at,
            message=message,
            exit_code=exit_code,
        )


async def _release(
    conn: AsyncConnection,
    item_id: int,
    token: str,
    now: datetime,
    *,
    outcome: str,
    next_attempt_at: datetime,
    message: str | None,
    exit_code: int | None = None,
) -> bool:
    done = await conn.execute(
        update(Item)
        .where(Item.id == item_id, Item.lease_token == token, Item.state == ItemState.RUNNING)
        .values(
            state=ItemState.READY,
            lease_owner=None,
            lease_token=None,
            lease_expires_at=None,
            next_attempt_at=next_attempt_at,
            updated_at=now,
            error=message,
        )
    )
    await free_slot(conn, token)
    await finish_attempt(conn, item_id, token, now, outcome=outcome, message=message, exit_code=exit_code)
    if done.rowcount != 1:
        return False  # not ours any more: whoever ended this lease closed its reservation
    number = await conn.scalar(
        select(Attempt.number).where(Attempt.item_id == item_id, Attempt.lease_token == token)
    )
    if number is not None:
        await close_reservation(conn, item_id, number)
    return True


async def free_slot(conn: AsyncConnection, token: str) -> None:
    """The lease's slot goes back (queries.SLOT_FREED, as the completion frees it)."""
    await (await driver_in(conn)).rows(SLOT_FREED, token=token)


async def finish_attempt(
    conn: AsyncConnection,
    item_id: int,
    token: str,
    now: datetime,
    *,
    outcome: str,
    message: str | None = None,
    exit_code: int | None = None,
) -> None:
    await conn.execute(
        update(Attempt)
        .where(
            Attempt.item_id == item_id,
            Attempt.lease_token == token,
            Attempt.outcome == AttemptOutcome.RUNNING,
        )
        .values(outcome=outcome, message=message, exit_code=exit_code, finished_at=now)
    )


async def record_job_id(engine: AsyncEngine, item_id: int, token: str, job_id: str) -> bool:
    """Stores a provider job id the moment a script prints it, fenced by the lease."""
    async with engine.begin() as conn:
        done = await conn.execute(
            update(Item)
            .where(Item.id == item_id, Item.lease_token == token, Item.state == ItemState.RUNNING)
            .values(provider_job_id=job_id)
        )
        await conn.execute(
            update(Attempt)
            .where(Attempt.item_id == item_id, Attempt.lease_token == token)
            .values(provider_job_id=job_id)
        )
        return done.rowcount == 1


async def record_progress(engine: AsyncEngine, item_id: int, token: str, progress: dict[str, int]) -> None:
    """How far the running attempt is (its `usage` until it ends: the result's usage replaces it)."""
    async with engine.begin() as conn:
        await conn.execute(
            update(Attempt)
            .where(
                Attempt.item_id == item_id,
                Attempt.lease_token == token,
                Attempt.outcome == AttemptOutcome.RUNNING,
            )
            .values(usage={"progress": progress})
        )


async def close_attempt(engine: AsyncEngine, item_id: int, token: str, now: datetime, outcome: str) -> None:
    """Records how an attempt ended when its item is no longer ours to update (a lost lease)."""
    async with engine.begin() as conn:
        await finish_attempt(conn, item_id, token, now, outcome=outcome)


async def release_owned(engine: AsyncEngine, owner: str, now: datetime) -> int:
    """At start-up: a daemon's own leases from its previous life go back at once (its scripts were
    reaped), instead of waiting out the TTL. Needs a DAEMON_ID that no other live daemon uses."""
    async with engine.begin() as conn:
        rows = (
            await conn.execute(
                select(Item.id, Item.lease_token).where(
                    Item.state == ItemState.RUNNING, Item.lease_owner == owner
                )
            )
        ).all()
        for row in rows:
            await _release(
                conn,
                row.id,
                row.lease_token,
                now,
                outcome=AttemptOutcome.LOST,
                next_attempt_at=now,
                message="its daemon restarted",
            )
    return len(rows)
