"""The Notion-and-database chaos run: one daemon on PostgreSQL behind a TCP proxy, while the sandbox
answers Notion with random faults (5xx, 429, slow answers, writes applied after the client's timeout,
writes applied then failed), the proxy freezes or cuts the database for 10-200 s at random, and an
operator (notion-client, as a person would) approves, cancels, pauses and queues again, racing the
daemon's own writes. Then the audit: no page lost, no operator edit lost, no comment twice, no clip
paid twice, every Gemini and ElevenLabs repeat explained, every page showing what the database says.

`make chaos` runs it (python -m tests.support.chaos_outages --write-docs) and writes the figures
into docs/RELIABILITY.md; `--short` is a quick version with cuts of 3-8 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select

from daemon.db.engine import make_engine
from daemon.db.models import Comment
from daemon.notion.gateway import NotionApi
from daemon.notion.props import option_name
from services.status import action_for
from tests.support import db as testdb
from tests.support.chaos import audit, repeats
from tests.support.chaos_run import write_section
from tests.support.daemon_proc import DaemonProcess, run_cli
from tests.support.media import video_info
from tests.support.notion_kit import seed
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import credentials, daemon_env, small_cut_scripts
from tests.support.tcp_proxy import TcpProxy

NOTION_TIMEOUT_S = 3.0
LATE_WRITE_S = 8.0
# An edit not taken this long after it was made, or after the chaos ended if it was made during the
# chaos, is reported lost: outages can follow one another with seconds between them (the full run
# once had 7 minutes of database outages with windows of 9-16 s, each taken by a 429 storm).
EDIT_WAIT_S = 240.0
# Notion has no conditional writes: the daemon reads the page, then writes its Status. An operator
# edit applied in between (or while that write is on its way) is overwritten unless a poll sees it
# first. An overwrite by a daemon write sent no later than this after the edit was applied is that
# crossing; the operator then sets their Status again, as a person who sees it did not stick would.
CROSSING_S = 1.0
MARKERS = ("<!-- chaos-figures outages -->", "<!-- /chaos-figures outages -->")


@dataclass
class Edit:
    page: str
    status: str
    at: float  # monotonic, when the operator's PATCH returned
    applied_s: float | None = None  # how long until the daemon logged it applied or refused
    overwritten: bool = False  # the page showed another status before the daemon took it
    set_again: int = 0  # overwritten by a daemon write already on its way, so set again
    shown: str | None = None  # what the page showed last while the edit waited


@dataclass
class Desk:
    """What the operator works with, and what they write down."""

    operator: NotionApi
    daemon: DaemonProcess
    report: OutageReport
    journal: Path  # the sandbox's journal of Notion writes
    chaos_over: asyncio.Event
    chaos_end: float  # monotonic


@dataclass
class OutageReport:
    seed: int
    seconds: float = 0.0
    cuts: list[tuple[str, float]] = field(default_factory=list)  # (freeze | cut, seconds)
    notion_faults: Counter[str] = field(default_factory=Counter)
    edits: list[Edit] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    repeats: dict[str, int] = field(default_factory=dict)
    unexplained: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    videos: int = 0
    comments: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "seconds": round(self.seconds, 1),
            "database_outages": [(kind, round(s, 1)) for kind, s in self.cuts],
            "notion_faults": dict(self.notion_faults),
            "operator_edits": len(self.edits),
            "edits_applied_max_s": max((e.applied_s or 0 for e in self.edits), default=0),
            "edits_overwritten_before_applied": sum(e.overwritten for e in self.edits),
            "edits_crossed_and_set_again": sum(e.set_again for e in self.edits),
            "billable_calls": dict(self.calls),
            "repeats": self.repeats,
            "unexplained_repeats": self.unexplained,
            "comments": self.comments,
            "videos": self.videos,
            "problems": self.problems,
        }


async def run_outages(
    workdir: Path, database: str, seed_value: int, *, chaos_s: float, cut_s: tuple[float, float]
) -> OutageReport:
    rng = random.Random(seed_value)
    report = OutageReport(seed=seed_value)
    started = time.monotonic()
    sandbox = SandboxProcess(workdir / "sandbox").start()
    host, _, rest = database.partition("@")[2].partition(":")
    proxy = TcpProxy(host, int(rest.split("/")[0]))
    daemon: DaemonProcess | None = None
    try:
        sandbox.configure(cheap_media=True, kling_seconds=600)
        env, pages = _prepare(sandbox, workdir, database, proxy.url(rest.split("/", 1)[1]))
        operator = NotionApi(credentials(sandbox)["notion_operator_token"], sandbox.base("notion"))
        daemon = DaemonProcess(env, workdir / "daemon.log", "outage-chaos").start()
        journal = workdir / "sandbox" / "notion-writes.jsonl"
        try:
            stop = asyncio.Event()
            chaos = [
                asyncio.create_task(_database_outages(proxy, rng, stop, cut_s, report)),
                asyncio.create_task(_notion_faults(sandbox, rng, stop, report)),
            ]
            scripts = {
                pages[0]: [],  # approves when asked, nothing else
                pages[1]: [("Cancelled", rng.uniform(10, 40)), ("Queued", rng.uniform(5, 20))],
                pages[2]: [("Paused", rng.uniform(5, 30)), ("Queued", rng.uniform(5, 20))],
            }
            desk = Desk(operator, daemon, report, journal, stop, time.monotonic() + chaos_s)
            operators = [asyncio.create_task(_operate(desk, page, steps)) for page, steps in scripts.items()]
            await asyncio.sleep(chaos_s)
            stop.set()
            await asyncio.gather(*chaos)
            sandbox.clear_faults()
            proxy.restore()
            await asyncio.wait_for(asyncio.gather(*operators), timeout=900)
            await _until_ready(operator, pages, daemon)
            await _check_pages(operator, pages, database, report)
        finally:
            await operator.close()
        daemon.signal()
        daemon.wait(timeout=60)
        result = await audit(database, sandbox, workdir / "ws")
        report.problems += result.problems
        report.repeats, report.unexplained = repeats(result)
        report.calls = Counter(c["provider"] for c in result.calls if c["status"] == 200)
        for task in result.tasks:
            info = video_info(workdir / "ws" / str(task.final_video_path))
            if info.video_codec != "h264" or info.frames == 0:
                report.problems.append(f"task {task.id}: the video does not decode")
            report.videos += 1
        await _check_comments(sandbox, database, pages, report)
        for edit in report.edits:
            if edit.applied_s is None:
                report.problems.append(
                    f"{edit.page}: the operator's {edit.status} was never applied "
                    f"(the page showed {edit.shown})"
                )
        report.problems += _unexplained_kills(daemon.events())
    finally:
        if daemon is not None and daemon.proc is not None and daemon.proc.poll() is None:
            daemon.stop()
        proxy.close()
        sandbox.stop()
    report.seconds = time.monotonic() - started
    return report


def _prepare(
    sandbox: SandboxProcess, workdir: Path, database: str, through_proxy: str
) -> tuple[dict[str, str], list[str]]:
    channels = workdir / "channels"
    channels.mkdir(parents=True, exist_ok=True)
    pages: list[str] = []
    for channel, projects, gates in (("nature", 2, True), ("oceans", 1, False)):
        seeded = seed(sandbox, channel, projects, "--scenes", "2")
        config = yaml.safe_load(Path(seeded["channel_file"]).read_text())
        config["gates"] = {"storyboard": gates, "assets": False, "final": False}
        (channels / f"{channel}.yaml").write_text(yaml.safe_dump(config))
        pages += seeded["page_ids"]
    env = {
        **daemon_env(
            sandbox, workdir / "ws", channels, through_proxy, scripts_dir=small_cut_scripts(workdir)
        ),
        "NOTION_POLL_S": "1",
        "CLAIM_POLL_S": "0.2",
        "IDLE_POLL_MAX_S": "0.5",
        "LEASE_TTL_S": "5",
        "RETRY_BASE_S": "0.3",
        "RETRY_CAP_S": "2",
        "NOTION_TIMEOUT_S": str(NOTION_TIMEOUT_S),
        "NOTION_LATE_WRITE_S": str(LATE_WRITE_S),
    }
    done = run_cli({**env, "DATABASE_URL": database}, "migrate")
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return env, pages


async def _database_outages(
    proxy: TcpProxy, rng: random.Random, stop: asyncio.Event, cut_s: tuple[float, float], report: OutageReport
) -> None:
    """Freezes or cuts the database now and then, for cut_s seconds (never past `stop`)."""
    while not stop.is_set():
        if await _sleep_or_stop(stop, rng.uniform(5, 20)):
            return
        kind = rng.choice(["freeze", "cut"])
        length = rng.uniform(*cut_s)
        proxy.freeze() if kind == "freeze" else proxy.cut()
        began = time.monotonic()
        await _sleep_or_stop(stop, length)
        proxy.restore()
        report.cuts.append((kind, time.monotonic() - began))


async def _notion_faults(
    sandbox: SandboxProcess, rng: random.Random, stop: asyncio.Event, report: OutageReport
) -> None:
    """One random Notion fault every few seconds, on the daemon's calls only (its token)."""
    token = credentials(sandbox)["notion_token"]
    late_ms = int((NOTION_TIMEOUT_S + 1.5) * 1000)
    writes = "^(PATCH|POST) /notion/v1/(pages|comments)"
    kinds: list[tuple[str, dict[str, Any]]] = [
        ("5xx", {"status": 503, "count": 2}),
        ("429", {"status": 429, "retry_after": 1, "count": 3}),
        ("slow", {"kind": "latency", "latency_ms": 2000, "seconds": 6}),
        (
            "late page write",
            {"kind": "latency", "latency_ms": late_ms, "endpoint": "^PATCH /notion/v1/pages/"},
        ),
        ("late comment", {"kind": "latency", "latency_ms": late_ms, "endpoint": "^POST /notion/v1/comments"}),
        ("applied then 500", {"kind": "apply_then_fail", "status": 500, "endpoint": writes}),
        ("applied, answer lost", {"kind": "apply_then_fail", "drop": True, "endpoint": writes}),
    ]
    while not await _sleep_or_stop(stop, rng.uniform(2, 6)):
        name, spec = rng.choice(kinds)
        sandbox.fault(provider="notion", token=token, **spec)
        report.notion_faults[name] += 1


