"""Runs one script as a process in its own process group, reading its JSON lines.

No transaction or connection is held while a script runs. The group can be killed at once (lost
lease, cancel, timeout, shutdown). A script dies with its daemon (NVD_PARENT_PID, see
scripts/_lib/parent.py); where the kernel cannot arrange that, a pidfile per group lets a restarted
daemon reap the orphans.

A script starts as a fork of a warm interpreter (`ForkServer`, scripts/_lib/zygote.py) that has
imported what scripts import: its own work begins at once instead of after 0.13 s of CPU spent on
imports. It runs as `python script.py ARGS` would (its own session, the run's environment, the same
pipes and exit code). Where that cannot be (no fork server: not Linux, turned off, failed to start,
or a run whose interpreter settings differ), the script is started as a new interpreter.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import socket
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from daemon.logs import get_logger

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

    async def close(self) -> None:
        """Once no script runs any more (the worker has stopped)."""


# The warm interpreter, started as `python -m ZYGOTE` (a name: the daemon imports nothing of scripts).
ZYGOTE = "scripts._lib.zygote"
# What an interpreter reads from its environment as it starts (sys.path, buffering, encodings): a
# run is forked only when its environment agrees with the fork server's on each of these.
_STARTUP = re.compile(r"PYTHON\w*|LANG|LC_\w+|VIRTUAL_ENV")
_READ_LIMIT = 2**16  # asyncio's stream limit, as for a subprocess's pipes


class ForkServerGone(Exception):
    """The fork server could not take the run (not started, or no longer there)."""


class Forked:
    """A script forked by the fork server, shaped as asyncio's Process where the runner uses it."""

    def __init__(self, pid: int, stdout: asyncio.StreamReader, stderr: asyncio.StreamReader,
                 exited: asyncio.Future[int]) -> None:  # fmt: skip
        self.pid = pid
        self.stdout = stdout
        self.stderr = stderr
        self._exited = exited

    @property
    def returncode(self) -> int | None:
        return self._exited.result() if self._exited.done() else None

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)


class ForkServer:
    """The daemon's end of scripts/_lib/zygote.py: one process, a SOCK_SEQPACKET socket to it."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self.startup: dict[str, str] = {}
        self.ids = itertools.count()
        # request id -> the child's pid and its exit code to come; pid -> the exit code to come.
        self.started: dict[int, asyncio.Future[tuple[int, asyncio.Future[int]]]] = {}
        self.exits: dict[int, asyncio.Future[int]] = {}
        self.gone = False
        self.closing = False

    async def start(self, env: Mapping[str, str]) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                # -P: the daemon's folder is not put on sys.path (as -m alone would): the fork
                # server finds the scripts' package where a script run as a file finds it.
                sys.executable, "-P", "-m", ZYGOTE, str(theirs.fileno()),
                env=dict(env), pass_fds=(theirs.fileno(),), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        except Exception:
            ours.close()
            self.gone = True
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self.sock = ours
        self.startup = _startup(env)
        asyncio.get_running_loop().add_reader(ours, self._read)

    def fits(self, argv: Sequence[str], env: Mapping[str, str]) -> bool:
        """A `python script.py ...` run whose interpreter would start as the fork server's did."""
        return (
            len(argv) >= 2
            and argv[0] == sys.executable
            and argv[1].endswith(".py")
            and (self.sock is None or _startup(env) == self.startup)
        )

    async def spawn(self, argv: Sequence[str], env: Mapping[str, str]) -> Forked:
        """Forks `argv[1:]` (the script and its arguments) with `env`; ForkServerGone when it can't."""
        if self.sock is None or self.gone:
            raise ForkServerGone
        loop = asyncio.get_running_loop()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        request = next(self.ids)
        started = self.started[request] = loop.create_future()
        try:
            message = {"id": request, "argv": list(argv[1:]), "env": dict(env), "cwd": os.getcwd()}
            socket.send_fds(self.sock, [json.dumps(message).encode()], [out_w, err_w])
        except OSError as exc:
            self.started.pop(request, None)
            for fd in (out_r, err_r):
                os.close(fd)
            self._gone()
            raise ForkServerGone from exc
        finally:
            os.close(out_w)
            os.close(err_w)
        try:
            pid, exited = await started
        except ForkServerGone:
            for fd in (out_r, err_r):
                os.close(fd)
            raise
        return Forked(pid, await _reader(out_r), await _reader(err_r), exited)

    def _read(self) -> None:
        assert self.sock is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._gone()
                return
            message = json.loads(data)
            if "code" in message:
                exited = self.exits.pop(message["pid"], None)
                if exited is not None and not exited.done():
                    exited.set_result(int(message["code"]))
                continue
            exited = self.exits[message["pid"]] = loop.create_future()
            started = self.started.pop(message["id"], None)
            if started is not None and not started.done():
                started.set_result((message["pid"], exited))

    def _gone(self) -> None:
        """The fork server ended: runs waiting to start are refused, forked ones are ended."""
        if self.gone:
            return
        self.gone = True
        if self.sock is not None and not self.closing:
            get_logger().warning(
                "script_fork_server_gone", detail="scripts start as new interpreters from now on"
            )
        if self.sock is not None:
            asyncio.get_running_loop().remove_reader(self.sock)
        for started in self.started.values():
            if not started.done():
                started.set_exception(ForkServerGone())
        self.started.clear()
        for pid, exited in self.exits.items():
            if not exited.done():
                kill_group(pid)  # it dies with the fork server anyway (parent.py); now, for sure
                exited.set_result(-signal.SIGKILL)
        self.exits.clear()

    async def close(self) -> None:
        self.closing = True
        self._gone()
        if self.sock is not None:
            self.sock.close()  # the fork server's read ends: it exits
        if self.proc is not None and self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                kill_group(self.proc.pid)
                await self.proc.wait()


