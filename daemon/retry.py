"""Retry policy: tenacity's wait strategies decide when a transient failure is tried again."""

from __future__ import annotations

import tenacity
from sqlalchemy.exc import DBAPIError, OperationalError
from tenacity import RetryCallState, wait_random_exponential


def backoff_seconds(failures: int, base: float, cap: float, hint: float | None = None) -> float:
    """Exponential backoff with full jitter, bounded by `cap`; never sooner than a provider's hint."""
    wait = wait_random_exponential(multiplier=base, max=cap)
    state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
    state.attempt_number = max(1, failures)
    delay = float(wait(state))
    return max(delay, min(hint, cap)) if hint else delay


def _is_transient_db_error(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError):
        return True
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated)
    return isinstance(exc, (ConnectionError, OSError)) and not isinstance(exc, FileNotFoundError)


# Quick in-process calls (DB statements after a restart of the server) retry in place.
db_retry = tenacity.retry(
    retry=tenacity.retry_if_exception(_is_transient_db_error),
    wait=wait_random_exponential(multiplier=0.2, max=5),
    stop=tenacity.stop_after_delay(120),
    reraise=True,
)
