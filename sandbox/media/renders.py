"""Background rendering: slow media (Kling clips) is made on worker threads while callers poll.

A job's output gets a `.pending` marker while it is being made, so `/media` waits for it rather
than answering 404 (this matters after a restart, when missing files are made again).

The workers are daemon threads and their FFmpeg children are killed at exit: a stopping sandbox
must not wait for (or orphan) a queue of renders; a restart makes the missing files again.
"""

from __future__ import annotations

import atexit
import os
import queue
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from sandbox.media import pending_marker
from sandbox.media.ffmpeg import Children

Job = Callable[[Children], None]


class RenderPool:
    def __init__(self, workers: int | None = None) -> None:
        self.children = Children()
        self._jobs: queue.Queue[tuple[Path, Job, Callable[[Exception], None]]] = queue.Queue()
        atexit.register(self.children.kill_all)
        # FFmpeg already uses several threads per render; one render per core keeps the box responsive.
        for n in range(workers or max(1, os.cpu_count() or 1)):
            threading.Thread(target=self._work, name=f"render-{n}", daemon=True).start()

    def submit(self, output: Path, job: Job, on_error: Callable[[Exception], None]) -> None:
        """Queues `job` (which writes `output` with FFmpeg children tracked); `on_error` gets its failure."""
        marker = pending_marker(output)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        self._jobs.put((output, job, on_error))

    def _work(self) -> None:
        while True:
            output, job, on_error = self._jobs.get()
            try:
                job(self.children)
            except Exception as exc:
                if self.children.closed:  # killed because the sandbox is stopping: not the task's fault
                    return
                print(f"sandbox render of {output.name} failed: {exc}", file=sys.stderr, flush=True)
                on_error(exc)  # reported to the owner (a failed task), never lost
            finally:
                pending_marker(output).unlink(missing_ok=True)

    @staticmethod
    def clear_stale_markers(folder: Path) -> None:
        """Markers left by a previous process whose renders died with it."""
        for marker in folder.rglob("*.pending"):
            marker.unlink(missing_ok=True)
