"""Notion's request budget: a token bucket per token, refilled at the configured average rate."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class TokenBuckets:
    """One bucket per API token, like Notion's per-integration limit.

    Rate and burst are read on every call, so POST /_sandbox/config takes effect at once.
    """

    def __init__(
        self, settings: Callable[[], tuple[float, int]], clock: Callable[[], float] = time.monotonic
    ):
        self._settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # token -> (tokens, last refill)

    def take(self, key: str) -> float | None:
        """None when the request may go ahead, else the seconds to wait (a whole number, >= 1)."""
        rate, burst = self._settings()
        # The bucket holds at least one second's worth: a configured average of N requests/s
        # must allow N requests within any one second (a fast rate with the default burst of 10
        # would otherwise refuse a client that simply runs quicker than 1 ms per request).
        capacity = float(max(1, burst, math.floor(rate)))
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.get(key, (capacity, now))
            tokens = min(capacity, tokens + max(0.0, now - last) * max(rate, 0.0))
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return None
            self._buckets[key] = (tokens, now)
        if rate <= 0:
            return 60.0
        return float(max(1, math.ceil((1.0 - tokens) / rate)))
