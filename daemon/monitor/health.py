"""/healthz and /readyz: is the daemon alive, and can it do its work now.

/healthz (liveness) answers 200 while the event loop answers and the worker's claim loop has turned
within WORKER_STALL_S: the same test systemd's watchdog is fed by, so a supervisor that restarts on
a failing /healthz (Kubernetes, Railway) and systemd agree. A database or Notion outage does not
fail it: the daemon rides those out (scripts go on), and a restart would not help.

/readyz (readiness) answers 200 only when every check passes: the database answers, its schema is
at the code's head, the worker's heartbeat is fresh and Notion answers (when a channel uses it,
judged from the daemon's own recent calls: readiness never spends Notion's 3 requests a second).
The database check has a time limit (daemon/monitor/probe.py), so the answer comes within ~2 s
even while the database hangs. The JSON names each check and, on failure, why: never a secret, and
never where the database is (the listener may face the internet): a database failure names the
kind of failure, and the log's `readiness_database_failed` says the host and port (as
daemon/db/reach.py does, never the password).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon.db.reach import database_problem
from daemon.errors import SchemaNotMigrated
from daemon.logs import get_logger
from daemon.migrate import check_schema
from daemon.monitor.probe import Probe
from daemon.notion.traffic import NotionTraffic

CHECK_TIMEOUT_S = 1.5
# A run of failed Notion requests shorter than this is a blip the gateway's retries absorb.
NOTION_GRACE_S = 15.0
FAILURE_LOG_S = 60.0  # a failing database check is logged at once, then at most once a minute


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail}


class Health:
    def __init__(
        self,
        engine: AsyncEngine,
        heartbeat_age: Callable[[], float | None],
        stall_s: float,
        notion: Callable[[], NotionTraffic | None],
        *,
        stopping: Callable[[], bool] = lambda: False,
        timeout_s: float = CHECK_TIMEOUT_S,
    ) -> None:
        self.engine = engine
        self.heartbeat_age = heartbeat_age
        self.stall_s = stall_s
        self.notion = notion
        self.stopping = stopping
        self.timeout_s = timeout_s
        self.database_probe = Probe(self._database, timeout_s)
        self.failure_logged_at = float("-inf")

    # Liveness -------------------------------------------------------------------------------------
    def worker(self) -> Check:
        age = self.heartbeat_age()
        if age is None:
            return Check("worker", False, "the claim loop has not started yet")
        if age > self.stall_s:
            return Check(
                "worker",
                False,
                f"the claim loop has not turned for {age:.0f} s (WORKER_STALL_S: {self.stall_s:.0f}): stuck",
            )
        return Check("worker", True, f"the claim loop turned {age:.1f} s ago")

    def started(self) -> bool:
        """The claim loop has turned once: start-up is done (systemd's READY=1)."""
        return self.heartbeat_age() is not None

    def alive(self) -> bool:
        """What systemd's watchdog and /healthz go by: starting up, or a claim loop that turns."""
        age = self.heartbeat_age()
        return age is None or age <= self.stall_s

    async def healthz(self, request: web.Request) -> web.Response:
        check = self.worker()
        alive = self.alive()
        body = {"alive": alive, "checks": {check.name: check.as_json()}}
        return web.json_response(body, status=200 if alive else 503)

    # Readiness ------------------------------------------------------------------------------------
    async def ready(self) -> list[Check]:
        try:
            database = await self.database_probe()
        except TimeoutError as exc:
            database = [
                Check("database", False, str(exc)),
                Check("schema", False, "not checked: no database"),
            ]
        checks = [*database, self.worker(), self.notion_check()]
        if self.stopping():
            checks.append(Check("stopping", False, "the daemon is shutting down (SIGTERM)"))
        return checks

    async def readyz(self, request: web.Request) -> web.Response:
        checks = await self.ready()
        ready = all(c.ok for c in checks)
        body = {"ready": ready, "checks": {c.name: c.as_json() for c in checks}}
        return web.json_response(body, status=200 if ready else 503)

    async def _database(self) -> list[Check]:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            problem = database_problem(exc, self.engine.url)
            why = str(problem) if problem is not None else _unreachable(self.engine.url, exc)
            if (now := time.monotonic()) - self.failure_logged_at >= FAILURE_LOG_S:
                self.failure_logged_at = now
                get_logger().warning("readiness_database_failed", error=why)
            answer = _unanswered(self.engine.url, exc)
            return [Check("database", False, answer), Check("schema", False, "not checked: no database")]
        self.failure_logged_at = float("-inf")
        reached = Check("database", True, "answers")
        try:
            await check_schema(self.engine)
        except SchemaNotMigrated as exc:
            return [reached, Check("schema", False, str(exc))]
        return [reached, Check("schema", True, "at the code's head revision")]

    def notion_check(self) -> Check:
        """From the daemon's own recent Notion requests (daemon/notion/traffic.py): no call of its own."""
        traffic = self.notion()
        if traffic is None:
            return Check("notion", True, "not used: no channel names a Notion data source")
        now = time.monotonic()
        if traffic.failing_since is not None:
            down = now - traffic.failing_since
            said = f"no answer from Notion for {down:.0f} s (last: {traffic.last_problem})"
            return Check("notion", down < NOTION_GRACE_S, said)
        if traffic.answered_at is None:
            return Check("notion", True, "no call made yet")
        return Check("notion", True, f"answered {now - traffic.answered_at:.0f} s ago")


def _unanswered(url: URL, exc: BaseException) -> str:
    """A failed database check in /readyz's words: the kind of failure, not where the database is."""
    cause = getattr(exc, "orig", None) or exc
    what = "the SQLite file" if url.get_backend_name() == "sqlite" else "PostgreSQL"
    return (
        f"DATABASE_URL: {what} cannot be used now ({type(cause).__name__}); the daemon's log "
        "(readiness_database_failed) says where and why"
    )


def _unreachable(url: URL, exc: BaseException) -> str:
    """Where the database is and the failure's type: the driver's own words may quote more."""
    cause = getattr(exc, "orig", None) or exc
    if url.get_backend_name() == "sqlite":
        return f"DATABASE_URL: the SQLite file {url.database} does not answer ({type(cause).__name__})"
    where = f"PostgreSQL at {url.host or 'localhost'}:{url.port or 5432}"
    return f"DATABASE_URL: cannot reach {where} ({type(cause).__name__}); it may be restarting or away"
