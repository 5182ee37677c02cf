"""A warm interpreter the daemon starts its scripts from (daemon/runner.py, `ForkServer`).

A script's own work is one provider call, yet a fresh interpreter spends about 0.13 s of CPU
importing httpx, Pillow and the shared helpers before it makes it: on a busy 2-core machine that
is the longest part of a short step, and it is paid again by every step. This process imports them
once, then forks a child for each run. The child becomes the script exactly as
`python script.py ARGS` would start it: its own session (process group), the run's environment
only, its folder, stdin from /dev/null, stdout and stderr on the pipes the daemon reads, `sys.argv`
and `sys.path[0]` as the interpreter sets them, and the script's exit code. It shares nothing with
another run but the modules already imported (copy-on-write pages): each run is still one short
process that knows nothing of the one before.

The protocol, on a SOCK_SEQPACKET Unix socket (one message per datagram, JSON):
  daemon -> here: {"id", "argv": [script, args...], "env", "cwd"} with the run's stdout and stderr
                  write ends attached (SCM_RIGHTS);
  here -> daemon: {"id", "pid"} once the child exists, then {"pid", "code"} when it has exited
                  (code as asyncio reports it: negative for a signal).
The socket's end (the daemon gone or done) ends this process; each child then dies with it as a
script dies with its daemon (scripts/_lib/parent.py: the child's parent is this process).

Code changed under a running daemon (a `git pull`, a reinstall, before the restart): a child whose
preloaded modules' files are no longer the ones loaded would run the new script on the old helpers.
It checks their modification times first (about a millisecond) and, when any differs, replaces
itself with a new interpreter (`exec`), which starts the script as it is now on disk.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib
import json
import os
import runpy
import selectors
import signal
import socket
import sys
import traceback
from typing import Any

from scripts._lib.errors import EXIT_TRANSIENT

# What scripts import (the heavy part of their start-up): the libraries, and every shared helper
# (each is a few milliseconds; together they are most of what a script loads before its call). A
# module that fails to import here is left to the script, which reports it as it would alone.
PRELOAD = (
    "httpx",
    "PIL.Image",
    "yaml",
    # What the scripts' calls load on first use: reading a PNG or JPEG, prices as Decimals, a URL's
    # host name encoded (about 10 ms together).
    "PIL.PngImagePlugin",
    "PIL.JpegImagePlugin",
    "decimal",
    "fractions",
    "encodings.idna",
    "pkgutil",
    *(
        f"scripts._lib.{name}"
        for name in (
            "assembly", "audio", "captions", "cli", "crash", "elevenlabs", "env", "errors", "ffmpeg",
            "files", "gemini", "http", "keying", "kling", "output", "parent", "pricing", "storyboard",
            "thumbnail", "youtube",
        )
    ),
)  # fmt: skip
MAX_MESSAGE = 1 << 20
PR_SET_NAME = 15


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    with contextlib.suppress(ImportError):
        importlib.import_module("scripts._lib.http").preload()  # the transport a client loads
    loaded = _sources()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            if key.fileobj is control:
                try:
                    data, fds, _, _ = socket.recv_fds(control, MAX_MESSAGE, 2)
                except OSError:  # the daemon was killed with requests unread: its end reset
                    return
                if not data:
                    return  # the daemon closed its end (or is gone)
                request = json.loads(data)
                pid = os.fork()
                if pid == 0:
                    _become(request, fds, (control.fileno(), wake_r, wake_w), loaded)
                for fd in fds:
                    os.close(fd)
                _send(control, {"id": request["id"], "pid": pid})
            else:
                os.read(wake_r, 4096)
                _reap(control)


def _reap(control: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(control, {"pid": pid, "code": os.waitstatus_to_exitcode(status)})


def _send(control: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):  # the daemon is gone: the next read ends this process
        control.send(json.dumps(message).encode())


def _sources() -> dict[str, int]:
    """The file of each module loaded now, and its modification time."""
    found = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path:
            with contextlib.suppress(OSError):
                found[path] = os.stat(path).st_mtime_ns
    return found


def _stale(loaded: dict[str, int]) -> bool:
    """Whether a loaded module's file changed (or went) since it was loaded."""
    for path, mtime in loaded.items():
        try:
            if os.stat(path).st_mtime_ns != mtime:
                return True
        except OSError:
            return True
    return False


def _become(request: dict[str, Any], fds: list[int], ours: tuple[int, ...], loaded: dict[str, int]) -> None:
    """In the child: the script's process, as `python script.py ARGS` starts it. Never returns.
    A failure before the script runs is this process's, not the script's: 75, to be tried again."""
    code = EXIT_TRANSIENT
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in ours:
            os.close(fd)
        stdout, stderr = fds
        devnull = os.open(os.devnull, os.O_RDONLY)
        for source, target in ((devnull, 0), (stdout, 1), (stderr, 2)):
            os.dup2(source, target)
            os.close(source)
        env = dict(request["env"])
        if "NVD_PARENT_PID" in env:
            env["NVD_PARENT_PID"] = str(os.getppid())  # the script dies with its parent: this process
        os.environ.clear()
        os.environ.update(env)
        os.chdir(request["cwd"])
        if _stale(loaded):  # the code changed since this server loaded it: start afresh
            os.execve(sys.executable, [sys.executable, *request["argv"]], env)
        script = request["argv"][0]
        _name(os.path.basename(script).removesuffix(".py"))
        sys.argv = list(request["argv"])
        sys.path[0:0] = [os.path.dirname(os.path.abspath(script))]
        if "random" in sys.modules:
            sys.modules["random"].seed()  # not the sequence every other child of this process has
        code = _run(script)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _name(name: str) -> None:
    """The process's name as `ps -o comm`, top and pgrep show it: the script's, not this server's
    (its full command line stays this server's: `ps -f` shows `-m scripts._lib.zygote`)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def _run(script: str) -> int:
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    main()
