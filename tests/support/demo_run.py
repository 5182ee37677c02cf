"""One `python -m daemon demo` run, shared by the acceptance tests that judge a demo (test_demo.py,
test_secrets.py): made with recognisable keys, and with providers and Notion quoting those keys in
an error answer each, so the same run shows both a finished video and that no key leaks."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from daemon.settings import DEFAULT_HTTP_PORT

# The tests that judge the shared run go to one worker under pytest-xdist (--dist loadgroup), so the
# demo runs once per `make test`.
SHARED_DEMO = pytest.mark.xdist_group("demo")
MARK = uuid.uuid4().hex[:10]
# Shaped like the real ones, each with a mark no other text contains.
KEYS = {
    "notion_token": f"ntn_LEAKCANARY{MARK}notiontoken0123456789",
    "notion_operator_token": f"ntn_op_LEAKCANARY{MARK}operator01",
    "gemini_api_key": f"AIzaLEAKCANARY{MARK}gemini0123456789",
    "kling_access_key": f"ak_LEAKCANARY{MARK}access01",
    "kling_secret_key": f"sk_LEAKCANARY{MARK}klingsecret0123456789",
    "elevenlabs_api_key": f"sk_LEAKCANARY{MARK}elevenlabs0123456789",
    "youtube_client_secret": f"GOCSPX-LEAKCANARY{MARK}youtube01",
}
# Error answers that quote keys, as some providers quote the key they refused. Each is answered once
# and passes (429, 503): the daemon retries, and must repeat the key nowhere.
ECHOES = [
    {
        "provider": "elevenlabs",
        "status": 429,
        "code": "too_many_concurrent_requests",
        "message": f"busy; key {KEYS['elevenlabs_api_key']} (kling {KEYS['kling_access_key']})",
    },
    {
        "provider": "notion",
        "status": 503,
        "code": "service_unavailable",
        "endpoint": "^GET /notion/v1/pages/",
        "message": f"unavailable for the integration {KEYS['notion_token']}",
    },
]


@dataclass
class DemoRun:
    workspace: Path  # WORKSPACE_DIR as the newcomer's shell had it
    first: subprocess.CompletedProcess[str]

    @property
    def state(self) -> Path:
        """The sandbox's state folder (its keys, Notion pages, call log)."""
        return self.workspace / "demo" / "sandbox"

    @property
    def database(self) -> Path:
        return self.workspace / "demo" / "workspace" / "daemon.db"

    @property
    def log(self) -> Path:
        """The file the first run's daemon log went to, as its output names it."""
        said = "demo: the daemon's log (JSON lines) goes to "
        named = next(line for line in self.first.stdout.splitlines() if line.startswith(said))
        return Path(named[len(said) :])

    def again(self) -> subprocess.CompletedProcess[str]:
        return run_demo(self.workspace)


def run_demo(workspace: Path) -> subprocess.CompletedProcess[str]:
    """`python -m daemon demo` as a newcomer runs it: no keys, URLs or ports of their own in the
    environment, on a host where a daemon holds the default HTTP port (8080)."""
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_KEY", "_TOKEN", "_URL"))}
    for port in ("HTTP_PORT", "PORT"):
        env.pop(port, None)
    env["WORKSPACE_DIR"] = str(workspace)
    with _held(DEFAULT_HTTP_PORT):
        return subprocess.run(
            [sys.executable, "-m", "daemon", "demo"], capture_output=True, text=True, env=env, timeout=400
        )


@contextlib.contextmanager
def _held(port: int) -> Iterator[None]:
    """127.0.0.1:port listened on while the block runs (when something else holds it, it is taken
    anyway)."""
    try:
        server = socket.create_server(("127.0.0.1", port))
    except OSError:
        yield
        return
    with server:
        yield


def first_demo(workspace: Path) -> DemoRun:
    """The demo's sandbox is given our keys before it starts (it keeps the keys it finds, see
    sandbox/credentials.py), and the ECHOES faults as soon as it listens."""
    state = workspace / "demo" / "sandbox"
    state.mkdir(parents=True)
    (state / "credentials.json").write_text(json.dumps(KEYS))
    stop = threading.Event()
    echo = threading.Thread(target=_echo_keys_once_ready, args=(state, stop), daemon=True)
    echo.start()
    try:
        done = run_demo(workspace)
    finally:
        stop.set()
        echo.join(5)
    return DemoRun(workspace, done)


def _echo_keys_once_ready(state: Path, stop: threading.Event) -> None:
    info = state / "server.json"
    while not stop.is_set():
        if info.exists():
            try:
                url = json.loads(info.read_text())["url"]
                httpx.post(f"{url}/_sandbox/faults", json=[{**e, "count": 1} for e in ECHOES], timeout=5)
                return
            except (ValueError, KeyError, httpx.HTTPError):
                pass  # the file is being written, or the server not yet listening
        time.sleep(0.05)
