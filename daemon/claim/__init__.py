"""Claim: one short transaction takes a provider slot and a ready item, and writes the attempt.

The slot row is what bounds a provider's concurrency across every daemon on the database; the
attempt (with its idempotency key and its own output path) exists before any script starts. The
rules and the statements: daemon/queries.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.claim.common import (
    DEFAULT_POLICY,
    Claimed,
    ClaimPolicy,
    ClaimRequest,
    ClaimResult,
    idempotency_key,
)
from daemon.claim.postgres import claim_pg
from daemon.claim.providers import ensure_slots, ready_providers
from daemon.claim.sqlite import claim_sqlite

__all__ = [
    "ClaimPolicy",
    "ClaimRequest",
    "ClaimResult",
    "Claimed",
    "claim",
    "ensure_slots",
    "idempotency_key",
    "ready_providers",
]


async def claim(
    engine: AsyncEngine,
    provider: str,
    owner: str,
    now: datetime,
    ttl: float,
    extension_for: Mapping[str, str],
    policy: ClaimPolicy = DEFAULT_POLICY,
    limit: int = 1,
) -> ClaimResult:
    """Claims up to `limit` ready items of `provider` (at most queries.CLAIM_LIMIT), one for each
    free slot, eligible and within its budget, in the fair order."""
    claim_on = claim_sqlite if engine.dialect.name == "sqlite" else claim_pg
    return await claim_on(engine, provider, owner, now, ttl, extension_for, policy, limit)
