"""notion_efficiency: Notion requests per idle poll and per finished project.

One data source of 5,000 pages (Draft, Ready, Published, Error: nothing to do) shared by three
channels told apart by the Channel select, made through the sandbox's Notion API. The real daemon
(`App.run`: leader lease, APScheduler intake and outbox, the Worker with the real scripts) runs
against it; the sandbox's /_sandbox/stats "notion" entry counts requests by endpoint.

- startup: the requests of `App.build` (the schema check of each data source);
- idle poll: requests between polls while nothing is actionable, divided by the polls made;
- per finished project: one page set to Queued by the operator, produced to Ready (storyboard
  generated and written to the page body, gates off), until the outbox and comments are drained.
  Reported in total and without the idle polls that fell in that time.

The sandbox's own Notion rate limit is raised so seeding 5,000 pages takes seconds; the daemon keeps
its production token bucket (NOTION_RATE 3/s).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select

from benchmarks.harness import Context, database, sandbox, table, target
from benchmarks.makespan import KLING_POLL_S, write_shims
from daemon.app import App
from daemon.db.models import Comment, Outbox, Task
from daemon.notion.gateway import NotionApi
from daemon.notion.schema import create_database
from daemon.paths import DEFAULT_PROVIDERS_FILE
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import credentials, settings_for

NAME = "notion_efficiency"
CHANNELS = {"alpha": "Alpha", "beta": "Beta", "gamma": "Gamma"}
IDLE_STATUSES = ("Draft", "Draft", "Ready", "Published", "Error")


def _text(content: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": {"content": content}}]


def _page(source: str, n: int, status: str) -> dict[str, Any]:
    channel = list(CHANNELS.values())[n % len(CHANNELS)]
    return {
        "parent": {"type": "data_source_id", "data_source_id": source},
        "properties": {
            "Title": {"title": _text(f"Video {n}")},
            "Topic": {"rich_text": _text(f"A grey heron fishing at dawn, take {n}")},
            "Story Direction": {"rich_text": _text("Calm and observational")},
            "Channel": {"select": {"name": channel}},
            "Priority": {"select": {"name": "Normal"}},
            "Status": {"select": {"name": status}},
        },
    }


async def seed(box: SandboxProcess, pages: int) -> tuple[str, str]:
    """A shared database with `pages` idle pages; returns (data source id, a page to queue later)."""
    creds = credentials(box)
    bot = NotionApi(creds["notion_token"], box.base("notion"), rate=5000, burst=500)
    try:
        db = await create_database(
            bot, creds["notion_root_page_id"], "Shared videos", list(CHANNELS.values())
        )
        source = str(db["data_sources"][0]["id"])
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(pages):
            queue.put_nowait(n)

        async def writer() -> None:
            while not queue.empty():
                n = queue.get_nowait()
                await bot.call("POST", "pages", body=_page(source, n, IDLE_STATUSES[n % len(IDLE_STATUSES)]))

        await asyncio.gather(*(writer() for _ in range(8)))
        target_page = await bot.call("POST", "pages", body=_page(source, pages, "Draft"))
    finally:
        await bot.close()
    return source, str(target_page["id"])


def write_channels(folder: Path, source: str, scenes: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for channel, option in CHANNELS.items():
        config = {
            "id": channel,
            "name": option,
            "notion": {"data_source_id": source, "channel_option": option},
            "voice": {"voice_id": "JBFqnCBsd6RMkjVDRZzb"},
            "scenes": scenes,
            "gates": {"storyboard": False, "assets": False, "final": False},
        }
        (folder / f"{channel}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def _counts(box: SandboxProcess) -> dict[str, int]:
    return dict(box.stats()["notion"]["requests_by_endpoint"])


def _compact(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {
        k: after.get(k, 0) - before.get(k, 0) for k in sorted(after) if after.get(k, 0) != before.get(k, 0)
    }


async def _wait_polls(box: SandboxProcess, polls: int, timeout: float) -> None:
    start = _counts(box).get("data_sources.query", 0)
    deadline = time.monotonic() + timeout
    while _counts(box).get("data_sources.query", 0) < start + polls:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the daemon made fewer than {polls} intake polls in {timeout} s")
        await asyncio.sleep(0.05)


async def _settled(app: App) -> bool:
    """The task is done and every Notion write about it has been made."""
    async with app.engine.connect() as conn:
        states = [r[0] for r in await conn.execute(select(Task.state))]
        pending = await conn.scalar(
            select(func.count()).select_from(Outbox).where(Outbox.version > Outbox.sent_version)
        )
        comments = await conn.scalar(
            select(func.count()).select_from(Comment).where(Comment.state == "pending")
        )
        shown = await conn.scalar(select(Outbox.sent_value).where(Outbox.property == "Status"))
    if any(s in ("error", "cancelled", "paused") for s in states):
        raise RuntimeError(f"the benchmark project ended {states}; see the daemon log")
    ready = isinstance(shown, dict) and shown.get("status") == "Ready"
    return bool(states) and all(s == "done" for s in states) and ready and pending == 0 and comments == 0


async def run(ctx: Context) -> dict[str, Any]:
    pages = 200 if ctx.quick else 5000
    scale = 1 / 240 if ctx.quick else 1 / 60
    poll_s = 1.0 if ctx.quick else 3.0
    idle_polls = 2 if ctx.quick else 4
    scenes = 1 if ctx.quick else 4
    work = ctx.folder("notion")
    with sandbox(ctx.folder("sandbox-notion"), "--latency-scale", str(scale), "--notion-rate", "5000") as box:
        seed_started = time.perf_counter()
        source, page = await seed(box, pages)
        seed_s = time.perf_counter() - seed_started
        write_channels(work / "channels", source, scenes)
        kind = "postgres" if ctx.pg_ok else "sqlite"
        async with database(kind, ctx) as url:
            settings = settings_for(
                box,
                work / "ws",
                work / "channels",
                url,
                scripts_dir=write_shims(work / "scripts", KLING_POLL_S * scale),
                daemon_id="bench-notion",
                notion_poll_s=poll_s,
                providers_file=DEFAULT_PROVIDERS_FILE,
            )
            before_build = _counts(box)
            app = await App.build(settings)
            startup = _delta(_counts(box), before_build)
            stop = asyncio.Event()
            daemon = asyncio.create_task(app.run(stop), name="bench-notion-daemon")
            try:
                await _wait_polls(box, 1, timeout=30)  # leadership taken, first poll made
                idle_before = _counts(box)
                await _wait_polls(box, idle_polls, timeout=idle_polls * poll_s * 3 + 10)
                idle = _delta(_counts(box), idle_before)
                creds = credentials(box)
                operator = NotionApi(creds["notion_operator_token"], box.base("notion"), rate=100, burst=10)
                try:
                    await operator.call(
                        "PATCH",
                        f"pages/{page}",
                        body={"properties": {"Status": {"select": {"name": "Queued"}}}},
                    )
                finally:
                    await operator.close()
                project_before = _counts(box)
                project_started = time.monotonic()
                while not await _settled(app):
                    if daemon.done():
                        daemon.result()
                        raise RuntimeError("the daemon stopped before the project was done")
                    await asyncio.sleep(0.2)
                project_s = time.monotonic() - project_started
                project = _delta(_counts(box), project_before)
            finally:
                stop.set()
                await daemon
                await app.close()
    idle_total = sum(idle.values())
    polls = idle.get("data_sources.query", 0)
    polls_in_project = project.get("data_sources.query", 0)
    project_total = sum(project.values())
    return {
        "pages": pages,
        "data_sources": 1,
        "channels": len(CHANNELS),
        "seed_s": round(seed_s, 1),
        "poll_interval_s": poll_s,
        "startup_requests": sum(startup.values()),
        "startup_by_endpoint": startup,
        "idle_polls": polls,
        "idle_requests": idle_total,
        "requests_per_idle_poll": round(idle_total / max(1, polls), 3),
        "requests_per_idle_poll_per_source": round(idle_total / max(1, polls), 3),
        "idle_by_endpoint": idle,
        "project_scenes": scenes,
        "project_seconds": round(project_s, 1),
        "requests_per_project": project_total,
        "requests_per_project_without_idle_polls": project_total - polls_in_project,
        "project_by_endpoint": project,
        "target_per_idle_poll": 1,
    }


def render(result: dict[str, Any]) -> str:
    rows: list[list[object]] = [
        ["start-up (schema check)", result["startup_requests"], _compact(result["startup_by_endpoint"])],
        [
            f"idle poll ({result['idle_polls']} polls)",
            result["requests_per_idle_poll"],
            _compact(result["idle_by_endpoint"]),
        ],
        [
            f"one project, {result['project_scenes']} scenes, {result['project_seconds']} s",
            result["requests_per_project"],
            _compact(result["project_by_endpoint"]),
        ],
    ]
    text = table(
        f"notion_efficiency: {result['pages']} pages in 1 data source "
        f"shared by {result['channels']} channels",
        ["what", "requests", "by endpoint"],
        rows,
    )
    met = result["requests_per_idle_poll_per_source"] <= result["target_per_idle_poll"]
    return (
        f"{text}\nrequests per idle poll per data source = {result['requests_per_idle_poll_per_source']} "
        f"(target 1: {target(met)}); per project without idle polls = "
        f"{result['requests_per_project_without_idle_polls']}"
    )