async def _operate(desk: Desk, page: str, steps: list[tuple[str, float]]) -> None:
    """Queues the page, then each step after its delay; approves the storyboard whenever asked; a
    video that is Ready while the chaos goes on is queued again (a new pass: nothing may be paid
    again). Each edit waits until the daemon has taken it (applied or refused) before the next."""
    await _edit(desk, page, "Queued")
    todo = list(steps)
    next_at = time.monotonic() + (todo[0][1] if todo else 0)
    deadline = desk.chaos_end + 900
    shown = None
    while time.monotonic() < deadline:
        shown = await _status(desk.operator, page)
        if shown == "Storyboard Review":
            await _edit(desk, page, "Storyboard Approved")
        elif todo and time.monotonic() >= next_at and shown not in ("Ready", "Error"):
            status, _ = todo.pop(0)
            await _edit(desk, page, status)
            next_at = time.monotonic() + (todo[0][1] if todo else 0)
        elif shown == "Ready" and not desk.chaos_over.is_set():
            await _edit(desk, page, "Queued")
        elif shown == "Ready":
            return  # done (a video that outran the script's later steps is done too)
        await asyncio.sleep(0.5)
    raise AssertionError(f"{page}: the operator's script did not end (page shows {shown})")


async def _edit(desk: Desk, page: str, status: str) -> None:
    operator, daemon, report, journal = desk.operator, desk.daemon, desk.report, desk.journal
    if await _status(operator, page) == status:
        return  # the page shows it already (a pass the daemon finished before writing its Status)
    since = datetime.now(UTC).isoformat()
    body = {"properties": {"Status": {"select": {"name": status}}}}
    await _retrying(operator, "PATCH", f"pages/{page}", body)
    edit = Edit(page, status, time.monotonic())
    report.edits.append(edit)
    action = action_for(status)
    assert action is not None

    def taken() -> bool:
        return any(
            event.get("event") in ("operator_action_applied", "operator_action_refused")
            and event.get("page") == page
            and event.get("action") == action.value
            and str(event.get("timestamp", "")).replace("Z", "+00:00") >= since
            for event in daemon.events()
        )

    deadline = max(time.monotonic(), desk.chaos_end) + EDIT_WAIT_S
    while time.monotonic() < deadline:
        if taken():
            edit.applied_s = round(time.monotonic() - edit.at, 1)
            return
        shown = await _status(operator, page)
        if shown != status:
            edit.overwritten = True
            # (taken again: the daemon may have taken it, and moved the page on, since the look above)
            if edit.set_again < 3 and _crossed(journal, page, status) and not taken():
                edit.set_again += 1
                await _retrying(operator, "PATCH", f"pages/{page}", body)
                continue
        edit.shown = shown
        await asyncio.sleep(0.5)


