"""`cleanup` and `retry` as an operator runs them (in-process, through daemon.cli.main), on a video
made by the real engine with stand-in scripts: the dry run lists per video what would go and
removes nothing, the cleanup frees exactly that, the status table's DISK follows, and a retry that
would buy removed files again is refused naming them until `--rebuy`."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from daemon.cli import main
from daemon.db.engine import make_engine
from daemon.db.models import Task
from services.states import TaskState
from tests.support import fake_scripts
from tests.support.engine_kit import Kit, now, run_workers, storyboard

CHANNEL = (
    "id: nature\nname: Nature\nvoice: {voice_id: JBFqnCBsd6RMkjVDRZzb}\n"
    "gates: {storyboard: false, assets: false, final: false}\n"
)


async def _old_video(workspace: Path, db_url: str, scripts: Path) -> int:
    """A 2-scene video made and done, then aged 31 days."""
    engine = make_engine(db_url)
    try:
        kit = Kit(engine, workspace, fake_scripts.install(scripts))
        await kit.prepare()
        task_id = await kit.submit(storyboard(2))

        async def done() -> bool:
            return (await kit.task(task_id)).state == TaskState.DONE

        await run_workers([kit.worker()], done)
        async with engine.begin() as conn:
            await conn.execute(
                update(Task).where(Task.id == task_id).values(updated_at=now() - timedelta(days=31))
            )
        return task_id
    finally:
        await engine.dispose()


def _files(workspace: Path) -> set[Path]:
    return {p for p in workspace.joinpath("channels").rglob("*") if p.is_file()}


def test_cleanup_lists_then_frees_the_same_and_retry_asks_before_buying_again(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = tmp_path / "ws"
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "nature.yaml").write_text(CHANNEL)
    for name, value in (("WORKSPACE_DIR", workspace), ("CHANNELS_DIR", tmp_path / "channels")):
        monkeypatch.setenv(name, str(value))
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.delenv("RETENTION_DAYS", raising=False)
    task_id = asyncio.run(_old_video(workspace, db_url, tmp_path / "scripts"))

    def cli(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    # No retention anywhere: only leftovers would go (none here), and the command says why.
    code, out, _ = cli("cleanup", "--dry-run")
    assert (code, out.splitlines()[-1]) == (0, "nothing to remove")
    assert out.startswith(
        "no retention is set (RETENTION_DAYS, a channel's retention_days, or --older-than-days)"
    )
    assert cli("cleanup", "--channel", "films")[:2] == (1, "")

    files = _files(workspace)
    code, out, err = cli("cleanup", "--dry-run", "--older-than-days", "30")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert (
        lines[0] == f'task {task_id} "The Heron\'s Patience" (channels/nature/projects/p1, done 31 days ago)'
    )
    groups = {line.split()[0]: line.split()[1] for line in lines[1:-1]}
    assert groups == {
        "assets": "2",
        "composites": "2",
        "clips": "2",
        "narration": "2",
        "sfx": "2",
        "total": "10",
    }
    would = re.fullmatch(
        r"would free (.+) \(10 files\) from 1 video; nothing was removed \(--dry-run\)", lines[-1]
    )
    assert would, lines[-1]
    assert _files(workspace) == files

    code, out, _ = cli("status")
    disk_before = re.split(r"\s{2,}", out.splitlines()[1].strip())[7]
    code, out, err = cli("cleanup", "--older-than-days", "30")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f'task {task_id} "The Heron\'s Patience" (channels/nature/projects/p1, done 31 days ago): removed '
        f"10 files, {would.group(1)}; 10 steps marked removed: a new pass that needs them asks before buying "
        "them again",
        f"freed {would.group(1)} (10 files) from 1 video",
    ]
    assert len(_files(workspace)) == len(files) - 10
    code, out, _ = cli("status")
    assert re.split(r"\s{2,}", out.splitlines()[1].strip())[7] != disk_before
    code, out, _ = cli("cleanup", "--older-than-days", "30")
    assert out == "nothing to remove\n"

    # Queued again unchanged: nothing needs the removed files, nothing is bought.
    code, out, err = cli("retry", "--task", str(task_id))
    assert (code, out, err) == (0, f"task {task_id}: pass 2 found nothing left to do; it is done\n", "")
    # Other captions make a new cut, which needs them: refused, naming them, until --rebuy.
    (tmp_path / "channels" / "nature.yaml").write_text(CHANNEL + "captions: {size: 0.06}\n")
    code, out, err = cli("retry", "--task", str(task_id))
    assert (code, out) == (1, "")
    day = now().date().isoformat()
    assert err.startswith(
        f"task {task_id}: not started: the intermediate files of this video were removed by retention on "
        f"{day}, and this pass needs them again: it would buy again 2 images, 2 video clips, 2 narrations "
        "and 2 ambience beds (about $"
    )
    assert err.endswith(f"Nothing was bought; `nvd retry --task {task_id} --rebuy` buys them again\n")
    code, out, err = cli("retry", "--task", str(task_id), "--rebuy")
    assert (code, err) == (0, "")
    assert out.startswith(f"task {task_id}: pass 3 started, ")
