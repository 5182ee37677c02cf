"""One check at a time, answered within a time limit, never piling up against a hung database.

`asyncio.wait_for` waits for the cancelled work to unwind, and a connection stuck on a frozen
network unwinds slowly (asyncpg's cancel needs the network too): /readyz took 3.5 s in the frozen
database test. A Probe stops *waiting* at the limit instead: the check goes on until the driver's
own timeouts end it (connect 10 s, statement 60 s), and an ask meanwhile waits on that same check
rather than starting another, so a scraper or a load balancer polling every second opens no new
connection while the database hangs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Probe(Generic[T]):
    def __init__(self, check: Callable[[], Awaitable[T]], timeout_s: float) -> None:
        self.check = check
        self.timeout_s = timeout_s
        self.running: asyncio.Task[T] | None = None

    async def __call__(self) -> T:
        """The check's result (or its exception); TimeoutError when it has not answered in time."""
        if self.running is None or self.running.done():
            self.running = asyncio.ensure_future(self.check())
            # A check that ends after its asker gave up: its exception is read here, not reported
            # as never retrieved.
            self.running.add_done_callback(lambda t: None if t.cancelled() else t.exception())
        task = self.running
        done, _ = await asyncio.wait({task}, timeout=self.timeout_s)
        if task not in done:
            raise TimeoutError(f"no answer within {self.timeout_s:g} s")
        return task.result()

    def close(self) -> None:
        """Stops a check still running (the listener is closing)."""
        if self.running is not None and not self.running.done():
            self.running.cancel()
