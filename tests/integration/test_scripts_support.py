"""Helpers for the scripts' integration tests (no tests here): run a script as a real subprocess
against the sandbox, with the sandbox's keys and base URLs in its environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.sandbox_proc import SandboxProcess

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
PROVIDER_VARIABLES = (
    "GEMINI_API_KEY", "GEMINI_BASE_URL", "KLING_ACCESS_KEY", "KLING_SECRET_KEY", "KLING_BASE_URL",
    "ELEVENLABS_API_KEY", "ELEVENLABS_BASE_URL", "PIPELINE_TRACE",
)  # fmt: skip


def script_env(sandbox: SandboxProcess, **overrides: str | None) -> dict[str, str]:
    """This machine's environment without provider settings, plus the sandbox's; None removes one."""
    creds = json.loads((sandbox.state_dir / "credentials.json").read_text())
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_VARIABLES}
    env.update(
        GEMINI_API_KEY=creds["gemini_api_key"],
        GEMINI_BASE_URL=sandbox.base("gemini"),
        KLING_ACCESS_KEY=creds["kling_access_key"],
        KLING_SECRET_KEY=creds["kling_secret_key"],
        KLING_BASE_URL=sandbox.base("kling"),
        ELEVENLABS_API_KEY=creds["elevenlabs_api_key"],
        ELEVENLABS_BASE_URL=sandbox.base("elevenlabs"),
    )
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def secrets_of(sandbox: SandboxProcess) -> list[str]:
    creds = json.loads((sandbox.state_dir / "credentials.json").read_text())
    return [v for k, v in creds.items() if "key" in k or "token" in k]


@dataclass
class Run:
    code: int
    lines: list[dict[str, Any]]
    stdout: str
    stderr: str

    @property
    def last(self) -> dict[str, Any]:
        assert self.lines, f"no JSON line on stdout; stderr:\n{self.stderr}"
        return self.lines[-1]

    @property
    def result(self) -> dict[str, Any]:
        assert self.code == 0, f"exit {self.code}: {self.stdout}\n{self.stderr}"
        assert self.last["event"] == "result"
        return self.last

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("event") == name]

    def failed(self, exit_code: int, kind: str) -> dict[str, Any]:
        """The error line, after checking the exit code and kind."""
        assert self.code == exit_code, f"exit {self.code}, wanted {exit_code}: {self.stdout}\n{self.stderr}"
        assert self.last["event"] == "error"
        assert self.last["kind"] == kind
        assert self.last["message"]
        return self.last


def parse_lines(stdout: str) -> list[dict[str, Any]]:
    """Every stdout line must be JSON: the daemon reads nothing else."""
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def run_script(name: str, *args: object, env: dict[str, str], timeout: float = 120) -> Run:
    """`python scripts/<name>.py ...` from an unrelated folder, as the daemon runs it."""
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / f"{name}.py"), *map(str, args)],
        cwd="/",
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Run(proc.returncode, parse_lines(proc.stdout), proc.stdout, proc.stderr)


def local_env() -> dict[str, str]:
    """No provider settings at all: local scripts (composite, assembly) must not need any."""
    return {k: v for k, v in os.environ.items() if k not in PROVIDER_VARIABLES}
