"""The monitoring pieces on their own: where the listener binds, liveness from the worker's
heartbeat, a check that cannot hang its asker, systemd's datagrams, metrics kept apart per App."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import time
from collections.abc import Iterator

import pytest

from daemon.cli import _settings
from daemon.errors import ConfigError
from daemon.monitor.health import Health
from daemon.monitor.metrics import Metrics
from daemon.monitor.probe import Probe
from daemon.monitor.systemd import Notifier
from daemon.notion.traffic import RATE_LIMITED, SERVER_ERROR, NotionTraffic
from daemon.settings import Settings
from tests.support.http_probe import samples, value


@pytest.fixture
def no_port_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PORT", "PORT", "HTTP_HOST"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_port_settings")
def test_the_listener_takes_http_port_then_port_then_8080(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().http_listen() == ("127.0.0.1", 8080, "HTTP_PORT")
    monkeypatch.setenv("PORT", "7001")  # as Railway sets it: its router reaches the container's interface
    assert Settings().http_listen() == ("0.0.0.0", 7001, "PORT")
    monkeypatch.setenv("HTTP_HOST", "127.0.0.1")
    assert Settings().http_listen() == ("127.0.0.1", 7001, "PORT")
    monkeypatch.setenv("HTTP_PORT", "7002")
    assert Settings().http_listen() == ("127.0.0.1", 7002, "HTTP_PORT")
    monkeypatch.setenv("HTTP_PORT", "0")  # off, whatever PORT says
    assert Settings().http_listen() is None
    monkeypatch.setenv("HTTP_PORT", "")  # empty: as unset
    assert Settings().http_listen() == ("127.0.0.1", 7001, "PORT")


@pytest.mark.usefixtures("no_port_settings")
@pytest.mark.parametrize(("name", "given"), [("HTTP_PORT", "eighty"), ("PORT", "70000"), ("HTTP_PORT", "-1")])
def test_a_bad_port_names_its_variable_and_the_fix(
    monkeypatch: pytest.MonkeyPatch, name: str, given: str
) -> None:
    monkeypatch.setenv(name, given)
    with pytest.raises(
        ConfigError, match=f"{name}: '{given}' is not a port; use a number from 1 to 65535, or 0"
    ):
        _settings()


def test_a_stall_limit_shorter_than_a_database_wait_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_STALL_S", "3")
    with pytest.raises(ConfigError, match="WORKER_STALL_S: must be at least 10 seconds"):
        _settings()


def _health(age: float | None, traffic: NotionTraffic | None = None) -> Health:
    return Health(None, lambda: age, 120.0, lambda: traffic)  # type: ignore[arg-type]


def test_liveness_follows_the_claim_loop_heartbeat() -> None:
    assert _health(None).alive() and not _health(None).started()  # starting up: alive, not ready
    assert _health(3.0).alive() and _health(3.0).worker().ok
    stuck = _health(121.0)
    assert not stuck.alive()
    assert stuck.worker().detail == "the claim loop has not turned for 121 s (WORKER_STALL_S: 120): stuck"


def test_notion_is_judged_from_the_daemons_own_requests() -> None:
    traffic = NotionTraffic()
    assert _health(1.0, None).notion_check().ok  # no channel uses Notion
    traffic.record("GET", "ok")
    assert _health(1.0, traffic).notion_check().ok
    traffic.record("POST", RATE_LIMITED)  # a 429 is an answer: Notion is there
    assert traffic.failing_since is None
    traffic.record("GET", SERVER_ERROR, "503 service_unavailable")
    assert _health(1.0, traffic).notion_check().ok  # a blip the retries absorb
    traffic.failing_since = time.monotonic() - 30
    check = _health(1.0, traffic).notion_check()
    assert not check.ok and check.detail == "no answer from Notion for 30 s (last: 503 service_unavailable)"
    traffic.record("GET", "ok")
    assert _health(1.0, traffic).notion_check().ok


async def test_a_hung_check_answers_in_time_and_is_not_started_again() -> None:
    started = 0
    release = asyncio.Event()

    async def hangs() -> str:
        nonlocal started
        started += 1
        await release.wait()
        return "answered"

    probe = Probe(hangs, 0.2)
    for _ in range(3):
        began = time.monotonic()
        with pytest.raises(TimeoutError, match=re.escape("no answer within 0.2 s")):
            await probe()
        assert time.monotonic() - began < 0.5
    assert started == 1  # every ask waited on the one check in flight
    release.set()
    assert await probe() == "answered"
    assert await probe() == "answered" and started == 2


def test_each_metrics_counts_apart_on_its_own_registry() -> None:
    first, second = Metrics(), Metrics()  # two Apps in one process: no clash, no shared counts
    first.script_done("clip", "kling", "succeeded", 12.0)
    first.script_done("clip", "kling", "rate_limited", 1.0)
    page = samples(first.render().decode())
    assert value(page, "nvd_script_duration_seconds_count", kind="clip") == 2
    assert value(page, "nvd_provider_errors_total", provider="kling") == 1
    assert value(page, "nvd_provider_errors_total", **{"class": "rate_limited"}) == 1
    assert value(samples(second.render().decode()), "nvd_script_duration_seconds_count") == 0
    assert not [name for name, _ in page if name.endswith("_created")]


@pytest.fixture
def notify_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket standing in for systemd's, under an abstract name ('@...')."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"@nvd-test-{os.getpid()}-{time.monotonic_ns()}"
    sock.bind("\0" + name[1:])
    sock.settimeout(5)
    yield sock, name
    sock.close()


def _received(sock: socket.socket, until: float = 0.3) -> list[str]:
    got = []
    sock.settimeout(until)
    while True:
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            return got


async def test_a_stuck_worker_starves_the_watchdog(notify_socket: tuple[socket.socket, str]) -> None:
    sock, name = notify_socket
    alive = True
    notifier = Notifier(name, "200000")  # WatchdogSec=0.2 s: a ping every 0.1 s
    stop = asyncio.Event()
    finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    running = asyncio.create_task(
        notifier.run(stop, lambda: alive, lambda: True, lambda: "2 running", finished)
    )
    await asyncio.sleep(0.35)
    first = _received(sock, 0.05)
    assert first[0] == "READY=1\nSTATUS=2 running"
    assert first.count("WATCHDOG=1") >= 2
    alive = False  # the claim loop stopped turning
    await asyncio.sleep(0.05)
    _received(sock, 0.05)
    await asyncio.sleep(0.3)
    assert "WATCHDOG=1" not in _received(sock, 0.05)
    stop.set()  # SIGTERM: stopping, and the drain is fed whatever the loop does
    await asyncio.sleep(0.25)
    stopping = _received(sock, 0.05)
    assert stopping[0].startswith("STOPPING=1\nSTATUS=stopping")
    assert "WATCHDOG=1" in stopping
    finished.set_result(None)
    await asyncio.wait_for(running, 2)


def test_no_notify_socket_means_nothing_is_sent() -> None:
    assert not Notifier(None).enabled
    Notifier(None).send("READY=1")  # no socket, no error
    assert Notifier("/nonexistent/notify", "1000000", str(os.getpid() + 1)).watchdog_s is None  # not for us
