"""A PostgreSQL server of a test's own (initdb, then pg_ctl as the postgres user), for tests that
restart or stop the server: the machine's shared server keeps serving every other test meanwhile."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest


def _bin_dir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateCluster:
    def __init__(self) -> None:
        bindir = _bin_dir()
        if bindir is None or os.geteuid() != 0 or shutil.which("runuser") is None:
            reason = "a private PostgreSQL server needs the PostgreSQL binaries, root and runuser"
            if os.environ.get("CI"):
                pytest.fail(f"CI is set but {reason}", pytrace=False)
            pytest.skip(reason)
        self.bindir = bindir
        # Under /tmp, not the test's folder: the postgres user must be able to reach it.
        self.folder = Path(tempfile.mkdtemp(prefix="nvd-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()

    def _as_postgres(self, *args: str, timeout: float = 120) -> None:
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, f"{args[0]} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}"

    def start(self) -> PrivateCluster:
        shutil.chown(self.folder, "postgres", "postgres")
        self._as_postgres(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", "root", "-A", "trust", "--no-sync"
        )
        self._pg_ctl("start")
        return self

    def _pg_ctl(self, action: str) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.folder / "server.log")
        self._as_postgres(
            str(self.bindir / "pg_ctl"),
            action,
            "-D",
            str(self.data),
            "-w",
            "-m",
            "fast",
            "-l",
            log,
            "-o",
            options,
        )

    def restart(self) -> None:
        """As `pg_ctlcluster ... restart` does: a fast shutdown (sessions end with 57P01), then start."""
        self._pg_ctl("restart")

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run(
                [
                    "runuser",
                    "-u",
                    "postgres",
                    "--",
                    str(self.bindir / "pg_ctl"),
                    "stop",
                    "-D",
                    str(self.data),
                    "-m",
                    "immediate",
                ],
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://root@127.0.0.1:{self.port}/{database}"
