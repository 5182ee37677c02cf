"""The workspace on disk: made writable at start-up, files written atomically, and the leftovers of
attempts that will never complete swept away."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.db.models import Attempt
from daemon.errors import ConfigError
from services.paths import ATTEMPTS_GLOB
from services.states import AttemptOutcome

STALE_TEMP_S = 3600


def prepare_workspace(path: Path) -> None:
    """The workspace exists and takes files, or start-up stops saying which setting to change."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)  # a new workspace is the daemon's own
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"WORKSPACE_DIR {path}: cannot write there ({exc.strerror}); point WORKSPACE_DIR at a "
            "writable folder (a mounted volume in production)"
        ) from exc


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def sweep_temp_files(engine: AsyncEngine, workspace: Path) -> int:
    """Removes attempt outputs (and their sidecars, `<output>.<suffix>`) no running attempt owns,
    and stale temp files of killed writers."""
    async with engine.connect() as conn:
        live = {
            r[0]
            for r in await conn.execute(
                select(Attempt.output_path).where(Attempt.outcome == AttemptOutcome.RUNNING)
            )
        }
    removed = 0
    root = workspace / "channels"
    if not root.is_dir():
        return 0
    now = time.time()
    sidecars = tuple(f"{output}." for output in live)
    for path in workspace.glob(ATTEMPTS_GLOB):
        name = str(path.relative_to(workspace))
        owned = name in live or name.startswith(sidecars)
        if path.is_file() and not owned and not _is_partial(path):
            path.unlink(missing_ok=True)
            removed += 1
    for path in root.rglob("*.tmp"):
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime > STALE_TEMP_S:
                path.unlink()
                removed += 1
    return removed


def _is_partial(path: Path) -> bool:
    return path.name.endswith(".tmp")
