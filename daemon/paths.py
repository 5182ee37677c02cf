"""Where the daemon's own files are (package data) and where an operator's files go by default.

The migrations and the shipped price and provider tables are package data: a wheel installed
anywhere finds them beside this module. The operator's files (the workspace, the channel files)
are not the package's. In a checkout they default to the checkout's `workspace/` and
`config/channels/`, as they always have; in an installed package (site-packages is no place for
them) to the same names under the current directory, which a service sets (systemd's
WorkingDirectory, the Dockerfile's WORKDIR).
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
MIGRATIONS_DIR = PACKAGE_DIR / "migrations"
DEFAULTS_DIR = PACKAGE_DIR / "defaults"
DEFAULT_PRICING_FILE = DEFAULTS_DIR / "pricing.yaml"
DEFAULT_PROVIDERS_FILE = DEFAULTS_DIR / "providers.yaml"
# The scripts are a package of their own, installed beside this one (site-packages, or the
# checkout); the daemon runs them as files and never imports them.
SCRIPTS_DIR = PACKAGE_DIR.parent / "scripts"


def checkout_root() -> Path | None:
    """The source checkout this package runs from (an editable install included), else None."""
    root = PACKAGE_DIR.parent
    return root if (root / "pyproject.toml").is_file() else None


def operator_root() -> Path:
    """Where WORKSPACE_DIR and CHANNELS_DIR default to: the checkout, else the current directory."""
    return checkout_root() or Path.cwd()
