"""The deploy files as an operator uses them: the systemd unit passes `systemd-analyze verify`, is a
notify service with a watchdog, hardening and a stable DAEMON_ID, whose paths are in the env file
the operator's commands read too; systemd, Railway and Docker each give a stop longer than the worst
one the code can take; Railway builds the Dockerfile and runs its start under tini, migrating where
the volume is mounted; the container listens where a published port reaches it; the Dockerfile
installs through the one locked install script; and the README says what the files say. (No
Docker engine runs here: the image's install itself, the upgrade and the start are exercised by
tests/acceptance/test_wheel_install.py, through the same scripts.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from daemon.envfile import read_env_file
from daemon.settings import DEFAULT_HTTP_PORT, Settings
from daemon.worker import SETTLE_AFTER_STOP_S
from tests.support.ci import skip_unless_ci

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "notion-video-daemon.service"
INSTALLED_NVD = "/opt/notion-video-daemon/venv/bin/nvd"
ENV_FILE = "/etc/notion-video-daemon/daemon.env"
# What closing takes after the drain (the Notion client, the engine, the HTTP listener), with room.
CLOSE_S = 10.0


def _unit() -> dict[str, list[str]]:
    """The [Service] section's settings, every value of a repeated key kept."""
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        key, _, value = line.partition("=")
        if section == "[Service]":
            settings.setdefault(key, []).append(value)
    return settings


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)?", value)
    assert match, value
    return float(match[1]) * (60 if match[2] == "min" else 1)


def worst_stop_s() -> float:
    """SIGTERM to exit at worst: the grace for running steps (the longer one of a paid call in
    flight), then their time to record how they ended (the Notion jobs' own wait, 10 s, runs beside
    these), then closing."""
    settings = Settings()
    grace = max(settings.sigterm_grace_s, settings.sigterm_paid_grace_s)
    return grace + SETTLE_AFTER_STOP_S + CLOSE_S


def test_the_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        skip_unless_ci("systemd-analyze is not installed: the unit was NOT verified (install systemd)")
    # The unit names the venv deploy/install.sh makes at /opt; verify wants its command to exist,
    # so this checkout's own `nvd` (the same console script) stands in for it.
    nvd = Path(sys.executable).parent / "nvd"
    assert nvd.is_file(), f"{nvd} is missing: install the project (make) to get the nvd command"
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(INSTALLED_NVD, str(nvd)))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    # Any word from verify is a problem: an unknown key is only warned about, and ignored.
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_the_unit_is_a_notify_service_with_a_watchdog_hardening_and_a_stable_id() -> None:
    unit = _unit()
    assert unit["Type"] == ["notify"]
    assert unit["NotifyAccess"] == ["main"]  # only the daemon, not its scripts, may speak for it
    assert 10 <= _seconds(unit["WatchdogSec"][0]) <= 300
    assert "DAEMON_ID=%H" in unit["Environment"]
    assert unit["ExecStartPre"] == [f"{INSTALLED_NVD} migrate"]
    assert unit["ExecStart"] == [f"{INSTALLED_NVD} run"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "KillMode": "mixed",
        "RestartPreventExitStatus": "78",
    }.items():
        assert unit[key] == [value], key
    assert unit["User"] != ["root"]


def test_the_paths_are_in_the_env_file_the_unit_and_the_operator_share() -> None:
    unit = _unit()
    # Set in the unit, they were the daemon's alone: `nvd --env-file ... status` read another database.
    assert not [v for v in unit["Environment"] if v.startswith(("WORKSPACE_DIR=", "CHANNELS_DIR="))]
    assert unit["EnvironmentFile"] == [ENV_FILE]
    template = read_env_file(ROOT / "deploy" / "daemon.env")
    assert ENV_FILE in (ROOT / "deploy" / "daemon.env").read_text()
    assert Path(template["CHANNELS_DIR"]).is_absolute()
    # ProtectSystem=strict makes everything read-only but what is named: the workspace must be.
    workspace = template["WORKSPACE_DIR"]
    writable = unit["ReadWritePaths"][0].split()
    assert any(Path(workspace).is_relative_to(path) for path in writable), (workspace, writable)