def _crossed(journal: Path, page: str, status: str) -> bool:
    """Whether the operator's last edit of the page was overwritten by a Status write of the
    daemon's sent before that edit was applied or within CROSSING_S after it (the read, then the
    write): the limit Notion leaves. Any other overwrite is an edit lost."""
    entries = [json.loads(line) for line in journal.read_text().splitlines()]
    mine = [e for e in entries if e["who"] == "operator" and page in e["call"] and e.get("Status") == status]
    if not mine:
        return False
    edited = mine[-1]["applied"]
    over = [
        e
        for e in entries
        if e["who"] == "daemon" and page in e["call"] and "Status" in e and e["applied"] >= edited
    ]
    return bool(over) and over[0]["received"] <= edited + CROSSING_S


async def _status(operator: NotionApi, page: str) -> str | None:
    return option_name((await _retrying(operator, "GET", f"pages/{page}"))["properties"]["Status"])


async def _retrying(operator: NotionApi, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """The operator's own calls meet no fault (the faults carry the daemon's token), but a person would
    click again anyway."""
    for _ in range(5):
        try:
            return await operator.call(method, path, body=body)
        except Exception:  # the person tries again
            await asyncio.sleep(1)
    return await operator.call(method, path, body=body)


async def _until_ready(operator: NotionApi, pages: list[str], daemon: DaemonProcess) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        assert daemon.proc is not None and daemon.proc.poll() is None, "the daemon died"
        if [await _status(operator, p) for p in pages] == ["Ready"] * len(pages):
            return
        await asyncio.sleep(1)
    raise AssertionError("the pages did not all reach Ready")


async def _check_pages(operator: NotionApi, pages: list[str], database: str, report: OutageReport) -> None:
    """Given the late-write horizon, every page shows what the database says: its cost and video."""
    await asyncio.sleep(LATE_WRITE_S + 4)
    result_engine = make_engine(database)
    try:
        from daemon.budget import dollars, task_spend
        from daemon.db.models import Task

        async with result_engine.connect() as conn:
            tasks = {r.notion_page_id: r for r in (await conn.execute(select(Task))).all()}
            spends = await task_spend(conn, [t.id for t in tasks.values()])
    finally:
        await result_engine.dispose()
    for page in pages:
        props = (await _retrying(operator, "GET", f"pages/{page}"))["properties"]
        task = tasks.get(page)
        if task is None:
            report.problems.append(f"{page}: no production (a lost page)")
            continue
        cost = float(dollars(spends[task.id].total_micros))
        if option_name(props["Status"]) != "Ready" or task.state != "done":
            report.problems.append(f"{page}: shows {option_name(props['Status'])}, task {task.state}")
        if props["Cost"]["number"] != cost:
            report.problems.append(f"{page}: Cost {props['Cost']['number']} on the page, {cost} in the DB")
        if not (props["Output"]["url"] or "").endswith(".mp4"):
            report.problems.append(f"{page}: no Output on the page")


async def _check_comments(
    sandbox: SandboxProcess, database: str, pages: list[str], report: OutageReport
) -> None:
    """Each comment the daemon meant to write is on its page exactly once."""
    engine = make_engine(database)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(Comment.page_id, Comment.body, Comment.state))).all()
    finally:
        await engine.dispose()
    wanted = Counter((r.page_id, r.body) for r in rows)
    operator = NotionApi(credentials(sandbox)["notion_operator_token"], sandbox.base("notion"))
    try:
        on_pages: Counter[tuple[str, str]] = Counter()
        for page in pages:
            listing = await operator.call("GET", "comments", query={"block_id": page, "page_size": 100})
            for c in listing["results"]:
                on_pages[(page, "".join(p["plain_text"] for p in c["rich_text"]))] += 1
    finally:
        await operator.close()
    report.comments = sum(on_pages.values())
    for key, n in on_pages.items():
        if n != wanted.get(key, 0):
            report.problems.append(
                f"{key[0]}: comment {key[1][:60]!r} is on the page {n} times, queued {wanted.get(key, 0)}"
            )
    for key in wanted:
        if key not in on_pages:
            report.problems.append(f"{key[0]}: comment {key[1][:60]!r} never reached the page")


