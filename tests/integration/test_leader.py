"""One leader at a time for the singleton jobs, taken over when the leader's lease runs out."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.leader import acquire, holder, release
from tests.support.engine_kit import now


async def test_one_leader_renews_and_the_other_waits(engine: AsyncEngine) -> None:
    t0 = now()
    token = await acquire(engine, "singletons", "daemon-a", t0, 10)
    assert token is not None
    assert await acquire(engine, "singletons", "daemon-b", t0, 10) is None
    # A renewal keeps the token (work fenced by it stays valid).
    assert await acquire(engine, "singletons", "daemon-a", t0 + timedelta(seconds=5), 10) == token
    assert await acquire(engine, "singletons", "daemon-b", t0 + timedelta(seconds=12), 10) is None
    assert (await holder(engine, "singletons"))[0] == "daemon-a"


async def test_a_dead_leader_is_replaced_after_its_lease_with_a_new_token(engine: AsyncEngine) -> None:
    t0 = now()
    old = await acquire(engine, "singletons", "daemon-a", t0, 10)
    new = await acquire(engine, "singletons", "daemon-b", t0 + timedelta(seconds=11), 10)
    assert new is not None
    assert new != old
    assert (await holder(engine, "singletons"))[0] == "daemon-b"
    # The old leader, back from a freeze, cannot take it back while b renews.
    assert await acquire(engine, "singletons", "daemon-a", t0 + timedelta(seconds=12), 10) is None


async def test_a_leader_stopping_hands_over_at_once(engine: AsyncEngine) -> None:
    t0 = now()
    token = await acquire(engine, "singletons", "daemon-a", t0, 30)
    assert token is not None
    await release(engine, "singletons", token)
    assert await acquire(engine, "singletons", "daemon-b", t0 + timedelta(seconds=1), 30) is not None
