"""A script run by the daemon dies with it: an orphan would go on calling a provider for an item
whose lease another daemon takes over, and pay a second time for a result nobody records.

The daemon names itself in NVD_PARENT_PID. On Linux the kernel sends SIGTERM when the parent
goes (PR_SET_PDEATHSIG); the handler kills the script's whole process group (FFmpeg included). A
script run by hand, without the variable, is left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from types import FrameType

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    # Read once and removed, so a Python program this script starts is not taken for a daemon's script.
    expected = os.environ.pop("NVD_PARENT_PID", None)
    if not expected or not sys.platform.startswith("linux"):
        return
    signal.signal(signal.SIGTERM, _kill_own_group)
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if str(os.getppid()) != expected:
        _kill_own_group(signal.SIGTERM, None)  # the daemon died before the line above took effect


def _kill_own_group(signum: int, frame: FrameType | None) -> None:
    # Nothing before the kill: with the daemon gone, even a flush of stdout can raise (broken pipe).
    if os.getpgrp() == os.getpid():  # the daemon starts each script as its own group's leader
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os._exit(128 + signum)
