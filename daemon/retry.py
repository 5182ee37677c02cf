"""Retry policy: tenacity's wait strategies decide when a transient failure is tried again."""

from __future__ import annotations

import tenacity
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from tenacity import RetryCallState, wait_random_exponential

from daemon.logs import get_logger


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


def is_transient_db_error(exc: BaseException) -> bool:
    """The database is unreachable, restarting or busy for now (a pool with no free connection
    included): the call is worth repeating as it is."""
    if isinstance(exc, OperationalError | PoolTimeout):
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


def _log_wait(state: RetryCallState) -> None:
    """Said once when a call starts waiting for the database, then every 20th try."""
    if state.attempt_number == 1 or state.attempt_number % 20 == 0:
        error = state.outcome.exception() if state.outcome else None
        get_logger().warning(
            "database_unreachable_waiting",
            call=getattr(state.fn, "__name__", "?"),
            tries=state.attempt_number,
            error=str(error)[:300],
        )


# The worker's bookkeeping (a completion, a hand-back, a job id) is repeated until the database
# answers, however long it is away: what it records was paid for, and the lease token fences it
# when it lands late. Shutdown does not wait for it past its grace.
db_retry = tenacity.retry(
    retry=tenacity.retry_if_exception(is_transient_db_error),
    wait=wait_random_exponential(multiplier=0.2, max=5),
    before_sleep=_log_wait,
    reraise=True,
)
