"""The daemon's one HTTP listener as a real process: a port already taken stops start-up with one
line naming HTTP_PORT and the fix, with exit 75, which systemd restarts (the port may be let go: a
port collision must not be a permanent outage, as exit 78 was); HTTP_PORT=0 listens
on nothing; PORT, as Railway sets it, is the fallback and binds every interface."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.support.daemon_proc import DaemonProcess, run_cli
from tests.support.db import ON_SQLITE
from tests.support.http_probe import free_port, get, listening_ports


def _env(tmp_path: Path, database: str, **settings: str) -> dict[str, str]:
    (tmp_path / "channels").mkdir(exist_ok=True)
    return {
        "WORKSPACE_DIR": str(tmp_path / "ws"),
        "CHANNELS_DIR": str(tmp_path / "channels"),
        "DATABASE_URL": database,
        **settings,
    }


def _started(daemon: DaemonProcess, timeout: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert daemon.proc is not None and daemon.proc.poll() is None, daemon.log_path.read_text()[-2000:]
        for event in daemon.events():
            if event.get("event") == "daemon_started":
                return event
        time.sleep(0.1)
    raise AssertionError("the daemon did not start")


@ON_SQLITE
def test_a_port_in_use_stops_start_up_naming_http_port_and_the_fix_and_is_restarted(
    database: str, tmp_path: Path
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = run_cli(_env(tmp_path, database, HTTP_PORT=str(port)), "run", timeout=60)
    assert done.returncode == 75, done.stderr  # EX_TEMPFAIL: not in RestartPreventExitStatus
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: HTTP_PORT: 127.0.0.1:{port} is already in use by another program (another daemon on "
        "this host? each needs its own HTTP_PORT); set HTTP_PORT to a free port, or HTTP_PORT=0 for no "
        "HTTP listener"
    )
    assert "Traceback" not in done.stderr
    assert "daemon_started" not in done.stderr  # refused before any work


@ON_SQLITE
def test_http_port_zero_listens_on_nothing(database: str, tmp_path: Path) -> None:
    daemon = DaemonProcess(_env(tmp_path, database, HTTP_PORT="0"), tmp_path / "d.log", "quiet").start()
    try:
        started = _started(daemon)
        assert started["http"] is None
        assert daemon.proc is not None
        assert listening_ports(daemon.proc.pid) == set()
        assert not [e for e in daemon.events() if e.get("event") == "notion_webhooks_off_without_listener"]
    finally:
        daemon.signal()
        assert daemon.wait(timeout=30) == 0


@ON_SQLITE
def test_webhooks_turned_on_with_no_listener_say_so_with_the_fix(database: str, tmp_path: Path) -> None:
    env = _env(tmp_path, database, HTTP_PORT="0", NOTION_WEBHOOKS="true")
    daemon = DaemonProcess(env, tmp_path / "d.log", "quiet").start()
    try:
        _started(daemon)
        said = [e for e in daemon.events() if e.get("event") == "notion_webhooks_off_without_listener"]
        assert len(said) == 1, daemon.log_path.read_text()[-2000:]
        assert said[0]["level"] == "warning"
        assert "set HTTP_PORT" in said[0]["action"]
    finally:
        daemon.signal()
        assert daemon.wait(timeout=30) == 0


@ON_SQLITE
@pytest.mark.parametrize(("host", "bound"), [(None, "0.0.0.0"), ("127.0.0.1", "127.0.0.1")])
def test_port_as_railway_sets_it_is_the_fallback(
    database: str, tmp_path: Path, host: str | None, bound: str
) -> None:
    port = free_port()
    settings = {"HTTP_PORT": "", "PORT": str(port), **({"HTTP_HOST": host} if host else {})}
    daemon = DaemonProcess(_env(tmp_path, database, **settings), tmp_path / "d.log", "platform").start()
    try:
        _started(daemon)
        assert daemon.proc is not None
        assert listening_ports(daemon.proc.pid) == {(bound, port)}
        deadline = time.monotonic() + 10
        while (answer := get(f"http://127.0.0.1:{port}/healthz")).status != 200:
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.1)
        assert answer.json()["alive"] is True
        assert get(f"http://127.0.0.1:{port}/nowhere").status == 404
    finally:
        daemon.signal()
        assert daemon.wait(timeout=30) == 0
