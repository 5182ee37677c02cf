"""Runs one script as an asyncio subprocess in its own process group, reading its JSON lines.

No transaction or connection is held while a script runs. The group can be killed at once (lost
lease, cancel, timeout, shutdown). A script dies with its daemon (NVD_PARENT_PID, see
scripts/_lib/parent.py); where the kernel cannot arrange that, a pidfile per group lets a restarted
daemon reap the orphans.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

EventHook = Callable[[dict[str, Any]], Awaitable[None]]

EXIT_OK, EXIT_PERMANENT, EXIT_USAGE, EXIT_TRANSIENT = 0, 1, 2, 75


@dataclass
class ScriptOutcome:
    exit_code: int | None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    stderr_tail: list[str] = field(default_factory=list)
    timed_out: bool = False

    def message(self) -> str:
        """What went wrong, in the script's own words when it gave any."""
        if self.error and self.error.get("message"):
            return str(self.error["message"])
        if self.timed_out:
            return "the script ran past its time limit and was stopped"
        tail = " | ".join(self.stderr_tail[-3:])
        return f"the script exited with code {self.exit_code}" + (f": {tail}" if tail else "")


class ScriptRunner(Protocol):
    async def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        timeout: float,
        on_event: EventHook,
        cancel: asyncio.Event,
        label: str,
    ) -> ScriptOutcome: ...


class SubprocessRunner:
    def __init__(self, pid_dir: Path) -> None:
        self.pid_dir = pid_dir

    async def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        timeout: float,
        on_event: EventHook,
        cancel: asyncio.Event,
        label: str,
    ) -> ScriptOutcome:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env={**env, "NVD_PARENT_PID": str(os.getpid())},  # the script dies with this daemon
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        pidfile = self._write_pidfile(proc.pid, label, argv)
        outcome = ScriptOutcome(exit_code=None)
        stderr: deque[str] = deque(maxlen=20)
        try:
            readers = asyncio.gather(self._read_stdout(proc, outcome, on_event), _read_stderr(proc, stderr))
            waiter = asyncio.ensure_future(proc.wait())
            stopper = asyncio.ensure_future(cancel.wait())
            done, _ = await asyncio.wait(
                {waiter, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if waiter not in done:
                outcome.timed_out = stopper not in done
                kill_group(proc.pid)
                await waiter
            stopper.cancel()
            await readers
            outcome.exit_code = proc.returncode
            outcome.stderr_tail = list(stderr)
            return outcome
        finally:
            if proc.returncode is None:
                kill_group(proc.pid)
                with contextlib.suppress(Exception):
                    await proc.wait()
            pidfile.unlink(missing_ok=True)

    async def _read_stdout(
        self, proc: asyncio.subprocess.Process, outcome: ScriptOutcome, on_event: EventHook
    ) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                continue  # a stray print; the contract's lines are JSON
            if not isinstance(event, dict):
                continue
            kind = event.get("event")
            if kind == "result":
                outcome.result = event
            elif kind == "error":
                outcome.error = event
            await on_event(event)

    def _write_pidfile(self, pid: int, label: str, argv: Sequence[str]) -> Path:
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        path = self.pid_dir / f"{pid}.json"
        path.write_text(
            json.dumps(
                {
                    "pgid": pid,
                    "daemon_pid": os.getpid(),
                    "label": label,
                    "script": argv[1] if len(argv) > 1 else argv[0],
                }
            )
        )
        return path


async def _read_stderr(proc: asyncio.subprocess.Process, tail: deque[str]) -> None:
    assert proc.stderr is not None
    async for raw in proc.stderr:
        line = raw.decode(errors="replace").rstrip()
        if line:
            tail.append(line[:500])


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def reap_orphans(pid_dir: Path) -> list[dict[str, Any]]:
    """Kills the script groups left by a daemon that is gone, and removes their pidfiles."""
    reaped: list[dict[str, Any]] = []
    if not pid_dir.is_dir():
        return reaped
    for path in pid_dir.glob("*.json"):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if _alive(int(info.get("daemon_pid", 0))) and int(info["daemon_pid"]) != os.getpid():
            continue  # another live daemon's script
        if _alive(int(info["pgid"])) and _is_our_script(int(info["pgid"]), str(info.get("script", ""))):
            kill_group(int(info["pgid"]))
            reaped.append(info)
        path.unlink(missing_ok=True)
    return reaped


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_our_script(pid: int, script: str) -> bool:
    """Guards against a recycled pid: the process must still be running that script."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return bool(script)  # no /proc (macOS): trust the pidfile
    return any(part.decode(errors="replace") == script for part in cmdline)
