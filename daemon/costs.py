"""What an item cost: from the usage a script reports, priced with config/pricing.yaml."""

from __future__ import annotations

from decimal import Decimal
from typing import Any


class ReportedCosts:
    """Takes each script's own cost_usd (for plain scripts and tests without a price table)."""

    def actual_micros(self, kind: str, usage: dict[str, Any], reported_usd: float | None) -> int:
        return int((Decimal(str(reported_usd or 0)) * 1_000_000).to_integral_value())
