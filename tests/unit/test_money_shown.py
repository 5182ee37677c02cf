"""What people read of money (the page's Cost, the progress line, budget messages) is whole cents,
rounded half up the same way everywhere."""

from __future__ import annotations

from decimal import Decimal

from daemon.budget import dollars, usd


def test_a_half_cent_rounds_up_on_the_page_and_in_messages_alike() -> None:
    # $0.125 is exact in binary: Python's round(0.125, 2) gives 0.12 (half to even), which the page's
    # Cost showed while the progress line's formatting could differ.
    assert dollars(125_000) == Decimal("0.13")
    assert usd(125_000) == "$0.13"
    assert dollars(124_999) == Decimal("0.12")
    assert usd(1_234_567_890) == "$1,234.57"