def _unexplained_kills(events: list[dict[str, Any]]) -> list[str]:
    """Scripts killed for a lost lease that no Cancelled or Paused of their video explains: an outage
    must not cost a lease."""
    stopped: dict[Any, datetime] = {}  # task -> when the operator's cancel or pause was applied
    problems = []
    for event in events:
        at = datetime.fromisoformat(str(event.get("timestamp", "")).replace("Z", "+00:00"))
        if event.get("event") == "operator_action_applied" and event.get("action") in ("cancel", "pause"):
            stopped[event.get("task")] = at
        elif event.get("event") == "lease_lost_killing_script":
            when = stopped.get(event.get("task"))
            if when is None or (at - when).total_seconds() > 10:
                problems.append(
                    f"{event.get('item')} of task {event.get('task')} killed for a lost lease at {at}"
                )
    return problems


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
        return True
    except TimeoutError:
        return False


def write_doc(report: OutageReport) -> None:
    begin, end = MARKERS
    figures = report.as_dict()
    outages = ", ".join(f"{kind} {s:.0f} s" for kind, s in report.cuts) or "none"
    lines = [
        begin,
        f"Last Notion-and-database chaos run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, seed {report.seed}, "
        f"PostgreSQL behind a TCP proxy, on a 2-core VM (`make chaos`; written by the run itself).",
        "",
        f"- wall time {figures['seconds']} s; database outages: {outages}",
        f"- Notion faults on the daemon's calls: {dict(report.notion_faults)}",
        f"- operator edits: {len(report.edits)}, each applied (slowest after "
        f"{figures['edits_applied_max_s']} s, an outage included); overwritten on the page before the "
        "daemon took them: "
        f"{figures['edits_overwritten_before_applied']}; overwritten by a daemon write already on its "
        f"way (Notion's limit, see above) and set again: {figures['edits_crossed_and_set_again']}",
        f"- billable calls: {dict(report.calls)}; Kling clips created twice: 0; repeated Gemini/ElevenLabs "
        f"calls: {sum(report.repeats.values())} (unexplained: {len(report.unexplained)})",
        f"- comments: {report.comments}, each on its page exactly as often as queued; pages lost: 0; "
        f"videos: {report.videos}, decoded; problems: {len(report.problems)}",
        end,
    ]
    write_section(begin, end, lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.chaos_outages")
    parser.add_argument("--seed", type=int, default=20261206)
    parser.add_argument("--minutes", type=float, default=8.0, help="how long the faults and outages go on")
    parser.add_argument("--short", action="store_true", help="outages of 3-8 s for 90 s (a quick check)")
    parser.add_argument(
        "--write-docs", action="store_true", help="write the figures into docs/RELIABILITY.md"
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the work folder (logs, sandbox state) and the database (kept anyway on a failure)",
    )
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="chaos-outages-"))
    testdb.make_pg_template()
    url, name = testdb.create_pg_database()
    ok = False
    try:
        chaos_s, cut_s = (90.0, (3.0, 8.0)) if args.short else (args.minutes * 60, (10.0, 200.0))
        report = asyncio.run(run_outages(workdir, url, args.seed, chaos_s=chaos_s, cut_s=cut_s))
        ok = not report.problems and not report.unexplained
    finally:
        if args.keep or not ok:
            print(f"work folder kept: {workdir}; database kept: {name}", file=sys.stderr)
        else:
            testdb.drop_pg_database(name)
            shutil.rmtree(workdir, ignore_errors=True)
        testdb.drop_pg_template()
    print(json.dumps(report.as_dict(), indent=2))
    if args.write_docs and ok:
        write_doc(report)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
