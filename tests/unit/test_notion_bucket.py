"""The daemon's Notion token bucket: a spare taker (a file upload) uses only what the others leave."""

from __future__ import annotations

import asyncio
import time

from daemon.notion.bucket import TokenBucket


async def test_a_spare_taker_never_holds_up_the_others_and_uses_idle_capacity() -> None:
    bucket = TokenBucket(rate=20.0, burst=3)
    for _ in range(3):
        await bucket.take()  # empty
    order: list[str] = []

    async def taker(name: str, spare: bool) -> None:
        await bucket.take(spare=spare)
        order.append(name)

    started = time.monotonic()
    upload = asyncio.create_task(taker("upload", True))
    await asyncio.sleep(0.01)  # the upload waits first
    polls = [asyncio.create_task(taker(f"poll{i}", False)) for i in range(3)]
    await asyncio.gather(upload, *polls)
    # Each poll took a token as soon as one came; the upload only when one was left over for them.
    assert order == ["poll0", "poll1", "poll2", "upload"]
    assert time.monotonic() - started < 0.5  # and it did not wait for ever: idle capacity came
