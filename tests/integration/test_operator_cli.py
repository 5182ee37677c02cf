"""The operator's commands (status, approve, cancel, retry) run in-process through `daemon.cli.main`,
on a real migrated database in a workspace of their own, with tasks made by `enqueue`."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from daemon.cli import main
from daemon.db.engine import make_engine
from daemon.db.models import Item, Ledger, Task
from tests.support.engine_kit import now

CHANNEL = "id: nature\nname: Nature\nvoice: {voice_id: JBFqnCBsd6RMkjVDRZzb}\n"  # gates: storyboard, final
TITLE = "The Heron's Patience, a Very Long Title About a Patient Bird at Dawn"
STORYBOARD = f"""
title: "{TITLE}"
atmosphere: Misty river delta at dawn
assets:
  - {{key: shallows, kind: environment, prompt: "Reed-lined shallows"}}
scenes:
  - key: s01
    frame: {{environment: shallows}}
    motion: Slow push in
    narration: At first light the delta belongs to the patient.
    sfx: Dawn river ambience
"""


class Cli:
    """The command line against one workspace: each call returns (exit code, stdout, stderr)."""

    def __init__(self, tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.tmp_path = tmp_path
        self.db_url = db_url
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(list(args))
        out, err = self.capsys.readouterr()
        return code, out, err

    def enqueue(self) -> int:
        path = self.tmp_path / "storyboard.yaml"
        path.write_text(STORYBOARD)
        code, out, err = self("enqueue", "--channel", "nature", "--storyboard", str(path), "--slug", "heron")
        assert code == 0, err
        return int(json.loads(out)["task"])

    def db(self, *statements: Any) -> list[Any]:
        """Runs statements in one transaction; returns each one's rows (or None)."""

        async def run() -> list[Any]:
            engine = make_engine(self.db_url)
            try:
                async with engine.begin() as conn:
                    results = [await conn.execute(s) for s in statements]
                    return [r.all() if r.returns_rows else None for r in results]
            finally:
                await engine.dispose()

        return asyncio.run(run())

    def task(self, task_id: int) -> Any:
        return self.db(select(Task).where(Task.id == task_id))[0][0]

    def items(self, task_id: int) -> dict[str, Any]:
        return {r.key: r for r in self.db(select(Item).where(Item.task_id == task_id))[0]}

    def status(self, *args: str) -> Any:
        code, out, err = self("status", "--json", *args)
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def cli(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Cli:
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "nature.yaml").write_text(CHANNEL)
    monkeypatch.setenv("WORKSPACE_DIR", str(tmp_path / "ws"))
    monkeypatch.setenv("CHANNELS_DIR", str(tmp_path / "channels"))
    monkeypatch.setenv("DATABASE_URL", db_url)
    return Cli(tmp_path, db_url, capsys)


def _paid(cli: Cli, task_id: int, micros: int) -> None:
    """The storyboard step's provider was paid `micros` (an actual in the ledger, as a completion books)."""
    item_id = cli.items(task_id)["storyboard"].id
    cli.db(
        insert(Ledger).values(
            task_id=task_id,
            item_id=item_id,
            attempt_no=1,
            channel_id="nature",
            entry="actual",
            amount_micros=micros,
            day="2025-01-01",
            open=False,
            created_at=now(),
        )
    )


def _steps(cli: Cli, task_id: int) -> int:
    """The task's steps: its items less the review gates (the operator's, not work)."""
    return sum(1 for i in cli.items(task_id).values() if i.provider != "operator")


def test_status_is_a_table_of_title_status_gate_progress_cost_disk_and_age(cli: Cli) -> None:
    task_id = cli.enqueue()
    _paid(cli, task_id, 1_234_567)
    cli.db(update(Task).where(Task.id == task_id).values(created_at=now() - timedelta(hours=3, minutes=5)))
    project = cli.tmp_path / "ws/channels/nature/projects/heron"
    (project / "clips").mkdir()
    (project / "clips/s01.mp4").write_bytes(b"x" * 2_400_000)
    disk = sum(p.stat().st_size for p in project.rglob("*") if p.is_file())
    code, out, err = cli("status")
    assert (code, err) == (0, "")
    head, row = out.splitlines()
    assert head.split() == ["ID", "TITLE", "CHANNEL", "STATUS", "GATE", "PROGRESS", "COST", "DISK", "AGE"]
    assert re.split(r"\s{2,}", row.strip()) == [
        str(task_id),
        "The Heron's Patience, a Very Long Title…",  # clipped to 40 characters
        "nature",
        "Storyboard Review",  # the page's Status
        "Storyboard Review",  # the gate waiting
        f"1/{_steps(cli, task_id)}",  # steps done: the storyboard, given
        "$1.23",
        f"{disk / 1e6:.1f} MB",  # the project's folder: its storyboard and the clip
        "3h",
    ]
    # The columns line up: every header starts where its values start.
    assert head.index("STATUS") == row.index("Storyboard Review")
    assert head.index("CHANNEL") == row.index("nature")


