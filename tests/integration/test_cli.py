"""The daemon's command line as an operator meets it: real processes, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import db as testdb

ROOT = Path(__file__).resolve().parents[2]

GOOD = "id: nature\nname: Nature\nvoice: {voice_id: JBFqnCBsd6RMkjVDRZzb}\n"
STORYBOARD = """
title: The Heron's Patience
atmosphere: Misty river delta at dawn
assets:
  - {key: shallows, kind: environment, prompt: "Reed-lined shallows"}
scenes:
  - key: s01
    frame: {environment: shallows}
    motion: Slow push in
    narration: At first light the delta belongs to the patient.
    sfx: Dawn river ambience
"""


def _daemon(tmp_path: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WORKSPACE_DIR": str(tmp_path / "ws"), "CHANNELS_DIR": str(tmp_path / "channels")}
    env.pop("DATABASE_URL", None)
    env.update(settings)
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_run_refuses_an_unmigrated_database_and_names_the_command(tmp_path: Path) -> None:
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "nature.yaml").write_text(GOOD)
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "daemon.db").touch()  # an empty SQLite database: no schema
    done = _daemon(tmp_path, "run")
    assert done.returncode == 1
    assert "run `nvd migrate` first" in done.stderr


# Regression: an operator's command where WORKSPACE_DIR is not the daemon's (on a systemd host, the
# unit alone set it) made an empty database there, and reported on it ("no tasks yet").
@pytest.mark.parametrize(
    "command",
    [("status",), ("cleanup", "--dry-run"), ("approve", "--task", "1", "--gate", "final"), ("run",)],
)
def test_a_command_refuses_a_database_that_does_not_exist_and_makes_none(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    (tmp_path / "channels").mkdir()
    database = tmp_path / "ws" / "daemon.db"
    done = _daemon(tmp_path, *command)
    assert (done.returncode, _last_line(done)) == (
        78,
        f"configuration error: WORKSPACE_DIR: there is no database at {database}; set WORKSPACE_DIR (or "
        "DATABASE_URL) to the daemon's (on a server: `nvd --env-file` with the daemon's env file), or run "
        "`nvd migrate` to create a new one there",
    )
    assert not database.exists()
    named = tmp_path / "elsewhere.db"
    done = _daemon(tmp_path, *command, DATABASE_URL=f"sqlite:///{named}")
    assert (done.returncode, _last_line(done)) == (
        78,
        f"configuration error: DATABASE_URL: there is no SQLite file at {named}; correct DATABASE_URL, or "
        "run `nvd migrate` to create the database there",
    )
    assert not named.exists()


@pytest.mark.parametrize("command", [("migrate",), ("run",), ("status",)])
def test_a_database_url_naming_a_folder_or_another_file_is_said_in_one_line(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    """Regression: both ended in a traceback (IsADirectoryError; sqlite3's 'file is not a database')."""
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "nature.yaml").write_text(GOOD)
    folder = tmp_path / "a-folder"
    folder.mkdir()
    done = _daemon(tmp_path, *command, DATABASE_URL=f"sqlite:///{folder}")
    assert (done.returncode, _last_line(done)) == (
        78,
        f"configuration error: DATABASE_URL: cannot open the SQLite file {folder} (Is a directory); point it "
        "at a file in a writable folder (migrate creates it), or unset it for SQLite in WORKSPACE_DIR",
    )
    other = tmp_path / "notes.txt"
    other.write_text("not a database, but a page of someone's notes " * 4)
    done = _daemon(tmp_path, *command, DATABASE_URL=f"sqlite:///{other}")
    assert (done.returncode, _last_line(done)) == (
        78,
        f"configuration error: DATABASE_URL: {other} is not a SQLite database (file is not a database); "
        "point it at the daemon's database, or at a new file (migrate creates it)",
    )
    assert "Traceback" not in done.stderr
    assert other.read_text().startswith("not a database")  # left as it was


