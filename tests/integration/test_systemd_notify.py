"""systemd's notify protocol with a real daemon and a real datagram socket standing in for
systemd's: READY=1 once start-up is done, WATCHDOG=1 at half of WATCHDOG_USEC, STOPPING=1 on
SIGTERM, STATUS= lines; under an abstract socket name ('@...') and a socket file alike."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.support.daemon_proc import DaemonProcess
from tests.support.db import ON_SQLITE


def _next(sock: socket.socket, timeout: float) -> str:
    sock.settimeout(timeout)
    return sock.recv(4096).decode()


@pytest.mark.slow
@ON_SQLITE
@pytest.mark.parametrize("kind", ["abstract", "file"])
def test_ready_watchdog_and_stopping_reach_systemd(database: str, tmp_path: Path, kind: str) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if kind == "abstract":
        address = f"@nvd-notify-{os.getpid()}-{time.monotonic_ns()}"
        sock.bind("\0" + address[1:])
    else:
        address = str(tmp_path / "notify.sock")
        sock.bind(address)
    (tmp_path / "channels").mkdir()
    env = {
        "WORKSPACE_DIR": str(tmp_path / "ws"),
        "CHANNELS_DIR": str(tmp_path / "channels"),
        "DATABASE_URL": database,
        "NOTIFY_SOCKET": address,
        "WATCHDOG_USEC": "1000000",  # WatchdogSec=1: a ping every half second
    }
    daemon = DaemonProcess(env, tmp_path / "daemon.log", "notified").start()
    try:
        ready = _next(sock, 30)
        assert ready.startswith("READY=1\nSTATUS=0 of ")
        assert "daemon_started" in [e.get("event") for e in daemon.events()]  # start-up was done first
        began = time.monotonic()
        pings = 0
        while time.monotonic() - began < 2.2:
            pings += _next(sock, 2) == "WATCHDOG=1"
        assert 2 <= pings <= 6  # every 0.5 s (a loaded machine may lag one), not flooding
        daemon.signal(signal.SIGTERM)
        said = [_next(sock, 10)]
        while not said[-1].startswith("STOPPING=1"):
            said.append(_next(sock, 10))
        assert (
            said[-1] == "STOPPING=1\nSTATUS=stopping: running scripts get their grace, then are handed back"
        )
        assert daemon.wait(timeout=30) == 0
    finally:
        daemon.stop()
        sock.close()