def test_status_json_keeps_its_keys_and_agrees_with_the_table(cli: Cli) -> None:
    task_id = cli.enqueue()
    _paid(cli, task_id, 1_234_567)
    [task] = cli.status()
    items = cli.items(task_id)
    assert task == {
        "task": task_id,
        "title": TITLE,
        "channel": "nature",
        "slug": "heron",
        "state": "active",
        "status": "Storyboard Review",
        "gate": "Storyboard Review",
        "pass": 1,
        "items": {"succeeded": 1, "ready": 1, "blocked": len(items) - 2},
        "done": 1,
        "total": _steps(cli, task_id),
        "progress": "Images 0/1 · frames 0/1 · video clips 0/1 · narration 0/1 · sound 0/1 · final cut 0/1 "
        "· $1.23",
        "cost_usd": 1.234567,
        "age_s": task["age_s"],
        "error": None,
        "video": None,
        "notion_page_id": None,
        "disk_bytes": (cli.tmp_path / "ws/channels/nature/projects/heron/storyboard.json").stat().st_size,
        "media_removed_at": None,
    }
    assert 0 <= task["age_s"] < 60
    # The same task alone; its age is whole seconds, so a second may have ticked between the calls.
    [again] = cli.status("--task", str(task_id))
    assert task["age_s"] <= again["age_s"] <= task["age_s"] + 60
    assert {**again, "age_s": task["age_s"]} == task
    assert task["title"][:39] in cli("status", "--task", str(task_id))[1]


def test_an_empty_database_says_so(cli: Cli) -> None:
    assert cli("status") == (0, "no tasks yet\n", "")
    assert cli("status", "--json") == (0, "[]\n", "")


def test_cancel_stops_a_task_and_a_second_cancel_is_refused(cli: Cli) -> None:
    task_id = cli.enqueue()
    _paid(cli, task_id, 500_000)
    unfinished = sum(1 for i in cli.items(task_id).values() if i.state != "succeeded")
    code, out, err = cli("cancel", "--task", str(task_id))
    assert (code, out, err) == (0, f"cancelled task {task_id} ({unfinished} items stopped)\n", "")
    [task] = cli.status()
    assert (task["state"], task["status"], task["gate"], task["cost_usd"]) == (
        "cancelled",
        "Cancelled",
        None,
        0.5,
    )
    assert "Cancelled" in cli("status")[1]
    code, out, err = cli("cancel", "--task", str(task_id))
    assert (code, out, err) == (1, "", f"task {task_id}: a cancelled video cannot be cancelled\n")


def test_retry_starts_a_new_pass_that_keeps_the_finished_work(cli: Cli) -> None:
    task_id = cli.enqueue()
    _paid(cli, task_id, 250_000)
    before = cli.items(task_id)
    assert cli("cancel", "--task", str(task_id))[0] == 0
    code, out, err = cli("retry", "--task", str(task_id))
    assert (code, err) == (0, "")
    assert out == f"task {task_id}: pass 2 started, 1 of {_steps(cli, task_id)} steps kept\n"
    task = cli.task(task_id)
    assert (task.state, task.pass_no, task.error) == ("active", 2, None)
    after = cli.items(task_id)
    assert {k: i.id for k, i in after.items()} == {k: i.id for k, i in before.items()}
    # The given storyboard is still the done step it was, and its gate waits again.
    assert (after["storyboard"].state, after["storyboard"].finished_at) == (
        "succeeded",
        before["storyboard"].finished_at,
    )
    assert after["storyboard"].input_hash == before["storyboard"].input_hash
    assert after["storyboard_gate"].state == "ready"
    [shown] = cli.status()
    assert (shown["status"], shown["gate"], shown["pass"], shown["cost_usd"]) == (
        "Storyboard Review",
        "Storyboard Review",
        2,
        0.25,
    )


def test_an_error_is_shown_under_its_task_and_retry_clears_it(cli: Cli) -> None:
    task_id = cli.enqueue()
    problem = "generate_asset.py: the prompt was refused\nreword the shallows prompt"
    cli.db(update(Task).where(Task.id == task_id).values(state="error", error=problem))
    code, out, _ = cli("status")
    assert code == 0
    assert out.splitlines()[2:] == [
        "    generate_asset.py: the prompt was refused",
        "    reword the shallows prompt",
    ]
    assert " Error " in out.splitlines()[1] and " - " in out.splitlines()[1]
    assert cli("retry", "--task", str(task_id))[0] == 0
    [task] = cli.status()
    assert (task["state"], task["status"], task["error"]) == ("active", "Storyboard Review", None)
    assert len(cli("status")[1].splitlines()) == 2


def test_retry_of_a_task_in_production_is_refused_with_the_reason(cli: Cli) -> None:
    task_id = cli.enqueue()
    code, out, err = cli("retry", "--task", str(task_id))
    assert (code, out) == (1, "")
    assert err == (
        f"task {task_id}: this video is already in production; set Cancelled first to start over "
        f"(`nvd cancel --task {task_id}` cancels it)\n"
    )
    assert cli.task(task_id).pass_no == 1


def test_approve_passes_the_waiting_gate_and_refuses_another(cli: Cli) -> None:
    task_id = cli.enqueue()
    code, out, err = cli("approve", "--task", str(task_id), "--gate", "final")
    assert (code, out) == (1, "")
    assert err == (
        f"task {task_id}: there is nothing to approve for Final Review: the video is waiting at "
        "Storyboard Review\n"
    )
    code, out, err = cli("approve", "--task", str(task_id), "--gate", "storyboard")
    assert (code, out, err) == (0, f"approved the storyboard gate of task {task_id}\n", "")
    [task] = cli.status()
    assert (task["status"], task["gate"]) == ("Generating Assets", None)


@pytest.mark.parametrize(
    "command",
    [
        ["status", "--task", "42"],
        ["status", "--json", "--task", "42"],
        ["cancel", "--task", "42"],
        ["retry", "--task", "42"],
        ["approve", "--task", "42", "--gate", "storyboard"],
    ],
)
def test_an_unknown_task_is_named(cli: Cli, command: list[str]) -> None:
    cli.enqueue()  # task 1 exists; 42 does not
    assert cli(*command) == (1, "", "no such task: 42\n")
