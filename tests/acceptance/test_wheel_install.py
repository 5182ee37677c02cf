"""The wheel as an operator installs it, with no checkout: deploy/install.sh (the Dockerfile's
install too) builds the wheel and installs it with the locked versions into a fresh venv in a
directory of its own outside the repository. From then on only the installed `nvd` is used, from a
directory of its own: --version, migrate (SQLite in the current directory's workspace, the installed
default), doctor against a seeded sandbox, demo without the sandbox extra (refused, naming the
extra), the container's start (deploy/start.sh: as root it hands the workspace, all of it, to
another user and drops to it), which migrates and runs the daemon until SIGTERM, and an upgrade:
install.sh again, from a changed checkout, replaces the code of the same version."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ci import skip_unless_ci
from tests.support.sandbox_proc import SandboxProcess

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("wheel_install")]

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "deploy" / "install.sh"
START = ROOT / "deploy" / "start.sh"
SEED = [sys.executable, "-m", "sandbox", "seed", "--channel", "nature", "--projects", "0"]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


@dataclass
class Installed:
    base: Path  # outside the checkout, readable by every user (the start test drops to one)
    venv: Path

    def env(self, **settings: str) -> dict[str, str]:
        """An environment with nothing of the checkout's: no PYTHONPATH, no settings of the tests."""
        return {
            "PATH": f"{self.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8",
            "HTTP_PORT": "0",  # no listener: tests run side by side
            **settings,
        }

    def nvd(
        self, *args: str, cwd: Path, timeout: float = 120, **settings: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / "nvd"), *args],
            cwd=cwd,
            env=self.env(**settings),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def site(self, name: str) -> Path:
        path = self.base / name
        path.mkdir(mode=0o755)
        return path


def world_runnable(path: Path) -> bool:
    """Whether every user may run this file (each folder above it searchable by others)."""
    real = path.resolve()
    return all(p.stat().st_mode & 0o001 for p in (real, *real.parents))


def server_python() -> str:
    """A Python 3.11+ every user can run, as a server's is (the container start drops to another
    user, who must be able to run the venv's interpreter); else the tests' own."""
    for candidate in (Path("/usr/local/bin/python3"), Path("/usr/bin/python3")):
        if candidate.exists() and world_runnable(candidate):
            probe = "import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))"
            if subprocess.run([str(candidate), "-c", probe], capture_output=True).returncode == 0:
                return str(candidate)
    return sys.executable


