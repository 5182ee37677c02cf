"""The daemon's HTTP listener as a client sees it (a real aiohttp server on a free port): METRICS_TOKEN
guards /metrics and /readyz, /healthz stays open, /readyz never says where the database is, and a
request still in flight cannot hold the daemon's stop open."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from daemon.budget import day_of
from daemon.db.engine import make_engine
from daemon.monitor.endpoints import Monitoring
from daemon.monitor.figures import DatabaseFigures, Today
from daemon.monitor.health import Health
from daemon.monitor.listener import SHUTDOWN_S, Listener
from daemon.monitor.metrics import Metrics
from daemon.notion import webhooks
from daemon.notion.webhooks import WEBHOOK_PATH, WebhookReceiver
from daemon.settings import Settings
from tests.support.http_probe import free_port

TOKEN = "m3tr1cs-" + "a7" * 16
# Nothing listens on port 1: the connection is refused at once. The password must never be shown.
AWAY_DB = "postgresql+asyncpg://nvd:hunter2pw@127.0.0.1:1/videos"


@pytest.fixture
async def listen(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    started: list[Listener] = []
    engines: list[Any] = []

    async def start(
        *, token: str | None = None, database: str = AWAY_DB, receiver: WebhookReceiver | None = None
    ) -> str:
        engine = make_engine(database)
        engines.append(engine)
        health = Health(engine, lambda: 1.0, 120.0, lambda: None)
        figures = DatabaseFigures(engine, Today(day_of("UTC")), lambda: datetime.now(UTC))
        metrics = Metrics()
        metrics.register(figures)
        listener = Listener("127.0.0.1", free_port())
        Monitoring(health, metrics, figures, token=token).mount(listener)
        if receiver is not None:
            listener.add_post(WEBHOOK_PATH, receiver.handle)
        await listener.start()
        started.append(listener)
        return listener.url

    yield start
    for listener in started:
        await listener.stop()
    for engine in engines:
        await engine.dispose()


async def test_metrics_token_guards_metrics_and_readyz_but_not_healthz(listen: Callable[..., Any]) -> None:
    url = await listen(token=TOKEN)
    async with httpx.AsyncClient(timeout=10) as http:
        for path in ("/metrics", "/readyz"):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                            {"Authorization": f"Bearer {TOKEN}x"}):  # fmt: skip
                answer = await http.get(url + path, headers=headers)
                assert answer.status_code == 401, (path, headers)
                assert "METRICS_TOKEN" in answer.json()["error"] and TOKEN not in answer.text
                assert "cost" not in answer.text
        healthz = await http.get(url + "/healthz")  # a platform's health check sends no header
        assert healthz.status_code == 200 and healthz.json()["alive"] is True
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        metrics = await http.get(url + "/metrics", headers=bearer)
        assert metrics.status_code == 200 and "nvd_database_up 0.0" in metrics.text
        readyz = await http.get(url + "/readyz", headers=bearer)
        assert readyz.status_code == 503 and readyz.json()["checks"]["database"]["ok"] is False


async def test_without_a_token_the_pages_stay_open(listen: Callable[..., Any]) -> None:
    url = await listen()
    async with httpx.AsyncClient(timeout=10) as http:
        assert (await http.get(url + "/metrics")).status_code == 200
        assert (await http.get(url + "/readyz")).status_code == 503  # answered: the database is away


def test_metrics_token_is_a_secret_the_log_redacts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_TOKEN", TOKEN)
    assert TOKEN in Settings().secret_values()
    monkeypatch.setenv("METRICS_TOKEN", "")
    assert Settings().metrics_token is None


async def test_readyz_never_says_where_the_database_is_and_the_log_does(listen: Callable[..., Any]) -> None:
    url = await listen()
    with capture_logs() as logs:
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.get(url + "/readyz")
    detail = answer.json()["checks"]["database"]["detail"]
    assert answer.status_code == 503
    assert "127.0.0.1" not in answer.text and ":1" not in detail and "hunter2pw" not in answer.text
    assert detail.startswith("DATABASE_URL: PostgreSQL cannot be used now (")
    assert "readiness_database_failed" in detail  # where to look
    logged = [e for e in logs if e["event"] == "readiness_database_failed"]
    assert logged and "PostgreSQL at 127.0.0.1:1" in logged[0]["error"]
    assert "hunter2pw" not in str(logged)


async def _trickle(url: str) -> socket.socket:
    """A client that sends a webhook's headers and a few bytes of its body, then nothing more."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        'Content-Length: 1000\r\n\r\n{"verific'.encode()
    )
    await asyncio.sleep(0.2)  # the handler is reading the body now
    return sock


async def test_a_body_that_never_arrives_is_refused_in_time(
    listen: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(webhooks, "BODY_READ_S", 0.5)
    url = await listen(receiver=WebhookReceiver(tmp_path, None, lambda e: False))
    sock = await _trickle(url)
    try:
        sock.settimeout(5)
        began = time.monotonic()
        answer = await asyncio.to_thread(sock.recv, 4096)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert time.monotonic() - began < 2
    finally:
        sock.close()


async def test_a_request_in_flight_cannot_hold_the_stop_open(tmp_path: Path) -> None:
    """aiohttp waits 60 s for requests in flight by default; the daemon's stop has no such time."""
    listener = Listener("127.0.0.1", free_port())
    receiver = WebhookReceiver(tmp_path, None, lambda e: False)
    listener.add_post(WEBHOOK_PATH, receiver.handle)
    await listener.start()
    sock = await _trickle(listener.url)
    try:
        began = time.monotonic()
        await listener.stop()
        assert time.monotonic() - began < SHUTDOWN_S + 1
    finally:
        sock.close()