def test_every_supervisor_waits_longer_than_the_worst_stop() -> None:
    worst = worst_stop_s()
    assert _seconds(_unit()["TimeoutStopSec"][0]) > worst
    assert json.loads((ROOT / "railway.json").read_text())["deploy"]["drainingSeconds"] > worst
    docker_stop = re.search(r"--stop-timeout (\d+)", (ROOT / "Dockerfile").read_text())
    assert docker_stop and int(docker_stop[1]) > worst


def test_railway_builds_the_dockerfile_and_migrates_where_the_volume_is_mounted() -> None:
    railway = json.loads((ROOT / "railway.json").read_text())
    assert railway["build"] == {"builder": "DOCKERFILE", "dockerfilePath": "Dockerfile"}
    deploy = railway["deploy"]
    # A pre-deploy command runs without the volume: a SQLite migration there would go nowhere.
    assert "preDeployCommand" not in deploy
    # A start command replaces the image's ENTRYPOINT on Railway: the daemon would run without tini
    # (no PID 1 to reap what a killed script's FFmpeg leaves). The image's own start is used.
    assert "startCommand" not in deploy
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY deploy/start.sh /usr/local/bin/nvd-start" in dockerfile
    assert 'ENTRYPOINT ["tini", "--"]' in dockerfile
    assert 'CMD ["nvd-start"]' in dockerfile
    start = [line.strip() for line in (ROOT / "deploy" / "start.sh").read_text().splitlines()]
    assert start.index("nvd migrate") < start.index("exec nvd run")
    # Heroku's release: line is not read by Railway; nothing else should suggest it is.
    assert not (ROOT / "Procfile").exists()


def test_the_container_listens_where_a_published_port_reaches_it() -> None:
    # On 127.0.0.1, the default, nothing outside the container reaches the listener (plain Docker
    # sets no PORT, which would have made it 0.0.0.0).
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^\s+HTTP_HOST=0\.0\.0\.0\s*$", dockerfile, re.MULTILINE)
    assert re.findall(r"^EXPOSE (\d+)$", dockerfile, re.MULTILINE) == [str(DEFAULT_HTTP_PORT)]


def test_the_dockerfile_installs_through_the_locked_install_script() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^ARG PYTHON_IMAGE=(\S+)", dockerfile, re.MULTILINE)
    assert bases and re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", bases[0])
    assert "RUN deploy/install.sh /opt/nvd" in dockerfile
    install = (ROOT / "deploy" / "install.sh").read_text()
    assert '--constraint "$lock"' in install and "requirements.lock" in install
    # The build context keeps what the install needs.
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert not ignored & {"deploy", "requirements.lock", "pyproject.toml", "daemon", "scripts"}
    # The daemon runs as its own user: the start drops root before anything else.
    assert (
        "useradd --system" in dockerfile and "setpriv --reuid" in (ROOT / "deploy" / "start.sh").read_text()
    )


def test_the_readme_says_what_the_deploy_files_say() -> None:
    readme = (ROOT / "README.md").read_text()
    production = readme[readme.index("## Running it in production") :]
    production = production[: production.index("\n## ", 3)]
    for path in (
        "deploy/notion-video-daemon.service",
        "deploy/daemon.env",
        "deploy/install.sh",
        "Dockerfile",
        "railway.json",
    ):
        assert f"`{path}`" in production, path
        assert (ROOT / path).exists(), path
    unit = _unit()
    railway = json.loads((ROOT / "railway.json").read_text())["deploy"]
    for said in (
        f"`TimeoutStopSec={unit['TimeoutStopSec'][0]}`",
        f"`WatchdogSec={unit['WatchdogSec'][0]}`",
        f"`drainingSeconds: {railway['drainingSeconds']}`",
        "`Type=notify`",
        "`DAEMON_ID=%H`",
        "`nvd-start`",
    ):
        assert said in production, said
    for gone in ("Procfile", "release:", "config/deploy"):
        assert gone not in production, gone
