"""Which database errors the worker's bookkeeping waits out (repeats) and which it lets through."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from daemon.retry import is_transient_db_error


def test_a_pool_with_no_free_connection_is_waited_out_not_counted_against_the_item() -> None:
    """Regression (reliability finding 6): a pool timeout failed the completion, and the item's
    attempt counted as failed though its script had succeeded."""
    assert is_transient_db_error(PoolTimeout("QueuePool limit of size 5 overflow 5 reached"))


def test_a_lost_connection_is_transient_and_a_broken_rule_is_not() -> None:
    assert is_transient_db_error(OperationalError("SELECT 1", {}, ConnectionResetError(104, "reset")))
    assert not is_transient_db_error(IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not is_transient_db_error(ValueError("a bug"))
