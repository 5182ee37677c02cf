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


# SQLSTATE classes and codes that a retry outlives: a lost or refused connection, a server shutting
# down or starting up, a serialization failure or a deadlock victim, a lock or statement timeout (a
# frozen daemon held the row; the server ends its idle transaction, and the next try gets through).
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "57P", "40001", "40P01", "53300", "55P03", "57014")


def _is_transient_db_error(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    # Walk the chain: SQLAlchemy wraps the driver's error, which may wrap a socket error.
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            break
        state = str(getattr(seen, "sqlstate", "") or "")
        if state.startswith(_TRANSIENT_SQLSTATE_PREFIXES):
            return True
        if isinstance(seen, (ConnectionError, TimeoutError)) or (
            isinstance(seen, OSError) and not isinstance(seen, FileNotFoundError)
        ):
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False


# Quick in-process calls (DB statements after a restart of the server) retry in place.
db_retry = tenacity.retry(
    retry=tenacity.retry_if_exception(_is_transient_db_error),
    wait=wait_random_exponential(multiplier=0.2, max=5),
    stop=tenacity.stop_after_delay(120),
    reraise=True,
)
