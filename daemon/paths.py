"""Where the daemon's own files are (package data) and where an operator's files go by default.

The migrations and the shipped price and provider tables are package data: a wheel installed
anywhere finds them beside this module. The operator's files (the workspace, the channel files)
are not the package's. In a checkout they default to the checkout's `workspace/` and
`config/channels/`, as they always have; in an installed package (site-packages is no place for
them) to the same names under the current directory, which a service sets (systemd's
WorkingDirectory, the Dockerfile's WORKDIR).
"""

from __future__ import annotations

import os
import shutil
from functools import cache
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


# The FFmpeg binary the scripts and the daemon run, passed to every script in this variable
# (imageio-ffmpeg's own name for it): found once here, not in each script's start-up.
FFMPEG_ENV = "IMAGEIO_FFMPEG_EXE"


@cache
def ffmpeg_executable() -> tuple[str, str]:
    """The FFmpeg to run and where it came from: FFMPEG_ENV when set, else one on PATH, else the
    one the imageio-ffmpeg wheel ships (scripts/_lib/ffmpeg.py follows the same order)."""
    chosen = os.environ.get(FFMPEG_ENV)
    if chosen:
        return chosen, FFMPEG_ENV
    found = shutil.which("ffmpeg")
    if found:
        return found, "on PATH"
    import imageio_ffmpeg  # looks for its binary on import: only when needed

    return str(imageio_ffmpeg.get_ffmpeg_exe()), "imageio-ffmpeg's"
