"""What an item cost: the usage its script reports, priced with the price table (PRICING_FILE)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from daemon.errors import ConfigError
from services.errors import PricingError
from services.pricing import Pricing, load_pricing, to_micros


def load_pricing_file(path: Path) -> Pricing:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the price table ({exc.strerror}); set PRICING_FILE") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}); fix the syntax") from exc
    try:
        return load_pricing(data)
    except PricingError as exc:
        raise ConfigError(f"{path}: invalid price table\n{exc}") from exc


class PricedCosts:
    """The price table applied to the provider-reported usage; a script's own figure only as fallback.

    Pricing usage (not trusting each script's arithmetic) keeps the daemon's totals equal to the
    provider's bill for the same calls, and lets an operator change prices in one file.
    """

    def __init__(self, pricing: Pricing) -> None:
        self.pricing = pricing

    def actual_micros(self, kind: str, usage: dict[str, Any], reported_usd: float | None) -> int:
        try:
            return to_micros(self.pricing.actual_cost(kind, usage))
        except PricingError:
            return to_micros(Decimal(str(reported_usd or 0)))


class ReportedCosts:
    """Takes each script's own cost_usd (plain scripts, and tests without a price table)."""

    def actual_micros(self, kind: str, usage: dict[str, Any], reported_usd: float | None) -> int:
        return to_micros(Decimal(str(reported_usd or 0)))
