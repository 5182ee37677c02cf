"""The command line: run, migrate, enqueue, and the operator's status, approve, cancel and retry."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from daemon import doctor, logs, rebuy
from daemon.app import App, install_signal_handlers
from daemon.budget import Spend, task_spend, usd
from daemon.budget import dollars as budget_dollars
from daemon.cleanup import cleanup, policy_for
from daemon.clock import SystemClock
from daemon.dag import approve_gate
from daemon.db import file_lock
from daemon.db.engine import make_engine
from daemon.db.models import Item, Task
from daemon.db.reach import check_reachable
from daemon.demo import run_demo
from daemon.envfile import load_env_file
from daemon.errors import ConfigError, DaemonError, SchemaNotMigrated, ServiceUnreachable, TryLater
from daemon.migrate import check_schema, upgrade
from daemon.notion.gateway import NotionApi
from daemon.notion.schema import create_database
from daemon.notion.sync import done_of_kinds, item_counts
from daemon.project_files import disk_use, size_text
from daemon.settings import Settings
from daemon.tasks import cancel_task
from daemon.workspace import prepare_workspace
from daemon.youtube import accounts
from daemon.youtube.signin import sign_in
from services.errors import ServiceError
from services.states import OPERATOR, TaskState
from services.status import (
    Action,
    ItemView,
    decide,
    progress_line,
    review_of,
    shown_status,
    waiting_gate,
)
from services.storyboard import Storyboard, parse_storyboard, parse_storyboard_yaml

GATES = {"storyboard": "storyboard_gate", "assets": "assets_gate", "final": "final_gate"}
GATE_ACTIONS = {
    "storyboard": Action.APPROVE_STORYBOARD,
    "assets": Action.APPROVE_ASSETS,
    "final": Action.APPROVE_FINAL,
}
TITLE_WIDTH = 40


# Exit codes beside 0 and 1 (sysexits.h): a setting to fix, which a supervisor should not restart
# (systemd: RestartPreventExitStatus=78), and what may come right by itself (a service that may come
# back, a port another program may let go), which it should.
EX_CONFIG = 78
EX_TEMPFAIL = 75
EX_PIPE = 128 + 13  # what a shell reports for a writer SIGPIPE ended


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.env_file:
            load_env_file(Path(args.env_file))
        if args.command == "doctor":  # a bad setting is one of the lines it reports
            return doctor.main(args.timeout)
        settings = _settings()
        logs.configure(
            settings.secret_values(),
            json_lines=settings.log_json(sys.stderr.isatty()),
            level=settings.log_level,
        )
        return int(asyncio.run(COMMANDS[args.command](settings, args)))
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EX_CONFIG
    except TryLater as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    except (DaemonError, ServiceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`nvd doctor | head`): nothing more to say, and no traceback. What
        # is still buffered goes nowhere, so the interpreter's flush at exit cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EX_PIPE


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


def installed_version() -> str:
    """The version of the installed distribution (pip's metadata, the same for an editable install)."""
    try:
        return metadata.version("notion-video-daemon")
    except metadata.PackageNotFoundError:
        return "unknown (not installed; pip install . gives it one)"


def _parser() -> argparse.ArgumentParser:
    # `nvd` (the console command) and `python -m daemon` are the same program.
    parser = argparse.ArgumentParser(prog="nvd", description="Notion pages to finished videos")
    parser.add_argument("--version", action="version", version=f"nvd {installed_version()}")
    parser.add_argument(
        "--env-file",
        help="settings to load, KEY=value lines as a shell reads them (does not override the environment)",
    )
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
    status = sub.add_parser("status", help="a table of the tasks: status, gate waiting, progress, cost")
    status.add_argument("--task", type=int, help="this task only")
    status.add_argument("--json", action="store_true", help="a JSON list, for scripts")
    cancel = sub.add_parser("cancel", help="stop a task now (as Status = Cancelled on its page)")
    cancel.add_argument("--task", required=True, type=int)
    retry = sub.add_parser(
        "retry", help="a new pass of a stopped task (error, cancelled, paused), reusing finished steps"
    )
    retry.add_argument("--task", required=True, type=int)
    retry.add_argument(
        "--rebuy",
        action="store_true",
        help="buy again the files retention removed, when this pass needs them (refused without it, "
        "naming what and about how much)",
    )
    clean = sub.add_parser(
        "cleanup",
        help="remove the intermediate files of videos done longer ago than their retention "
        "(RETENTION_DAYS, a channel's retention_days)",
    )
    clean.add_argument("--dry-run", action="store_true", help="list what would go per video, remove nothing")
    clean.add_argument("--finals", action="store_true", help="the final videos and their captions files too")
    clean.add_argument("--channel", help="this channel's videos only")
    clean.add_argument(
        "--older-than-days",
        type=_days,
        metavar="N",
        help="videos done more than N days ago, whatever RETENTION_DAYS and the channel files say",
    )
    sub.add_parser("demo", help="the sandbox, a sample channel and project, run to a finished MP4")
    setup = sub.add_parser("notion-setup", help="create a ready Notion database for a new channel")
    setup.add_argument("--parent-page", required=True, help="id of a page shared with the integration")
    setup.add_argument("--title", default="Videos", help="the database's title")
    setup.add_argument(
        "--channel-option", action="append", default=[], help="a Channel select value (repeat)"
    )
    auth = sub.add_parser(
        "youtube-auth", help="sign a channel in to its YouTube account (Google's consent, in a browser)"
    )
    auth.add_argument("--channel", required=True, help="the channel's id (its file's name)")
    auth.add_argument(
        "--port", type=int, default=0, help="the loopback port for Google's answer (default: any)"
    )
    sub.add_parser("youtube-key", help="print a new TOKEN_KEY, the key YouTube sign-ins are encrypted with")
    check = sub.add_parser(
        "doctor", help="check the settings, keys, Notion, database, disk, FFmpeg and font; one line each"
    )
    check.add_argument(
        "--timeout", type=float, default=doctor.TIMEOUT_S, help="seconds each check may take (default: 10)"
    )
    return parser


async def _youtube_auth(settings: Settings, args: argparse.Namespace) -> int:
    app = await _operator_app(settings)
    try:
        channel = app.pipeline.channel(args.channel)

        def say(text: str) -> None:
            print(text, flush=True)

        title = await sign_in(
            app.engine, settings, channel, say=say, read_line=sys.stdin.readline, port=args.port
        )
    finally:
        await app.close()
    shown = f" (YouTube channel {title!r})" if title else ""
    print(
        f"Signed in: channel {args.channel}{shown}. Its uploads go on within a few minutes; the refresh "
        "token is stored encrypted with TOKEN_KEY."
    )
    return 0


async def _youtube_key(settings: Settings, args: argparse.Namespace) -> int:
    print(accounts.new_key())
    return 0


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    # Held until the process ends: a second daemon on this SQLite file stops here, naming this one.
    lock = file_lock.hold(settings.sqlalchemy_url, "run", settings.daemon_id)
    try:
        app = await App.build(settings)
        stop = asyncio.Event()
        install_signal_handlers(stop)
        try:
            await app.run(stop)
        finally:
            await app.close()
    finally:
        if lock is not None:
            lock.release()
    return 0


async def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    if not settings.database_url:
        prepare_workspace(settings.workspace_dir)  # the SQLite file lives there
    engine = make_engine(settings.sqlalchemy_url)
    lock = None
    try:
        await check_reachable(engine)
        try:
            lock = file_lock.hold(settings.sqlalchemy_url, "migrate", settings.daemon_id)
        except file_lock.DatabaseInUse as busy:
            await _current_under(engine, busy)  # a running daemon's schema is left as it is
        else:
            await upgrade(engine)
    finally:
        if lock is not None:
            lock.release()
        await engine.dispose()
    print("database schema is up to date")
    return 0


async def _current_under(engine: AsyncEngine, busy: file_lock.DatabaseInUse) -> None:
    """A SQLite file a daemon holds is never migrated under it (its statements would meet a schema
    they were not written for). Already current, there is nothing to do; otherwise stop the daemon
    first (exit 75: migrate again once it has stopped)."""
    try:
        await check_schema(engine)
    except SchemaNotMigrated as exc:
        raise ServiceUnreachable(
            f"the SQLite file is in use by {busy.holder.describe()}, and its schema is not this "
            "version's: stop that daemon, then migrate (a schema is never changed under a running daemon)"
        ) from exc


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


# The operator's commands ---------------------------------------------------------------------------
# They change the DB only, as intake does for a page: the running daemon's sync writes the page.


async def _operator_app(settings: Settings) -> App:
    """The configuration and a checked database; Notion is not contacted (nothing here needs it)."""
    app = await App.build(settings, check=False)
    try:
        await check_reachable(app.engine)
        await check_schema(app.engine)
    except BaseException:
        await app.close()
        raise
    return app


async def _task_and_gate(app: App, task_id: int) -> tuple[Any, str | None]:
    """The task's row (None when there is none) and the gate it waits at."""
    async with app.engine.connect() as conn:
        task = (await conn.execute(select(Task).where(Task.id == task_id))).first()
        if task is None:
            return None, None
        rows = await conn.execute(select(Item.kind, Item.state).where(Item.task_id == task_id))
        return task, waiting_gate(ItemView(r.kind, r.state) for r in rows)


async def _allowed(app: App, task_id: int, action: Action) -> Any:
    """The task's row when the operator's action is allowed for it (the rules a page follows);
    otherwise None, with the reason (or "no such task") printed."""
    task, gate = await _task_and_gate(app, task_id)
    if task is None:
        _no_such_task(task_id)
        return None
    decision = decide(action, task.state, gate)
    if not decision.allowed:
        hint = ""
        if action is Action.START and task.state == TaskState.ACTIVE:
            hint = f" (`nvd cancel --task {task_id}` cancels it)"
        _refused(task_id, decision.reason + hint)
        return None
    return task


def _no_such_task(task_id: int) -> int:
    print(f"no such task: {task_id}", file=sys.stderr)
    return 1


def _refused(task_id: int, reason: str) -> int:
    print(f"task {task_id}: {reason}", file=sys.stderr)
    return 1


async def _approve(settings: Settings, args: argparse.Namespace) -> int:
    app = await _operator_app(settings)
    try:
        if await _allowed(app, args.task, GATE_ACTIONS[args.gate]) is None:
            return 1
        ok = await approve_gate(app.engine, args.task, GATES[args.gate], SystemClock().now())
    finally:
        await app.close()
    if not ok:
        print(f"task {args.task} is not waiting at the {args.gate} gate", file=sys.stderr)
        return 1
    print(f"approved the {args.gate} gate of task {args.task}")
    return 0


async def _cancel(settings: Settings, args: argparse.Namespace) -> int:
    app = await _operator_app(settings)
    try:
        if await _allowed(app, args.task, Action.CANCEL) is None:
            return 1
        stopped = await cancel_task(app.engine, args.task, SystemClock().now())
    finally:
        await app.close()
    print(f"cancelled task {args.task} ({_count(stopped, 'item')} stopped)")
    return 0


async def _retry(settings: Settings, args: argparse.Namespace) -> int:
    """A new pass, as Status = Queued on the page: the task's own request and storyboard, so every
    finished step is kept and work paid for before a cancel is collected, not bought again."""
    app = await _operator_app(settings)
    try:
        task = await _allowed(app, args.task, Action.START)
        if task is None:
            return 1
        request = task.request or {"title": task.title, "topic": "", "direction": ""}
        try:
            await app.pipeline.submit(
                task.channel_id,
                task.project_slug,
                request,
                SystemClock().now(),
                storyboard=await _given_storyboard(app, task),
                page_id=task.notion_page_id,
                priority=task.priority,
                rebuy_micros=rebuy.ANY if args.rebuy else None,
            )
        except rebuy.MediaRemoved as exc:
            return _refused(
                args.task,
                f"not started: {exc.reason}. Nothing was bought; `nvd retry --task {args.task} --rebuy` "
                "buys them again",
            )
        async with app.engine.connect() as conn:
            after = (await conn.execute(select(Task.state, Task.pass_no).where(Task.id == task.id))).one()
            items = (
                await conn.execute(
                    select(Item.state, func.count())
                    .where(Item.task_id == task.id, Item.provider != OPERATOR)
                    .group_by(Item.state)
                )
            ).all()
    finally:
        await app.close()
    kept = sum(n for state, n in items if state == "succeeded")
    total = sum(n for _, n in items)
    if after.state == TaskState.DONE:
        print(f"task {args.task}: pass {after.pass_no} found nothing left to do; it is done")
    else:
        print(f"task {args.task}: pass {after.pass_no} started, {kept} of {_count(total, 'step')} kept")
    return 0


def _days(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days: give a whole number, 0 or more")
    return int(text)


async def _cleanup(settings: Settings, args: argparse.Namespace) -> int:
    """Retention now, for every done video (or one channel's): the same rules as the daemon's hourly
    run, with --older-than-days for every channel and --finals for the final cuts too."""
    app = await _operator_app(settings)
    try:
        policy = await policy_for(
            app.engine,
            app.channels,
            settings.retention_days,
            channel=args.channel,
            older_than_days=args.older_than_days,
            finals=args.finals,
        )
        lines = await cleanup(
            app.engine, settings.workspace_dir, policy, SystemClock().now(), dry_run=args.dry_run
        )
    finally:
        await app.close()
    print("\n".join(lines))
    return 0


async def _given_storyboard(app: App, task: Any) -> Storyboard | None:
    """The storyboard the operator (or a file) gave, passed again as given; a generated one is
    found by submit itself and kept while the request is unchanged."""
    async with app.engine.connect() as conn:
        spec = await conn.scalar(select(Item.input).where(Item.task_id == task.id, Item.key == "storyboard"))
    if not spec or not spec.get("given") or task.storyboard is None:
        return None
    return parse_storyboard(task.storyboard)


async def _status(settings: Settings, args: argparse.Namespace) -> int:
    app = await _operator_app(settings)
    try:
        async with app.engine.connect() as conn:
            out = await _overview(conn, args.task, SystemClock().now(), settings.workspace_dir)
    finally:
        await app.close()
    if args.task is not None and not out:
        return _no_such_task(args.task)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(_table(out) if out else "no tasks yet")
    return 0


async def _overview(
    conn: AsyncConnection, task_id: int | None, now: datetime, workspace: Path
) -> list[dict[str, Any]]:
    """Each task as its page shows it (Status, Progress, Cost), with its gate, age, error and the
    space its project folder takes (one walk of the folder, links not followed)."""
    query = select(Task).order_by(Task.id)
    if task_id is not None:
        query = query.where(Task.id == task_id)
    tasks = (await conn.execute(query)).all()
    if not tasks:
        return []
    ids = [t.id for t in tasks]
    grouped = await item_counts(conn, ids)
    spends = await task_spend(conn, ids)
    removed = dict(
        (
            await conn.execute(
                select(Item.task_id, func.max(Item.removed_at))
                .where(Item.task_id.in_(ids), Item.removed_at.is_not(None))
                .group_by(Item.task_id)
            )
        ).all()
    )
    out: list[dict[str, Any]] = []
    for task in tasks:
        rows = grouped[task.id]
        views = [ItemView(kind, state) for kind, state, _ in rows]
        states: dict[str, int] = defaultdict(int)
        for _, state, n in rows:
            states[state] += n
        kinds = done_of_kinds(rows)
        gate = waiting_gate(views) if task.state == TaskState.ACTIVE else None
        spend = spends.get(task.id, Spend())
        dollars = spend.total_micros / 1_000_000
        out.append(
            {
                "task": task.id,
                "title": task.title,
                "channel": task.channel_id,
                "slug": task.project_slug,
                "state": task.state,
                "status": shown_status(
                    task.state, views, has_upload=any(v.kind == "upload" for v in views)
                ).value,
                "gate": str(review_of(gate)) if gate else None,
                "pass": task.pass_no,
                "items": dict(states),
                # Steps done of all, the storyboard's included; review gates are the operator's, not work.
                "done": sum(n for kind, state, n in rows if review_of(kind) is None and state == "succeeded"),
                "total": sum(n for kind, _, n in rows if review_of(kind) is None),
                "progress": progress_line(kinds, float(budget_dollars(spend.total_micros))),
                "cost_usd": dollars,
                "age_s": max(0, int((now - task.created_at).total_seconds())),
                "error": task.error,
                "video": task.final_video_path,
                "notion_page_id": task.notion_page_id,
                "disk_bytes": disk_use(workspace, task.channel_id, task.project_slug),
                "media_removed_at": _when(removed.get(task.id)),
            }
        )
    return out


def _table(tasks: list[dict[str, Any]]) -> str:
    head = ("ID", "TITLE", "CHANNEL", "STATUS", "GATE", "PROGRESS", "COST", "DISK", "AGE")
    rows = [
        (
            str(t["task"]),
            _clip(t["title"] or t["slug"], TITLE_WIDTH),
            t["channel"],
            t["status"],
            t["gate"] or "-",
            f"{t['done']}/{t['total']}",
            usd(round(t["cost_usd"] * 1_000_000)),
            "-" if t["disk_bytes"] is None else size_text(t["disk_bytes"]),
            _age(t["age_s"]),
        )
        for t in tasks
    ]
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    right = {0, 5, 6, 7, 8}  # numbers line up on the right

    def line(cells: Sequence[str]) -> str:
        padded = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    lines = [line(head)]
    for task, row in zip(tasks, rows, strict=True):
        lines.append(line(row))
        # What the page's Error Log says: the error, or the budget a paused task waits for.
        if task["error"] and task["state"] in ("error", "budget"):
            lines.extend(f"    {part}" for part in str(task["error"]).splitlines())
    return "\n".join(lines)


def _when(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _age(seconds: int) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


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
    "cancel": _cancel,
    "retry": _retry,
    "cleanup": _cleanup,
    "demo": _demo,
    "notion-setup": _notion_setup,
    "youtube-auth": _youtube_auth,
    "youtube-key": _youtube_key,
}
