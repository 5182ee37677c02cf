"""What the fault tests check after crashes: the sandbox's call log against the DB and workspace."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from daemon.db.engine import make_engine
from daemon.db.models import Attempt, Item, Task
from daemon.notion.gateway import NotionApi
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import credentials


@dataclass
class Audit:
    tasks: list[Any]
    items: list[Any]
    attempts: list[Any]
    calls: list[dict[str, Any]]
    workspace: Path
    problems: list[str] = field(default_factory=list)

    def calls_per_item(self, provider: str) -> Counter[str]:
        """Billable calls per item, keyed as the daemon traces them: channel:slug:item key."""
        return Counter(str(c["item"]) for c in self.calls if c["provider"] == provider)

    def trace_key(self, item: Any) -> str:
        task = next(t for t in self.tasks if t.id == item.task_id)
        return f"{task.channel_id}:{task.project_slug}:{item.key}"

    def kling_creates_per_clip(self) -> Counter[str]:
        """Kling tasks created (and so billed) per clip. A create Kling refused costs nothing: the
        duplicate external_task_id of a retry that raced a killed script's create still in flight
        at Kling (the retry then collects that task), or the account's parallel-task limit."""
        return Counter(str(c["item"]) for c in self.calls if c["provider"] == "kling" and c["status"] == 200)

    def kling_refused_creates(self) -> int:
        return sum(1 for c in self.calls if c["provider"] == "kling" and c["status"] != 200)


async def audit(db_url: str, sandbox: SandboxProcess, workspace: Path) -> Audit:
    engine = make_engine(db_url)
    try:
        async with engine.connect() as conn:
            tasks = list((await conn.execute(select(Task))).all())
            items = list((await conn.execute(select(Item))).all())
            attempts = list((await conn.execute(select(Attempt))).all())
    finally:
        await engine.dispose()
    result = Audit(tasks, items, attempts, [c for c in sandbox.calls() if c["item"]], workspace)
    result.problems = consistency_problems(result)
    return result


def consistency_problems(a: Audit) -> list[str]:
    """Nothing left running; every done item's file on disk (unless retention removed it); no file
    recorded for an unfinished item."""
    problems = []
    for item in a.items:
        if item.state == "running":
            problems.append(f"{item.key} is still running")
        on_disk = (a.workspace / str(item.output_path)).is_file()
        if item.state == "succeeded" and item.output_path and not on_disk and item.removed_at is None:
            problems.append(f"{item.key} is done but {item.output_path} is missing")
        if item.state != "succeeded" and item.output_path:
            problems.append(f"{item.key} is {item.state} but records {item.output_path}")
    for count, clip in ((n, k) for k, n in a.kling_creates_per_clip().items() if n > 1):
        ids = [c["identity"] for c in a.calls if c["item"] == clip and c["provider"] == "kling"]
        problems.append(f"{clip} was created {count} times at Kling (external ids {ids})")
    return problems


async def upload_problems(sandbox: SandboxProcess) -> list[str]:
    """Each file went to Notion once: one send per upload, one upload per file (its name carries
    the content's hash), every upload in."""
    problems = []
    sends = sandbox.file_sends()
    problems += [f"upload {upload} was sent {n} times" for upload, n in sends.items() if n > 1]
    bot = NotionApi(credentials(sandbox)["notion_token"], sandbox.base("notion"), rate=100, burst=100)
    try:
        uploads: list[dict[str, Any]] = []
        cursor = None
        while True:
            query: dict[str, Any] = {"page_size": 100, **({"start_cursor": cursor} if cursor else {})}
            listing = await bot.call("GET", "file_uploads", query=query)
            uploads += listing["results"]
            cursor = listing.get("next_cursor")
            if not cursor:
                break
    finally:
        await bot.close()
    names = Counter(str(u["filename"]) for u in uploads)
    problems += [f"{name} was uploaded {n} times" for name, n in names.items() if n > 1]
    problems += [f"{u['filename']} is {u['status']}" for u in uploads if u["status"] != "uploaded"]
    return problems


def repeats(a: Audit) -> tuple[dict[str, int], list[str]]:
    """Gemini and ElevenLabs take no idempotency key, so a call repeats when a kill fell between the
    request and the recording of its result. Returns the repeats per item, and those not explained
    by an attempt that was lost (killed) before it recorded a result."""
    by_id = {item.id: a.trace_key(item) for item in a.items}
    lost: Counter[str] = Counter()
    succeeded: Counter[str] = Counter()
    for attempt in a.attempts:
        key = by_id.get(attempt.item_id, "?")
        if attempt.outcome in ("lost", "released", "running"):
            lost[key] += 1
        elif attempt.outcome == "succeeded":
            succeeded[key] += 1
    found: dict[str, int] = {}
    unexplained = []
    for provider in ("gemini", "elevenlabs"):
        for key, calls in a.calls_per_item(provider).items():
            if calls > 1:
                found[key] = calls - 1
                if succeeded[key] != 1 or calls - 1 > lost[key]:
                    unexplained.append(
                        f"{key}: {calls} calls, {lost[key]} lost attempts, {succeeded[key]} done"
                    )
    return found, unexplained


def priced_micros(calls: list[dict[str, Any]]) -> int:
    """What the sandbox's call log adds up to at the shipped price table's prices."""
    from daemon.costs import load_pricing_file
    from daemon.paths import DEFAULT_PRICING_FILE
    from services.pricing import to_micros

    pricing = load_pricing_file(DEFAULT_PRICING_FILE)
    return sum(to_micros(pricing.actual_cost(_kind_of(call), call["usage"])) for call in calls)


def _kind_of(call: dict[str, Any]) -> str:
    """Which kind of item a billable call in the sandbox's log was for."""
    if call["provider"] == "gemini":
        return "asset" if call["usage"].get("images") else "storyboard"
    if call["provider"] == "kling":
        return "clip"
    return "sfx" if "sound-generation" in call["endpoint"] else "narration"