def test_the_env_file_template_gives_the_operator_the_daemons_database(tmp_path: Path) -> None:
    # deploy/daemon.env as a systemd host has it (its paths moved under tmp_path), read by the
    # daemon's migrate and by an operator's status run from another directory, nothing set around.
    template = (ROOT / "deploy" / "daemon.env").read_text()
    env_file = tmp_path / "daemon.env"
    env_file.write_text(
        template.replace("/var/lib/notion-video-daemon", str(tmp_path / "state")).replace(
            "/etc/notion-video-daemon", str(tmp_path / "etc")
        )
    )
    (tmp_path / "etc" / "channels").mkdir(parents=True)
    (tmp_path / "etc" / "channels" / "nature.yaml").write_text(GOOD)
    env = {k: v for k, v in os.environ.items() if k not in ("WORKSPACE_DIR", "CHANNELS_DIR", "DATABASE_URL")}
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()

    def nvd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "daemon", "--env-file", str(env_file), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=elsewhere,
            timeout=60,
        )

    assert nvd("migrate").returncode == 0
    assert (tmp_path / "state" / "workspace" / "daemon.db").is_file()
    done = nvd("status")
    assert (done.returncode, done.stdout) == (0, "no tasks yet\n"), done.stderr
    assert not (elsewhere / "workspace").exists()


def test_a_bad_channel_file_stops_start_up(tmp_path: Path) -> None:
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "nature.yaml").write_text(GOOD.replace("voice_id", "voice_name"))
    assert _daemon(tmp_path, "migrate").returncode == 0
    done = _daemon(tmp_path, "run")
    assert done.returncode == 78  # a setting to fix: systemd does not restart it (RestartPreventExitStatus)
    assert "nature.yaml: invalid channel configuration" in done.stderr
    assert "voice.voice_id: Field required (add this field)" in done.stderr


@pytest.mark.slow
def test_enqueue_plans_a_task_and_a_bad_storyboard_names_the_field(tmp_path: Path) -> None:
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "nature.yaml").write_text(GOOD)
    assert _daemon(tmp_path, "migrate").returncode == 0
    good = tmp_path / "sb.yaml"
    good.write_text(STORYBOARD)
    done = _daemon(tmp_path, "enqueue", "--channel", "nature", "--storyboard", str(good))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"task": 1, "channel": "nature", "slug": "the-heron-s-patience"}
    status = json.loads(_daemon(tmp_path, "status", "--json").stdout)
    assert status[0]["state"] == "active"
    assert status[0]["items"]["ready"] >= 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(STORYBOARD.replace("environment: shallows}", "environment: shalows}"))
    done = _daemon(tmp_path, "enqueue", "--channel", "nature", "--storyboard", str(bad))
    assert done.returncode == 1
    assert "scenes[0].frame.environment" in done.stderr and "shallows" in done.stderr
    done = _daemon(tmp_path, "enqueue", "--channel", "oceans", "--storyboard", str(good))
    assert done.returncode == 1
    assert "unknown channel 'oceans'; known channels: nature" in done.stderr
    # A slug becomes a folder: one that would leave it is refused with the field and the fix.
    done = _daemon(tmp_path, "enqueue", "--channel", "nature", "--storyboard", str(good), "--slug", "../out")
    assert done.returncode == 1
    assert "slug" in done.stderr and "'../out' is a path, not a single name" in done.stderr
    assert not (tmp_path / "workspace" / "channels" / "out").exists()


def _last_line(done: subprocess.CompletedProcess[str]) -> str:
    """What the command ended with; and no traceback before it."""
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done.stderr.strip().splitlines()[-1]


