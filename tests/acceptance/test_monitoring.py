"""Watching the real daemon over HTTP: /metrics scraped while a video is made from its Notion page
moves as the work does; /readyz says ready only when the daemon can work, and names why not."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import yaml

from daemon.notion.gateway import NotionApi
from daemon.notion.props import option_name
from daemon.notion.webhooks import TOKEN_FILE, WEBHOOK_PATH
from tests.support.daemon_proc import DaemonProcess
from tests.support.db import ON_POSTGRES, ON_SQLITE
from tests.support.http_probe import free_port, get, samples, value
from tests.support.notion_kit import seed
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import credentials, daemon_env, small_cut_scripts, write_channel
from tests.support.tcp_proxy import TcpProxy

METRICS_TOKEN = "scrape-" + "5e" * 16
KINDS = ("storyboard", "asset", "composite", "clip", "narration", "sfx", "assembly")


async def _ready_within(
    daemon: DaemonProcess, url: str, seconds: float, headers: dict[str, str] | None = None
) -> dict[str, object]:
    deadline = time.monotonic() + seconds
    while True:
        assert daemon.proc is not None and daemon.proc.poll() is None, daemon.log_path.read_text()[-3000:]
        try:
            answer = get(f"{url}/readyz", headers=headers)
            if answer.status == 200:
                return dict(answer.json())
        except httpx.TransportError:
            pass  # not listening yet
        assert time.monotonic() < deadline, "the daemon never said it was ready"
        await asyncio.sleep(0.2)


@ON_SQLITE
async def test_metrics_move_while_a_video_is_made(
    fresh_sandbox: SandboxProcess, database: str, tmp_path: Path
) -> None:
    fresh_sandbox.configure(cheap_media=True, kling_seconds=60)
    seeded = seed(fresh_sandbox, "nature", 1, "--scenes", "1")
    page = seeded["page_ids"][0]
    channels = tmp_path / "channels"
    channels.mkdir()
    config = yaml.safe_load(Path(seeded["channel_file"]).read_text())
    config["gates"] = {"storyboard": False, "assets": False, "final": False}
    (channels / "nature.yaml").write_text(yaml.safe_dump(config))
    port = free_port()
    env = {
        **daemon_env(
            fresh_sandbox, tmp_path / "ws", channels, database, scripts_dir=small_cut_scripts(tmp_path)
        ),
        "NOTION_POLL_S": "1",
        "CLAIM_POLL_S": "0.2",
        "HTTP_PORT": str(port),
    }
    url = f"http://127.0.0.1:{port}"
    creds = credentials(fresh_sandbox)
    operator = NotionApi(creds["notion_operator_token"], fresh_sandbox.base("notion"))
    daemon = DaemonProcess(env, tmp_path / "daemon.log", "watched").start()
    try:
        ready = await _ready_within(daemon, url, 30)
        assert set(ready["checks"]) == {"database", "schema", "worker", "notion"}  # type: ignore[arg-type]
        assert get(f"{url}/healthz").status == 200
        before = samples(get(f"{url}/metrics").text)
        assert value(before, "nvd_database_up") == 1
        assert value(before, "nvd_provider_limit", provider="kling") >= 1
        assert value(before, "nvd_items") == 0  # nothing queued yet
        # Webhooks not turned on (no NOTION_WEBHOOKS, no NOTION_WEBHOOK_SECRET): no route to post a
        # verification request to, whoever reaches the listener.
        handshake = httpx.post(f"{url}{WEBHOOK_PATH}", json={"verification_token": "secret_stranger"})
        assert handshake.status_code == 404
        assert not list((tmp_path / "ws").glob(f"{TOKEN_FILE}*"))

        await operator.call(
            "PATCH", f"pages/{page}", body={"properties": {"Status": {"select": {"name": "Queued"}}}}
        )
        pages: list[str] = []
        deadline = time.monotonic() + 180
        while True:
            scraped = get(f"{url}/metrics")
            assert scraped.status == 200 and scraped.seconds < 3
            pages.append(scraped.text)
            status = option_name((await operator.call("GET", f"pages/{page}"))["properties"]["Status"])
            if status == "Ready":
                break
            assert status != "Error", "the video failed"
            assert time.monotonic() < deadline, f"the video was not made (Status {status})"
            await asyncio.sleep(0.3)
        after = samples(get(f"{url}/metrics").text)
    finally:
        daemon.signal()
        daemon.wait(timeout=60)
        await operator.close()

    mid_run = [samples(text) for text in pages]
    # While the video was made, a scrape saw scripts running against their providers' limits.
    assert any(value(p, "nvd_provider_running") >= 1 for p in mid_run)
    # The steps succeeded one after another, and the scrapes saw the count grow, never fall.
    done = [value(p, "nvd_items", state="succeeded") for p in mid_run]
    assert (
        done == sorted(done)
        and len(set(done)) >= 3
        and done[-1] == value(after, "nvd_items", state="succeeded")
    )
    for kind in KINDS:
        assert value(after, "nvd_items", kind=kind, state="succeeded") >= 1, kind
        assert value(after, "nvd_script_duration_seconds_count", kind=kind, outcome="succeeded") >= 1, kind
    assert value(after, "nvd_script_duration_seconds_count") > value(
        before, "nvd_script_duration_seconds_count"
    )
    assert value(after, "nvd_tasks", state="done") == 1
    assert value(after, "nvd_ready_backlog") == 0
    # Notion: the daemon's own requests, writes included, counted by method and result.
    assert value(after, "nvd_notion_requests_total", method="POST", result="ok") > value(
        before, "nvd_notion_requests_total", method="POST", result="ok"
    )
    assert value(after, "nvd_notion_requests_total", method="PATCH", result="ok") >= 1
    # Money: what this daemon booked, and the channel's day from the ledger, alike.
    booked = value(after, "nvd_cost_usd_total", channel="nature")
    assert booked > 0
    assert abs(value(after, "nvd_channel_cost_today_usd", channel="nature", entry="spent") - booked) < 0.01
    assert value(after, "nvd_provider_errors_total") == 0
    # No secret in any page the listener served.
    served = "\n".join([*pages, str(ready)])
    for secret in creds.values():
        if isinstance(secret, str) and len(secret) >= 8:
            assert secret not in served


@ON_POSTGRES
async def test_readyz_fails_while_the_database_is_away_and_recovers(database: str, tmp_path: Path) -> None:
    """Cut (refused) and then frozen (hung) through a TCP proxy: /readyz answers 503 within ~2 s
    naming the database (never where it is), /healthz stays 200 (a restart would not help), /metrics
    still answers; the database back, /readyz is 200 again. With METRICS_TOKEN set, as a listener
    facing the internet has it: /metrics and /readyz answer the token only, /healthz anyone."""
    host, _, rest = database.partition("@")[2].partition(":")
    proxy = TcpProxy(host, int(rest.split("/")[0]))
    write_channel(tmp_path / "channels")
    port = free_port()
    env = {
        "WORKSPACE_DIR": str(tmp_path / "ws"),
        "CHANNELS_DIR": str(tmp_path / "channels"),
        "DATABASE_URL": proxy.url(rest.split("/", 1)[1]),
        "HTTP_PORT": str(port),
        "CLAIM_POLL_S": "0.2",
        "METRICS_TOKEN": METRICS_TOKEN,
    }
    url = f"http://127.0.0.1:{port}"
    bearer = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    daemon = DaemonProcess(env, tmp_path / "daemon.log", "db-watched").start()
    try:
        await _ready_within(daemon, url, 30, bearer)
        for path in ("/readyz", "/metrics"):
            refused = get(f"{url}{path}")
            assert refused.status == 401 and "METRICS_TOKEN" in refused.text, path
            assert "nvd_" not in refused.text and "database" not in refused.text
        assert get(f"{url}/healthz").status == 200
        for outage in (proxy.cut, proxy.freeze):
            outage()
            deadline = time.monotonic() + 15
            while True:
                ready = get(f"{url}/readyz", headers=bearer)
                assert ready.seconds < 2.5, f"/readyz took {ready.seconds:.1f} s during {outage.__name__}"
                live = get(f"{url}/healthz")
                assert live.status == 200 and live.seconds < 1, live.text
                if ready.status == 503:
                    break
                assert time.monotonic() < deadline, f"/readyz stayed 200 during {outage.__name__}"
                await asyncio.sleep(0.2)
            checks = ready.json()["checks"]
            assert checks["database"]["ok"] is False and checks["schema"]["ok"] is False
            assert (
                checks["worker"]["ok"] is True and checks["notion"]["ok"] is True
            )  # only the database fails
            why = checks["database"]["detail"]
            if outage == proxy.cut:
                assert why.startswith("DATABASE_URL: PostgreSQL cannot be used now")
            else:
                assert "no answer within" in why
            assert "127.0.0.1" not in ready.text and str(proxy.port) not in ready.text
            scraped = get(f"{url}/metrics", headers=bearer)
            assert scraped.status == 200 and scraped.seconds < 3.5
            assert value(samples(scraped.text), "nvd_database_up") == 0
            assert value(samples(scraped.text), "nvd_items") == 0  # no stale figures
            await asyncio.sleep(1)  # a while away: /healthz still fine, the daemon still up
            assert get(f"{url}/healthz").status == 200
            assert daemon.proc is not None and daemon.proc.poll() is None
            proxy.restore()
            await _ready_within(daemon, url, 20, bearer)
        assert value(samples(get(f"{url}/metrics", headers=bearer).text), "nvd_database_up") == 1
        daemon.signal()
        assert daemon.wait(timeout=30) == 0
    finally:
        daemon.stop()
        proxy.close()
    events = daemon.events()
    assert "metrics_database_unread" in [e.get("event") for e in events]
    # The log says where the database is (the answers did not).
    failed = [e for e in events if e.get("event") == "readiness_database_failed"]
    assert failed and f"PostgreSQL at 127.0.0.1:{proxy.port}" in failed[0]["error"]
    assert METRICS_TOKEN not in daemon.log_path.read_text()
