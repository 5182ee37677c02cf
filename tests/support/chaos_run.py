"""The chaos run: the sandbox, two channels, three projects, and a daemon SIGKILLed at seeded random
moments and restarted each time, until every project is finished. Then the audit.

`make chaos` runs the full version on SQLite and on PostgreSQL (python -m tests.support.chaos_run
--kills 30 --database sqlite|postgres --write-docs) and writes each one's figures into
docs/RELIABILITY.md; `make test` runs a short one on PostgreSQL (tests/acceptance/test_chaos.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from daemon.notion.board import find_section
from daemon.notion.gateway import NotionApi
from daemon.notion.props import option_name
from tests.support import db as testdb
from tests.support.chaos import Audit, audit, repeats, upload_problems
from tests.support.daemon_proc import DaemonProcess, run_cli
from tests.support.media import video_info
from tests.support.notion_kit import seed
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import credentials, daemon_env, small_cut_scripts

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "RELIABILITY.md"


def _markers(kind: str) -> tuple[str, str]:
    """Where a database's figures sit in docs/RELIABILITY.md."""
    return f"<!-- chaos-figures {kind} -->", f"<!-- /chaos-figures {kind} -->"


@dataclass
class ChaosReport:
    kills: int = 0
    restarts: int = 0
    landed: Counter[str] = field(default_factory=Counter)  # what was running when a kill landed
    recover_s: list[float] = field(default_factory=list)  # restart -> first script started again
    seconds: float = 0.0
    calls: Counter[str] = field(default_factory=Counter)  # answered 200: the ones paid for
    kling_refused: int = 0  # creates Kling refused (a retry racing a killed script's create): free
    repeats: dict[str, int] = field(default_factory=dict)
    unexplained: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    videos: list[str] = field(default_factory=list)
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "kills": self.kills,
            "restarts": self.restarts,
            "landed": dict(self.landed),
            "recover_s_median": sorted(self.recover_s)[len(self.recover_s) // 2] if self.recover_s else None,
            "recover_s_max": max(self.recover_s) if self.recover_s else None,
            "seconds": round(self.seconds, 1),
            "billable_calls": dict(self.calls),
            "kling_refused_creates": self.kling_refused,
            "repeats": self.repeats,
            "unexplained_repeats": self.unexplained,
            "problems": self.problems,
            "videos": len(self.videos),
            "seed": self.seed,
        }


async def run_chaos(
    workdir: Path, database: str, kills: int, seed_value: int, scenes: int = 3
) -> ChaosReport:
    rng = random.Random(seed_value)
    report = ChaosReport(seed=seed_value)
    sandbox = SandboxProcess(workdir / "sandbox").start()
    started = time.monotonic()
    try:
        sandbox.configure(cheap_media=True, kling_seconds=300)
        env, pages = await _prepare(sandbox, workdir, database, scenes)
        operator = NotionApi(credentials(sandbox)["notion_operator_token"], sandbox.base("notion"))
        try:
            for page in pages:
                await operator.call(
                    "PATCH", f"pages/{page}", body={"properties": {"Status": {"select": {"name": "Queued"}}}}
                )
            await _kill_loop(env, workdir, database, sandbox, kills, rng, report)
            await _finish(env, workdir, database, sandbox, operator, pages, report)
        finally:
            await operator.close()
        result = await audit(database, sandbox, workdir / "ws")
        _conclude(result, report, workdir, await upload_problems(sandbox))
    finally:
        sandbox.stop()
    report.seconds = time.monotonic() - started
    return report


