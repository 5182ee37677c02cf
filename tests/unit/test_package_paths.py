"""Where the daemon finds its own files (package data) and puts the operator's: in a checkout, the
checkout's workspace/ and config/channels/ as always; the migrations and the shipped tables beside
the code, so an installed wheel needs no checkout (tests/acceptance/test_wheel_install.py installs
one)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from daemon import paths
from daemon.channels import load_provider_limits
from daemon.costs import load_pricing_file
from daemon.migrate import head_revision
from daemon.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_in_a_checkout_the_operators_files_default_to_the_checkout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("WORKSPACE_DIR", "CHANNELS_DIR", "PRICING_FILE", "PROVIDERS_FILE", "SCRIPTS_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # wherever the command is run from
    settings = Settings()
    assert paths.checkout_root() == ROOT
    assert (settings.workspace_dir, settings.channels_dir) == (
        ROOT / "workspace",
        ROOT / "config" / "channels",
    )
    assert settings.scripts_dir == ROOT / "scripts"
    assert (settings.pricing_file, settings.providers_file) == (
        ROOT / "daemon" / "defaults" / "pricing.yaml",
        ROOT / "daemon" / "defaults" / "providers.yaml",
    )


def test_the_package_data_is_what_the_daemon_reads() -> None:
    assert head_revision() == max(p.name[:4] for p in (paths.MIGRATIONS_DIR / "versions").glob("0*.py"))
    assert load_pricing_file(paths.DEFAULT_PRICING_FILE).kling.unit_price > 0
    limits = load_provider_limits(paths.DEFAULT_PROVIDERS_FILE)
    shipped = yaml.safe_load(paths.DEFAULT_PROVIDERS_FILE.read_text())["max_concurrent"]
    assert {name: getattr(limits, name) for name in shipped} == shipped
