"""systemd's notify protocol (Type=notify, WatchdogSec=), written on NOTIFY_SOCKET directly.

READY=1 once start-up is done (schema checked, Notion's data sources checked, the worker's loop
turning); WATCHDOG=1 every half of WATCHDOG_USEC while the worker's claim loop turns (a stuck loop
starves the watchdog and systemd restarts the daemon; a database outage does not: the loop turns
through it); STOPPING=1 when SIGTERM came, the watchdog fed on while running scripts are drained;
STATUS= a short line for `systemctl status`. Without NOTIFY_SOCKET (not under systemd) nothing is
sent. The scripts never see NOTIFY_SOCKET: their environment is a fixed list (worker._base_env).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable

from daemon.logs import get_logger

STATUS_EVERY_S = 5.0


class Notifier:
    """Datagrams to systemd's socket; `address` as NOTIFY_SOCKET gives it ('@' is an abstract name)."""

    def __init__(
        self, address: str | None, watchdog_usec: str | None = None, watchdog_pid: str | None = None
    ) -> None:
        self.address = address or None
        self.watchdog_s = _watchdog_seconds(watchdog_usec, watchdog_pid)
        self.failed = False

    @classmethod
    def from_environment(cls) -> Notifier:
        return cls(
            os.environ.get("NOTIFY_SOCKET"), os.environ.get("WATCHDOG_USEC"), os.environ.get("WATCHDOG_PID")
        )

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> None:
        """One datagram of KEY=value lines; a socket that refuses it is said once, never raised."""
        if self.address is None:
            return
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(fields).encode(), target)
        except OSError as exc:
            if not self.failed:
                get_logger().warning(
                    "systemd_notify_failed", socket=self.address, error=exc.strerror or type(exc).__name__
                )
            self.failed = True

    async def run(
        self,
        stop: asyncio.Event,
        alive: Callable[[], bool],
        started: Callable[[], bool],
        status: Callable[[], str],
        finished: asyncio.Future[None] | asyncio.Task[None],
    ) -> None:
        """READY=1 once `started()`, then the watchdog and STATUS until `finished` (the worker's
        task) is done; STOPPING=1 when `stop` is set."""
        if not self.enabled:
            return
        tick = min(STATUS_EVERY_S, self.watchdog_s / 2) if self.watchdog_s else STATUS_EVERY_S
        while not started() and not stop.is_set() and not finished.done():
            await _sleep_or(stop, 0.05)
        if not stop.is_set() and not finished.done():
            self.send("READY=1", f"STATUS={status()}")
        said = ""
        starving = False
        stopping = False
        while not finished.done():
            if stop.is_set() and not stopping:
                stopping = True
                self.send(
                    "STOPPING=1", "STATUS=stopping: running scripts get their grace, then are handed back"
                )
            if self.watchdog_s:
                # Fed while the claim loop turns, and throughout the drain (bounded by its grace).
                if stopping or alive():
                    self.send("WATCHDOG=1")
                    starving = False
                elif not starving:
                    starving = True
                    get_logger().error(
                        "worker_stuck_watchdog_starved",
                        action="systemd restarts the daemon when WatchdogSec passes without a ping",
                    )
            line = status()
            if not stopping and line != said:
                self.send(f"STATUS={line}")
                said = line
            await _sleep_or(stop if not stopping else finished, tick)


async def _sleep_or(event: asyncio.Event | asyncio.Future[None] | asyncio.Task[None], seconds: float) -> None:
    """Waits `seconds` or until the event is set or the task is done (whatever its result: the task
    group that runs it reports its failure, not this)."""
    waiter = asyncio.ensure_future(event.wait()) if isinstance(event, asyncio.Event) else event
    await asyncio.wait({waiter}, timeout=seconds)
    if isinstance(event, asyncio.Event):
        waiter.cancel()


def _watchdog_seconds(usec: str | None, pid: str | None) -> float | None:
    """WATCHDOG_USEC as seconds, when it is meant for this process (WATCHDOG_PID, when set)."""
    if not usec:
        return None
    if pid and pid.strip() != str(os.getpid()):
        return None
    try:
        value = int(usec) / 1_000_000
    except ValueError:
        return None
    return value if value > 0 else None
