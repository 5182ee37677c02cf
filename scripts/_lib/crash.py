"""Crash points for the fault tests (same `CRASH_AT=name[@n]` convention as the daemon's).

Every run of a script inherits the variable; with `CRASH_ONCE=<file>` only the first run that
reaches a point dies there (it leaves `<file>.<point>` behind), so the retry that follows can
succeed. With `CRASH_KILLS_PARENT=1` the script kills its daemon (SIGKILL) before it dies: the
daemon itself killed while the script was at that point.
"""

from __future__ import annotations

import os
import signal
import sys


def crash_point(name: str) -> None:
    spec = os.environ.get("CRASH_AT")
    if not spec:
        return
    for entry in spec.split(","):
        point, _, nth = entry.strip().partition("@")
        # A script reaches each of its points once per run: only @1 (or no count) applies.
        if point == name and int(nth or 1) == 1:
            once = os.environ.get("CRASH_ONCE")
            if once:
                try:
                    with open(f"{once}.{name}", "x"):
                        pass
                except FileExistsError:
                    return
            sys.stdout.flush()
            if os.environ.get("CRASH_KILLS_PARENT") == "1":
                # The daemon names itself (its script may be a child of its fork server).
                os.kill(int(os.environ.get("NVD_DAEMON_PID") or os.getppid()), signal.SIGKILL)
            os._exit(9)
