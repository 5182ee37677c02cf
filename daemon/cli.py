"""The command line: run, migrate, enqueue, approve, status."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select

from daemon import logs
from daemon.app import App, install_signal_handlers, prepare_workspace
from daemon.clock import SystemClock
from daemon.complete import approve_gate
from daemon.db.engine import make_engine
from daemon.db.models import Item, Task
from daemon.db.reach import check_reachable
from daemon.demo import run_demo
from daemon.errors import ConfigError, DaemonError, ServiceUnreachable
from daemon.migrate import upgrade
from daemon.notion.gateway import NotionApi
from daemon.notion.schema import create_database
from daemon.settings import Settings, load_env_file
from services.errors import ServiceError
from services.storyboard import parse_storyboard_yaml

GATES = {"storyboard": "storyboard_gate", "assets": "assets_gate", "final": "final_gate"}


# Exit codes beside 0 and 1 (sysexits.h): a setting to fix, which a supervisor should not restart
# (systemd: RestartPreventExitStatus=78), and a service that may come back, which it should.
EX_CONFIG = 78
EX_TEMPFAIL = 75


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.env_file:
            load_env_file(Path(args.env_file))
        settings = _settings()
        logs.configure(settings.secret_values(), json_lines=not sys.stderr.isatty())
        return int(asyncio.run(COMMANDS[args.command](settings, args)))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EX_CONFIG
    except ServiceUnreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    except (DaemonError, ServiceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _settings() -> Settings:
    """The settings from the environment; a bad value names its variable and what it must be."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]).upper()
            problems.append(f"{name}: {error['msg'].removeprefix('Value error, ')}")
        raise ConfigError("; ".join(problems)) from exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m daemon", description="Notion pages to finished videos")
    parser.add_argument("--env-file", help="KEY=value settings to load (does not override the environment)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the daemon until SIGTERM")
    sub.add_parser("migrate", help="create or upgrade the database schema")
    enqueue = sub.add_parser("enqueue", help="produce a video from a storyboard file, without Notion")
    enqueue.add_argument("--channel", required=True)
    enqueue.add_argument("--storyboard", required=True, type=Path, help="YAML or JSON storyboard")
    enqueue.add_argument("--slug", help="project folder name (default: from the title)")
    approve = sub.add_parser("approve", help="approve a review gate of a task")
    approve.add_argument("--task", required=True, type=int)
    approve.add_argument("--gate", required=True, choices=sorted(GATES))
    status = sub.add_parser("status", help="tasks and their items")
    status.add_argument("--task", type=int)
    sub.add_parser("demo", help="the sandbox, a sample channel and project, run to a finished MP4")
    setup = sub.add_parser("notion-setup", help="create a ready Notion database for a new channel")
    setup.add_argument("--parent-page", required=True, help="id of a page shared with the integration")
    setup.add_argument("--title", default="Videos", help="the database's title")
    setup.add_argument(
        "--channel-option", action="append", default=[], help="a Channel select value (repeat)"
    )
    return parser


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    app = await App.build(settings)
    stop = asyncio.Event()
    install_signal_handlers(stop)
    try:
        await app.run(stop)
    finally:
        await app.close()
    return 0


async def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    if not settings.database_url:
        prepare_workspace(settings.workspace_dir)  # the SQLite file lives there
    engine = make_engine(settings.sqlalchemy_url)
    try:
        await check_reachable(engine)
        await upgrade(engine)
    finally:
        await engine.dispose()
    print("database schema is up to date")
    return 0


async def _enqueue(settings: Settings, args: argparse.Namespace) -> int:
    try:
        text = args.storyboard.read_text(encoding="utf-8")
    except OSError as exc:
        raise DaemonError(f"cannot read the storyboard {args.storyboard}: {exc.strerror}") from exc
    storyboard = parse_storyboard_yaml(text)
    slug = args.slug or _slugify(storyboard.title)
    app = await App.build(settings)
    try:
        request = {"title": storyboard.title, "topic": "", "direction": ""}
        task_id = await app.pipeline.submit(
            args.channel, slug, request, SystemClock().now(), storyboard=storyboard
        )
    finally:
        await app.close()
    print(json.dumps({"task": task_id, "channel": args.channel, "slug": slug}))
    return 0


async def _approve(settings: Settings, args: argparse.Namespace) -> int:
    app = await App.build(settings)
    try:
        ok = await approve_gate(app.engine, args.task, GATES[args.gate], SystemClock().now())
    finally:
        await app.close()
    if not ok:
        print(f"task {args.task} is not waiting at the {args.gate} gate", file=sys.stderr)
        return 1
    print(f"approved the {args.gate} gate of task {args.task}")
    return 0


async def _status(settings: Settings, args: argparse.Namespace) -> int:
    app = await App.build(settings)
    try:
        async with app.engine.connect() as conn:
            query = select(Task)
            if args.task:
                query = query.where(Task.id == args.task)
            tasks = (await conn.execute(query.order_by(Task.id))).all()
            out: list[dict[str, Any]] = []
            for task in tasks:
                counts = dict(
                    (
                        await conn.execute(
                            select(Item.state, func.count())
                            .where(Item.task_id == task.id)
                            .group_by(Item.state)
                        )
                    ).all()
                )
                cost = await conn.scalar(select(func.sum(Item.cost_micros)).where(Item.task_id == task.id))
                out.append(
                    {
                        "task": task.id,
                        "channel": task.channel_id,
                        "slug": task.project_slug,
                        "state": task.state,
                        "items": counts,
                        "cost_usd": (cost or 0) / 1_000_000,
                        "error": task.error,
                        "video": task.final_video_path,
                    }
                )
    finally:
        await app.close()
    print(json.dumps(out, indent=2))
    return 0


def _slugify(title: str) -> str:
    slug = re.sub(r"[^a-zA-Z0-9]+", "-", title).strip("-").lower()[:48]
    return slug or "project"


async def _demo(settings: Settings, args: argparse.Namespace) -> int:
    return await run_demo(settings.workspace_dir)


async def _notion_setup(settings: Settings, args: argparse.Namespace) -> int:
    token = settings.notion_token
    if token is None or not token.get_secret_value():
        raise ConfigError("NOTION_TOKEN is not set; set it to the integration's secret")
    notion = NotionApi(token.get_secret_value(), settings.notion_base_url)
    try:
        database = await create_database(notion, args.parent_page, args.title, args.channel_option)
    finally:
        await notion.close()
    source = database["data_sources"][0]["id"]
    print(json.dumps({"database_id": database["id"], "data_source_id": source}))
    print(f"# put this in config/channels/<id>.yaml:\nnotion:\n  data_source_id: {source}", file=sys.stderr)
    return 0


COMMANDS = {
    "run": _run,
    "migrate": _migrate,
    "enqueue": _enqueue,
    "approve": _approve,
    "status": _status,
    "demo": _demo,
    "notion-setup": _notion_setup,
}