@pytest.fixture(scope="module")
def installed() -> Iterator[Installed]:
    base = Path(tempfile.mkdtemp(prefix="nvd-wheel-"))
    try:
        base.chmod(0o755)
        assert not base.is_relative_to(ROOT)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        done = subprocess.run(
            [str(INSTALL), str(base / "venv")],
            cwd=base,
            env={**env, "PYTHON": server_python()},
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"install.sh: nvd {VERSION} in {base / 'venv'}" in done.stdout
        yield Installed(base, base / "venv")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_the_installed_command_runs_from_the_installed_package(installed: Installed) -> None:
    site = installed.site("version")
    done = installed.nvd("--version", cwd=site)
    assert (done.returncode, done.stdout) == (0, f"nvd {VERSION}\n")
    where = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-c", "import daemon, scripts; print(daemon.__file__)"],
        cwd=site,
        env=installed.env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(installed.venv) and not Path(where).is_relative_to(ROOT)
    # The package data a run needs came with it.
    package = Path(where).parent
    assert sorted(p.name for p in (package / "defaults").iterdir()) == ["pricing.yaml", "providers.yaml"]
    assert (package / "migrations" / "env.py").is_file()
    # Installed, the operator's files default to the current directory; the package's own files,
    # and the scripts the daemon runs as files, are found in the venv.
    python = str(installed.venv / "bin" / "python")
    shown = "from daemon.settings import Settings; s = Settings(); print(s.model_dump_json())"
    settings = json.loads(
        subprocess.run(
            [python, "-c", shown], cwd=site, env=installed.env(), capture_output=True, check=True
        ).stdout
    )
    assert (settings["workspace_dir"], settings["channels_dir"]) == (
        str(site / "workspace"),
        str(site / "config" / "channels"),
    )
    for name in ("pricing_file", "providers_file", "scripts_dir"):
        assert Path(settings[name]).is_relative_to(installed.venv), name
    script = Path(settings["scripts_dir"]) / "generate_asset.py"
    help_text = subprocess.run(
        [python, str(script), "--help"], cwd=site, env=installed.env(), capture_output=True
    )
    assert help_text.returncode == 0, help_text.stderr
    # A script run by hand prices its call with the table the package ships.
    priced = "from scripts._lib import pricing; print(pricing.table()['kling']['unit_price'])"
    done = subprocess.run(
        [python, "-c", priced], cwd=site, env=installed.env(), capture_output=True, text=True
    )
    assert done.returncode == 0 and float(done.stdout) > 0, done.stderr


def test_migrate_makes_the_database_in_the_current_directory(installed: Installed) -> None:
    site = installed.site("migrate")
    done = installed.nvd("migrate", cwd=site)
    assert (done.returncode, done.stdout) == (0, "database schema is up to date\n"), done.stderr
    assert (site / "workspace" / "daemon.db").is_file()
    again = installed.nvd("migrate", cwd=site)  # nothing to do, still a success
    assert again.returncode == 0, again.stderr


def test_doctor_passes_against_a_seeded_sandbox(installed: Installed, tmp_path: Path) -> None:
    site = installed.site("doctor")
    assert installed.nvd("migrate", cwd=site).returncode == 0
    state = tmp_path / "sandbox"
    sandbox = SandboxProcess(state).start()  # the checkout's sandbox: the wheel has no sandbox extra
    try:
        sandbox.configure(notion_rate=1000, notion_burst=100)
        seeded = subprocess.run(
            [*SEED, "--state", str(state), "--url", sandbox.url],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        source = json.loads(seeded.stdout.strip().splitlines()[-1])["data_source_id"]
        # The seed's daemon.env through --env-file; the environment's WORKSPACE_DIR wins over it.
        done = installed.nvd(
            "--env-file", str(state / "daemon.env"), "doctor", cwd=site, WORKSPACE_DIR=str(site / "workspace")
        )
    finally:
        sandbox.stop()
    report = done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert done.returncode == 0, report
    assert lines[-1].startswith("doctor: "), report
    checks = {line.split()[1]: line.split()[0] for line in lines if line.split()[:1] in (["OK"], ["WARN"])}
    for name in ("settings", "channels", "pricing", "database", "migrations", "ffmpeg", "notion"):
        assert checks.get(name) == "OK", report
    assert f"data source {source}" in done.stdout
    assert f"WORKSPACE_DIR {site / 'workspace'}" in done.stdout


def test_the_demo_names_the_sandbox_extra_it_needs(installed: Installed) -> None:
    done = installed.nvd("demo", cwd=installed.site("demo"))
    assert done.returncode == 1
    assert "pip install 'notion-video-daemon[sandbox]'" in done.stderr, done.stderr
    assert "espeakng_loader not installed" in done.stderr


def test_the_container_start_migrates_runs_as_its_user_and_stops_on_sigterm(installed: Installed) -> None:
    data = installed.site("data")
    (data / "channels").mkdir()
    # As the image runs it: root, handing the workspace to the daemon's user (here `nobody`), who
    # must be able to run the venv's interpreter. Not root: it goes straight on, as `docker run
    # --user nvd` does.
    as_root = os.geteuid() == 0
    if as_root and not (shutil.which("setpriv") and world_runnable(installed.venv / "bin" / "python")):
        skip_unless_ci(
            "the drop from root to another user was NOT tested: no setpriv, or no Python here that "
            "other users may run (the venv's interpreter is only root's)"
        )
    workspace = data / "workspace"
    outside = data / "outside.txt"
    if as_root:
        # A volume an earlier deploy wrote as root: root's database and a project folder deep
        # inside, private to root, and a link to a file of root's outside the workspace.
        migrated = installed.nvd("migrate", cwd=data, WORKSPACE_DIR=str(workspace))
        assert migrated.returncode == 0, migrated.stderr
        project = workspace / "nature" / "old-video" / "clips"
        project.mkdir(parents=True, mode=0o700)
        (project / "scene-1.mp4").write_bytes(b"clip")
        (project / "scene-1.mp4").chmod(0o600)
        outside.write_text("root's")
        (workspace / "link").symlink_to(outside)
    log_path = data / "start.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(START)],
            cwd=data,
            env=installed.env(
                NVD_USER="nobody",
                WORKSPACE_DIR=str(data / "workspace"),
                CHANNELS_DIR=str(data / "channels"),
                DAEMON_ID="wheel-start",
            ),
            stdout=log,
            stderr=log,
        )
    try:
        deadline = time.monotonic() + 90
        while "daemon_started" not in log_path.read_text(errors="replace"):
            assert proc.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.2)
        stop_sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log_path.read_text(errors="replace")
        assert time.monotonic() - stop_sent < 15  # nothing was running: no grace to wait out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log_path.read_text(errors="replace")
    assert "database schema is up to date" in text  # migrate ran first, where the workspace is
    assert "daemon_stopped" in text
    database = data / "workspace" / "daemon.db"
    if as_root:
        nobody = pwd.getpwnam("nobody").pw_uid
        assert database.stat().st_uid == nobody  # never root's
        # Everything in the workspace is the daemon's, not only its top; a link's target is not.
        owners = {path: path.lstat().st_uid for path in (workspace, *workspace.rglob("*"))}
        assert set(owners.values()) == {nobody}, owners
        assert outside.stat().st_uid == 0


def test_installing_again_replaces_the_code_though_the_version_is_the_same(
    installed: Installed, tmp_path: Path
) -> None:
    # An upgrade as an operator does it: deploy/install.sh again, from a newer checkout, into the
    # same venv. The version is static, and pip keeps an installed version unless told otherwise.
    source = tmp_path / "checkout"
    shutil.copytree(
        ROOT,
        source,
        ignore=lambda folder, names: [
            n
            for n in names
            if n in SKIPPED or n.endswith(".egg-info") or (folder == str(ROOT) and n in TOP_SKIPPED)
        ],
    )
    mark = f"# the newer checkout: {time.time_ns()}\n"
    with (source / "daemon" / "__init__.py").open("a") as init:
        init.write(mark)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(source / "deploy" / "install.sh"), str(installed.venv)],
        cwd=installed.base,
        env={**env, "PYTHON": server_python()},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    where = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-c", "import daemon; print(daemon.__file__)"],
        cwd=installed.site("upgraded"),
        env=installed.env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).read_text().endswith(mark)
    version = installed.nvd("--version", cwd=installed.site("upgraded-version"))
    assert (version.returncode, version.stdout) == (0, f"nvd {VERSION}\n")


# What a checkout's copy leaves out (what deploy/install.sh's own copy leaves out, and the tests).
SKIPPED = {"__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis"}
TOP_SKIPPED = {".git", ".venv", "workspace", "build", "dist", "tests", "benchmarks", "docs", "sandbox-state"}