PG = os.environ.get("TEST_DATABASE_URL", "postgresql://root@127.0.0.1:5432/test").rsplit("/", 1)[0]
BAD_SETTINGS = [
    (
        {"DATABASE_URL": "postgresql://root@127.0.0.1:1/videos"},
        75,
        "error: DATABASE_URL: cannot reach PostgreSQL at 127.0.0.1:1 (",
    ),
    pytest.param(
        {"DATABASE_URL": f"{PG}/nvd_no_such_database"},
        78,
        "configuration error: DATABASE_URL: PostgreSQL at 127.0.0.1:5432 has no database "
        "'nvd_no_such_database'; create it (createdb nvd_no_such_database) or correct the name",
        marks=pytest.mark.postgres,
    ),
    (
        {"DATABASE_URL": "mysql://root@127.0.0.1/videos"},
        78,
        "configuration error: DATABASE_URL: the scheme 'mysql' is not supported; use postgresql://",
    ),
    (
        {"WORKSPACE_DIR": "/proc/nvd-workspace"},
        78,
        "configuration error: WORKSPACE_DIR /proc/nvd-workspace: cannot write there (",
    ),
    (
        {"LEASE_TTL_S": "-1"},
        78,
        "configuration error: LEASE_TTL_S: must be a positive number of seconds",
    ),
]


@pytest.mark.parametrize(("settings", "code", "line"), BAD_SETTINGS)
def test_a_bad_setting_ends_the_command_with_one_line_naming_it(
    tmp_path: Path, settings: dict[str, str], code: int, line: str
) -> None:
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "nature.yaml").write_text(GOOD)
    for command in ("migrate", "run"):  # as the operator meets them, first to last
        done = _daemon(tmp_path, command, **settings)
        assert (done.returncode, _last_line(done)[: len(line)]) == (code, line), command


def test_a_missing_env_file_is_named(tmp_path: Path) -> None:
    done = _daemon(tmp_path, "--env-file", str(tmp_path / "nowhere.env"), "run")
    assert done.returncode == 78
    assert _last_line(done) == (
        f"configuration error: --env-file {tmp_path / 'nowhere.env'}: No such file or directory; "
        "give the path of a file of KEY=value lines"
    )


def test_no_channel_is_warned_about(tmp_path: Path) -> None:
    (tmp_path / "channels").mkdir()
    assert _daemon(tmp_path, "migrate").returncode == 0
    env = {**os.environ, "WORKSPACE_DIR": str(tmp_path / "ws"), "CHANNELS_DIR": str(tmp_path / "channels")}
    env.pop("DATABASE_URL", None)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "daemon", "run"], stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert daemon.stderr is not None
        for raw in daemon.stderr:
            if "daemon_started" in raw:
                break
            if "no_channel_configured" in raw:
                assert str(tmp_path / "channels") in raw and "add a <channel>.yaml" in raw
                return
        raise AssertionError("no warning that no channel is configured")
    finally:
        daemon.terminate()
        daemon.wait(30)
        assert daemon.stderr is not None
        daemon.stderr.close()


def test_the_sqlite_file_and_a_new_workspace_are_private(tmp_path: Path) -> None:
    assert _daemon(tmp_path, "migrate").returncode == 0
    workspace = tmp_path / "ws"
    assert workspace.stat().st_mode & 0o777 == 0o700
    files = [p for p in workspace.iterdir() if p.name.startswith("daemon.db")]
    assert files, list(workspace.iterdir())
    for path in files:
        assert path.stat().st_mode & 0o077 == 0, f"{path.name} is readable by others"


@pytest.mark.postgres
def test_two_migrates_at_once_on_a_fresh_postgresql_database_both_succeed(tmp_path: Path) -> None:
    url, name = testdb.create_pg_database(empty=True)
    try:
        env = {**os.environ, "WORKSPACE_DIR": str(tmp_path / "ws"), "CHANNELS_DIR": str(tmp_path)}
        env["DATABASE_URL"] = url
        runs = [
            subprocess.Popen(
                [sys.executable, "-m", "daemon", "migrate"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outcomes = [(run.communicate(timeout=60)[1], run.returncode) for run in runs]
        assert [code for _, code in outcomes] == [0, 0], outcomes
    finally:
        testdb.drop_pg_database(name)