def _startup(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if _STARTUP.fullmatch(k)}


async def _reader(fd: int) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_READ_LIMIT, loop=loop)
    pipe = os.fdopen(fd, "rb", buffering=0)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe)
    return reader


class SubprocessRunner:
    def __init__(self, pid_dir: Path, *, fork_server: bool = True) -> None:
        self.pid_dir = pid_dir
        # Linux only: PR_SET_PDEATHSIG ties a forked script to the fork server (parent.py), and
        # macOS's system frameworks refuse to run in a forked child.
        use = fork_server and sys.platform.startswith("linux")
        self.fork = ForkServer() if use else None
        self.starting: asyncio.Lock | None = None

    async def _spawn(
        self, argv: Sequence[str], env: Mapping[str, str]
    ) -> tuple[asyncio.subprocess.Process | Forked, str]:
        """The script's process, and what its pidfile names it by (its command line holds that)."""
        fork = self.fork
        if fork is not None and not fork.gone and fork.fits(argv, env):
            self.starting = self.starting or asyncio.Lock()
            async with self.starting:
                if fork.sock is None and not fork.gone:
                    try:
                        await fork.start({k: v for k, v in env.items() if k != "NVD_PARENT_PID"})
                    except Exception as exc:  # scripts start as new interpreters instead
                        get_logger().warning("script_fork_server_not_started", error=str(exc)[:300])
            if fork.fits(argv, env):
                with contextlib.suppress(ForkServerGone):
                    return await fork.spawn(argv, env), ZYGOTE
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=dict(env),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        return proc, argv[1] if len(argv) > 1 else argv[0]

    async def close(self) -> None:
        if self.fork is not None:
            await self.fork.close()

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
        # The script dies with this daemon; a crash test's script that kills "its daemon" kills this one.
        daemon = str(os.getpid())
        proc, named = await self._spawn(argv, {**env, "NVD_PARENT_PID": daemon, "NVD_DAEMON_PID": daemon})
        pidfile = self._write_pidfile(proc.pid, label, named, argv[1] if len(argv) > 1 else argv[0])
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
        self, proc: asyncio.subprocess.Process | Forked, outcome: ScriptOutcome, on_event: EventHook
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

    def _write_pidfile(self, pid: int, label: str, script: str, file: str) -> Path:
        """`script`: what the process's command line names now (the fork server's module for a
        forked run); `file`: the script, which a forked run that started afresh (its code changed
        since the fork server loaded it) names instead."""
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        path = self.pid_dir / f"{pid}.json"
        path.write_text(
            json.dumps(
                {"pgid": pid, "daemon_pid": os.getpid(), "label": label, "script": script, "file": file}
            )
        )
        return path


async def _read_stderr(proc: asyncio.subprocess.Process | Forked, tail: deque[str]) -> None:
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
        pgid = int(info["pgid"])
        names = {str(info.get("script", "")), str(info.get("file", "") or info.get("script", ""))}
        if _alive(pgid) and any(_is_our_script(pgid, name) for name in names):
            kill_group(pgid)
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