async def _prepare(
    sandbox: SandboxProcess, workdir: Path, database: str, scenes: int
) -> tuple[dict[str, str], list[str]]:
    channels = workdir / "channels"
    channels.mkdir(parents=True, exist_ok=True)
    pages: list[str] = []
    for channel, projects in (("nature", 2), ("oceans", 1)):
        seeded = seed(sandbox, channel, projects, "--scenes", str(scenes))
        config = yaml.safe_load(Path(seeded["channel_file"]).read_text())
        config["gates"] = {"storyboard": False, "assets": False, "final": False}
        (channels / f"{channel}.yaml").write_text(yaml.safe_dump(config))
        pages += seeded["page_ids"]
    env = {
        **daemon_env(sandbox, workdir / "ws", channels, database, scripts_dir=small_cut_scripts(workdir)),
        "NOTION_POLL_S": "1",
        "CLAIM_POLL_S": "0.2",
        "IDLE_POLL_MAX_S": "0.5",
        "LEASE_TTL_S": "5",
        "RETRY_BASE_S": "0.3",
        "RETRY_CAP_S": "2",
    }
    done = run_cli(env, "migrate")
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return env, pages


async def _kill_loop(
    env: dict[str, str],
    workdir: Path,
    database: str,
    sandbox: SandboxProcess,
    kills: int,
    rng: random.Random,
    report: ChaosReport,
) -> None:
    while report.kills < kills:
        daemon = DaemonProcess(env, workdir / f"daemon-{report.restarts}.log", "chaos-host").start()
        report.restarts += 1
        launched = time.monotonic()
        await asyncio.sleep(rng.uniform(1.0, 4.0))
        running = await _running(database, sandbox, workdir)
        daemon.signal(signal.SIGKILL)
        daemon.wait(timeout=30)
        report.kills += 1
        for what in running or ["nothing running"]:
            report.landed[what] += 1
        first = _first_start(daemon, launched)
        if first is not None:
            report.recover_s.append(first)
        if await _all_done(database, sandbox, workdir):
            break


async def _running(database: str, sandbox: SandboxProcess, workdir: Path) -> list[str]:
    result = await audit(database, sandbox, workdir / "ws")
    out = []
    for item in result.items:
        if item.state == "running":
            phase = "waiting on Kling" if item.kind == "clip" and item.provider_job_id else "script running"
            out.append(f"{item.kind}: {phase}")
    return out


def _first_start(daemon: DaemonProcess, launched: float) -> float | None:
    events = [e for e in daemon.events() if e.get("event") == "script_started"]
    starts = [e for e in daemon.events() if e.get("event") == "daemon_started"]
    if not events or not starts:
        return None
    t0 = datetime.fromisoformat(starts[0]["timestamp"])
    t1 = datetime.fromisoformat(events[0]["timestamp"])
    return round((t1 - t0).total_seconds(), 2)


async def _all_done(database: str, sandbox: SandboxProcess, workdir: Path) -> bool:
    result = await audit(database, sandbox, workdir / "ws")
    return len(result.tasks) == 3 and all(t.state == "done" for t in result.tasks)


async def _finish(
    env: dict[str, str],
    workdir: Path,
    database: str,
    sandbox: SandboxProcess,
    operator: NotionApi,
    pages: list[str],
    report: ChaosReport,
) -> None:
    """After the kills, one daemon runs until every page shows Ready."""
    daemon = DaemonProcess(env, workdir / "daemon-final.log", "chaos-host").start()
    report.restarts += 1
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            statuses = [
                option_name((await operator.call("GET", f"pages/{p}"))["properties"]["Status"]) for p in pages
            ]
            if (
                await _all_done(database, sandbox, workdir)
                and statuses == ["Ready"] * len(pages)
                and all([await _board_shows_video(operator, p) for p in pages])
            ):
                return
            await asyncio.sleep(1)
        raise AssertionError(f"the projects did not finish: {statuses}")
    finally:
        daemon.signal(signal.SIGTERM)
        daemon.wait(timeout=30)


async def _board_shows_video(operator: NotionApi, page: str) -> bool:
    blocks = (await operator.call("GET", f"blocks/{page}/children", query={"page_size": 100}))["results"]
    return any(b["type"] == "video" for b in find_section(blocks, "Video")[1])


