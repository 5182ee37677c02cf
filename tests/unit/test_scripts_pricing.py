"""The scripts price a call with the daemon's own table (the one the package ships, or PRICING_FILE)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from daemon.paths import DEFAULT_PRICING_FILE
from scripts._lib import pricing
from scripts._lib.errors import ScriptError

SHIPPED = DEFAULT_PRICING_FILE


@pytest.fixture(autouse=True)
def _fresh_table(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("PRICING_FILE", raising=False)
    pricing.table.cache_clear()
    yield
    pricing.table.cache_clear()


def test_the_shipped_table_prices_each_kind_of_call() -> None:
    shipped = yaml.safe_load(SHIPPED.read_text())
    assert pricing.gemini_cost(0, None, image=True) == shipped["gemini"]["image"]["per_image"]
    assert pricing.gemini_cost(1_000_000, 1_000_000, image=False) == pytest.approx(0.30 + 2.50)
    assert pricing.gemini_cost(0, 1290, image=True) == pytest.approx(1290 * 30.00 / 1_000_000)
    assert pricing.kling_units("2", "std", 5) == (2.0, True)
    assert pricing.kling_units(None, "pro", 10) == (shipped["kling"]["units_per_clip"]["pro_10s"], False)
    assert pricing.kling_cost(1.5) == pytest.approx(1.5 * 0.14)
    assert pricing.tts_credits("eleven_multilingual_v2", 100) == 100
    assert pricing.tts_credits("eleven_flash_v2_5", 100) == 50
    assert pricing.elevenlabs_cost(pricing.sfx_credits(5)) == pytest.approx(200 * 0.00018)


def test_an_operators_prices_are_the_scripts_prices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = yaml.safe_load(SHIPPED.read_text())
    table["elevenlabs"]["credit_price"] = 0.000165  # a bigger plan
    table["kling"]["unit_price"] = 0.10
    mine = tmp_path / "pricing.yaml"
    mine.write_text(yaml.safe_dump(table))
    monkeypatch.setenv("PRICING_FILE", str(mine))
    assert pricing.elevenlabs_cost(1000) == pytest.approx(0.165)
    assert pricing.kling_cost(2) == pytest.approx(0.20)


@pytest.mark.parametrize(
    ("content", "said"),
    [(None, "cannot read the price table"), ("kling: {}\n", "is not one the daemon reads")],
)
def test_a_missing_or_broken_table_is_a_usage_error_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None, said: str
) -> None:
    path = tmp_path / "pricing.yaml"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("PRICING_FILE", str(path))
    with pytest.raises(ScriptError) as caught:
        pricing.table()
    assert caught.value.kind == "usage"
    assert said in str(caught.value) and str(path) in str(caught.value)
