"""An asyncio token bucket: every Notion call of the daemon takes one token."""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self, *, spare: bool = False) -> None:
        """Waits for a token. `spare`: only a token the others do not need, one left in the bucket
        after it (when the burst allows two): such a caller uses idle capacity and never holds up
        the others, which queue on the lock while it waits outside it."""
        if spare and self.burst >= 2:
            while True:
                async with self._lock:
                    self._refill()
                    if self.tokens >= 2:
                        self.tokens -= 1
                        return
                    wait = (2 - self.tokens) / self.rate
                await asyncio.sleep(wait)
        async with self._lock:
            while True:
                self._refill()
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def pause(self, seconds: float) -> None:
        """After a 429 every caller waits: the bucket is emptied for `seconds`."""
        self.tokens = -seconds * self.rate
        self.stamp = time.monotonic()
