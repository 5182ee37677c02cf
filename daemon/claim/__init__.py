"""Claim: one short transaction takes a provider slot and a ready item, and writes the attempt.

The slot row is what bounds a provider's concurrency across every daemon on the database; the
attempt (with its idempotency key and its own output path) exists before any script starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.claim.common import DEFAULT_POLICY, Claimed, ClaimPolicy, idempotency_key
from daemon.claim.general import claim_general, ensure_slots, ready_providers
from daemon.claim.postgres import GENERAL, claim_pg
from daemon.claim.sqlite import claim_sqlite

__all__ = ["ClaimPolicy", "Claimed", "claim", "ensure_slots", "idempotency_key", "ready_providers"]

# The fast paths ----------------------------------------------------------------------------------
# Both take the general path's decisions, with the fewest round trips each database allows:
#   slot:    the lowest free slot row of the provider (holder NULL or its lease expired);
#   item:    the fairest eligible item (ready, due, in an active task): channel by effective pass
#            (its pass lifted to the floor, the lowest pass among channels with eligible items; a
#            channel never served goes just below the floor), then priority, task, item;
#   budget:  only when the item's channel has one: under the channel-day lock, the video's and
#            the day's spent-or-reserved money plus the estimate must fit, or the task is noted
#            over budget and skipped (at most BUDGET_TRIES tasks per claim), and the estimate is
#            reserved;
#   writes:  the lease on slot and item, attempts + 1, the channel's pass advanced by 1/weight, the
#            attempt row with its idempotency key and output path; the claim returns the item with
#            its dependencies' outputs.
# The fair order is read from the front of ix_item_fair instead of by sorting the whole ready
# backlog: the channels with ready items (a loose index scan), then each channel's first eligible
# items in (priority, task, id) order. The cost no longer grows with the backlog.


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
        return await claim_sqlite(engine, provider, owner, now, ttl, extension_for, policy)
    fast = await claim_pg(engine, provider, owner, now, ttl, extension_for, policy)
    if fast is not GENERAL:
        return fast if isinstance(fast, Claimed) else None
    return await claim_general(engine, provider, owner, now, ttl, extension_for, policy)