def _conclude(result: Audit, report: ChaosReport, workdir: Path, uploads: list[str]) -> None:
    report.problems = list(result.problems) + uploads
    found, unexplained = repeats(result)
    report.repeats = found
    report.unexplained = unexplained
    report.calls = Counter(c["provider"] for c in result.calls if c["status"] == 200)
    report.kling_refused = result.kling_refused_creates()
    for task in result.tasks:
        path = workdir / "ws" / str(task.final_video_path)
        info = video_info(path)
        if info.video_codec != "h264" or info.audio_codec != "aac" or info.frames == 0:
            report.problems.append(f"{path} is not a valid H.264/AAC video")
        report.videos.append(str(path))


def write_doc(report: ChaosReport, database: str) -> None:
    kind = "postgres" if "postgresql" in database else "sqlite"
    begin, end = _markers(kind)
    figures = report.as_dict()
    landed = "\n".join(f"| {what} | {n} |" for what, n in report.landed.most_common())
    by_kind: Counter[str] = Counter()
    for key, n in report.repeats.items():
        by_kind[key.rsplit(":", 1)[-1].split("_")[0]] += n
    repeated = ", ".join(f"{kind} {n}" for kind, n in by_kind.most_common()) or "none"
    lines = [
        begin,
        f"Last full chaos run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, seed {report.seed}, "
        f"{'PostgreSQL' if kind == 'postgres' else 'SQLite'}, on a 2-core VM "
        f"(`make chaos`; these lines are written by the run itself).",
        "",
        f"- SIGKILLs: **{report.kills}**, daemon starts: {report.restarts}, wall time {figures['seconds']} s",
        f"- billable calls: {dict(report.calls)}",
        f"- repeated Gemini/ElevenLabs calls: {sum(report.repeats.values())} ({repeated}); each one is an "
        "attempt the kill cut off after its request and before its result was recorded: the script died "
        f"with its daemon and the step ran again (unexplained: {len(report.unexplained)})",
        f"- Kling clips created twice: 0 (creates Kling refused as duplicates of a killed script's create "
        f"still in flight, then collected: {report.kling_refused}); items left running: 0; items lost: 0; "
        "problems: "
        f"{len(report.problems)}",
        f"- time to recover (start to first script): median {figures['recover_s_median']} s, "
        f"max {figures['recover_s_max']} s",
        f"- videos: {len(report.videos)}, each decoded as H.264 + AAC",
        "",
        "Where the kills landed (what was running at that moment):",
        "",
        "| running | kills |",
        "|---|---|",
        landed,
        end,
    ]
    write_section(begin, end, lines)


def write_section(begin: str, end: str, lines: list[str]) -> None:
    """Replaces docs/RELIABILITY.md's section between the markers `begin` and `end` (the lines
    include both markers)."""
    text = DOC.read_text()
    if begin not in text:
        raise SystemExit(f"{DOC} has no {begin} ... {end} section for these figures; add one")
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    DOC.write_text(head + "\n".join(lines) + tail)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.chaos_run")
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument(
        "--database",
        default="sqlite",
        help="sqlite (a file in the work folder), postgres (a new database on TEST_DATABASE_URL's "
        "server, dropped after) or an async URL",
    )
    parser.add_argument(
        "--write-docs", action="store_true", help="write the figures into docs/RELIABILITY.md"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, DB, sandbox state)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="chaos-"))
    with _database(args.database, workdir) as database:
        report = asyncio.run(run_chaos(workdir, database, args.kills, args.seed))
    print(json.dumps(report.as_dict(), indent=2))
    ok = not report.problems and not report.unexplained and report.kills >= args.kills
    if args.write_docs and ok:
        write_doc(report, database)
    if args.keep or not ok:
        print(f"work folder kept: {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


@contextmanager
def _database(choice: str, workdir: Path) -> Iterator[str]:
    if choice == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir / 'chaos.db'}"
    elif choice == "postgres":
        testdb.make_pg_template()
        url, name = testdb.create_pg_database()
        try:
            yield url
        finally:
            testdb.drop_pg_database(name)
            testdb.drop_pg_template()
    else:
        yield choice


if __name__ == "__main__":
    sys.exit(main())
