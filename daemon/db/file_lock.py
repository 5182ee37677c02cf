"""One daemon per SQLite file: an exclusive flock on `<database>.lock`, beside the file, held for
the process's life.

SQLite serialises writers but not daemons: two on one file would each sweep the other's leases as
their own restart leftovers, reap each other's scripts and double the Notion writes. PostgreSQL is
made for several daemons and takes no lock. The kernel drops the lock when the process ends, however
it ends (a SIGKILL too), so a stale file never blocks a start; the file's text only names the holder.
The descriptor is not inherited by the scripts (close-on-exec), which would hold the lock past a
daemon's death otherwise.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from daemon.errors import ConfigError

SUFFIX = ".lock"


class DatabaseInUse(ConfigError):
    """Another process holds the SQLite file: a setting to fix (two daemons configured on one
    file), not a failure a supervisor should restart into (exit 78)."""

    def __init__(self, database: Path, holder: Holder, lock: Path) -> None:
        self.holder = holder
        super().__init__(
            f"DATABASE_URL: the SQLite file {database} is in use by {holder.describe()}. One SQLite "
            "file takes one daemon: stop that one first, or use PostgreSQL (DATABASE_URL="
            f"postgresql://...) to run several daemons on one database (lock file: {lock})"
        )


def hold(url: str, command: str, daemon_id: str) -> DatabaseLock | None:
    """The SQLite file's lock, held by this process from now on (release() or its end gives it up);
    None for PostgreSQL, or when the file's folder does not exist yet (nothing to run on)."""
    database = sqlite_file(url)
    if database is None or not database.parent.is_dir():
        return None
    lock = DatabaseLock(database)
    try:
        holder = lock.take(command, daemon_id)
    except OSError as exc:
        raise ConfigError(
            f"DATABASE_URL: cannot open the lock file {lock.path} beside the SQLite file ({exc.strerror}); "
            "make the database's folder writable for the daemon's user"
        ) from exc
    if holder is not None:
        raise DatabaseInUse(database, holder, lock.path)
    return lock


def sqlite_file(url: str) -> Path | None:
    """The SQLite database's file (resolved: two spellings of one file share the lock); None for
    PostgreSQL or an in-memory database."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(os.path.realpath(database))


@dataclass(frozen=True)
class Holder:
    """Who holds the lock, as the holder wrote it (parts may be unknown: a file being rewritten)."""

    command: str
    daemon_id: str
    pid: int | None
    host: str
    since: str

    def describe(self) -> str:
        pid = f"pid {self.pid}" if self.pid else "pid unknown"
        return f"`{self.command}` ({pid} on {self.host}, DAEMON_ID {self.daemon_id}, since {self.since})"


class DatabaseLock:
    """The lock of one SQLite file. `take` holds it until `release` or the process's end."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.path = database.with_name(database.name + SUFFIX)
        self.fd: int | None = None

    def take(self, command: str, daemon_id: str) -> Holder | None:
        """Takes the lock and writes who holds it; returns the other holder instead when it is held."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            return holder
        except BaseException:
            os.close(fd)
            raise
        me = {
            "command": command,
            "daemon_id": daemon_id,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        self.fd = fd
        return None

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)
            os.close(self.fd)  # the lock goes with the last descriptor
            self.fd = None


def _read(fd: int) -> Holder:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    pid = data.get("pid")
    return Holder(
        command=str(data.get("command") or "a daemon"),
        daemon_id=str(data.get("daemon_id") or "unknown"),
        pid=pid if isinstance(pid, int) else None,
        host=str(data.get("host") or "an unknown host"),
        since=str(data.get("since") or "unknown"),
    )
