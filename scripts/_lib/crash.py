"""Crash points for the fault tests (same `CRASH_AT=name[@n]` convention as the daemon's)."""

from __future__ import annotations

import os
import sys


def crash_point(name: str) -> None:
    spec = os.environ.get("CRASH_AT")
    if not spec:
        return
    for entry in spec.split(","):
        point, _, nth = entry.strip().partition("@")
        # A script reaches each of its points once per run: only @1 (or no count) applies.
        if point == name and int(nth or 1) == 1:
            sys.stdout.flush()
            os._exit(9)
