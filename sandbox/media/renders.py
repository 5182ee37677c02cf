"""Background rendering: slow media (Kling clips) is made on worker threads while callers poll.

A job's output gets a `.pending` marker while it is being made, so `/media` waits for it rather
than answering 404 (this matters after a restart, when missing files are made again).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from sandbox.media import pending_marker


class RenderPool:
    def __init__(self, workers: int | None = None) -> None:
        # FFmpeg already uses several threads per render; one render per core keeps the box responsive.
        count = workers or max(1, os.cpu_count() or 1)
        self._executor = ThreadPoolExecutor(max_workers=count, thread_name_prefix="render")

    def submit(
        self, output: Path, job: Callable[[], None], on_error: Callable[[Exception], None]
    ) -> Future[None]:
        """Runs `job` (which writes `output`) in the background; `on_error` gets its failure."""
        marker = pending_marker(output)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()

        def run() -> None:
            try:
                job()
            except Exception as exc:  # reported to the owner (a failed task), never lost
                print(f"sandbox render of {output.name} failed: {exc}", file=sys.stderr, flush=True)
                on_error(exc)
            finally:
                marker.unlink(missing_ok=True)

        return self._executor.submit(run)

    @staticmethod
    def clear_stale_markers(folder: Path) -> None:
        """Markers left by a previous process whose renders died with it."""
        for marker in folder.rglob("*.pending"):
            marker.unlink(missing_ok=True)
