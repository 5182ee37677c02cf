"""Crash points for the fault tests: `CRASH_AT=name[@n][,name[@n]...]` makes the process call
os._exit(9) the n-th time (default: the first) it reaches `name`, as a SIGKILL would end it.

Read on each call, never at import; absent in production, where each check is a dict lookup.
Points in the daemon: after_claim, after_attempt_written, after_job_id_stored, before_complete,
after_complete, outbox_after_property_write, outbox_after_comment (between the Notion call and
its bookkeeping). In the scripts (scripts/_lib/crash.py):
after_submit_before_job_id, mid_download.
"""

from __future__ import annotations

import os
from collections import Counter

_hits: Counter[str] = Counter()


def crash_point(name: str) -> None:
    spec = os.environ.get("CRASH_AT")
    if not spec:
        return
    _hits[name] += 1
    for entry in spec.split(","):
        point, _, nth = entry.strip().partition("@")
        if point == name and _hits[name] == int(nth or 1):
            os._exit(9)
