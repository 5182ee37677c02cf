"""What this daemon's Notion requests met: counts by method and result, and whether Notion answers.

Kept by the gateway for every HTTP exchange (each retry counts: Notion's rate limit does), read by
/metrics and /readyz at no cost to Notion's 3 requests a second: readiness never calls Notion
itself, it reads how the daemon's own calls went.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

# A request's result, as a metric label: a fixed set, whatever Notion answers.
OK, RATE_LIMITED, CONFLICT, CLIENT_ERROR, SERVER_ERROR, TIMEOUT, CONNECTION = (
    "ok",
    "rate_limited",
    "conflict",
    "client_error",
    "server_error",
    "timeout",
    "connection",
)
# Results that say Notion is not answering (an answer of any other kind, a 429 included, proves it is).
UNANSWERED = frozenset({SERVER_ERROR, TIMEOUT, CONNECTION})


def result_of_status(status: int) -> str:
    if status == 429:
        return RATE_LIMITED
    if status == 409:
        return CONFLICT
    if status >= 500:
        return SERVER_ERROR
    if status >= 400:
        return CLIENT_ERROR
    return OK


@dataclass
class NotionTraffic:
    """Counts per (method, result), the last answer's time and, while Notion does not answer, since
    when and the last failure (a status class or an exception's type name: never a URL or a body)."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    answered_at: float | None = None  # time.monotonic() of the last answer
    failing_since: float | None = None  # the first unanswered request since that answer
    last_problem: str = ""

    def record(self, method: str, result: str, problem: str = "") -> None:
        self.counts[(method.upper(), result)] += 1
        now = time.monotonic()
        if result in UNANSWERED:
            if self.failing_since is None:
                self.failing_since = now
            self.last_problem = problem or result
        else:
            self.answered_at = now
            self.failing_since = None
