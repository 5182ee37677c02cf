"""`nvd demo`: the whole product on a laptop with no accounts.

Starts the sandbox as a child process (its state under the workspace), seeds a sample channel and a
project through the sandbox's Notion API, sets the project Queued as an operator would, runs the
daemon until the video is made (review gates approved automatically, and said so), prints each
status change with its progress line, and the MP4's path last. Run again after an interruption, it
resumes the same project. Its daemon's HTTP listener takes a free port (8080, the default, is a
daemon's on a host that runs one) unless HTTP_PORT or PORT says otherwise, and the demo prints where.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from daemon import logs
from daemon.app import App, install_signal_handlers
from daemon.db.models import Item, Task
from daemon.demo_view import Snapshot, snapshot, view_for
from daemon.envfile import read_env_file
from daemon.errors import DaemonError
from daemon.migrate import upgrade_url
from daemon.monitor.listener import url_of
from daemon.notion.board import find_section
from daemon.notion.body import children
from daemon.notion.gateway import NotionApi
from daemon.notion.props import option_name, plain_text
from daemon.settings import Settings
from daemon.youtube import accounts
from daemon.youtube.signin import sign_in
from services.states import TaskState

CHANNEL = "nature"
SCENES = 4
TIMEOUT_S = 900


def say(text: str) -> None:
    print(text, flush=True)


# What the demo needs beyond the daemon: the sandbox's package (in the wheel) and the `sandbox`
# extra's eSpeak NG for its speech. Without them the demo would fail halfway, at the first narration.
SANDBOX_MODULES = ("sandbox", "espeakng_loader")


def require_sandbox() -> None:
    """Stops the demo before it starts when the sandbox cannot run, naming the install that fixes it."""
    missing = [name for name in SANDBOX_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise DaemonError(
            f"the demo runs the local sandbox, which needs the `sandbox` extra ({', '.join(missing)} "
            "not installed): pip install 'notion-video-daemon[sandbox]' (in a checkout, `make demo` "
            "installs it)"
        )


class SandboxChild:
    """The sandbox as a child process; the daemon never imports it, it only speaks its APIs."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> str:
        self.state.mkdir(parents=True, exist_ok=True)
        log = (self.state / "sandbox.log").open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "serve", "--state", str(self.state), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        log.close()
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise DaemonError(f"the sandbox did not start; see {self.state / 'sandbox.log'}")
        self.url = str(json.loads(line)["url"])
        return self.url

    def seed(self, projects: int) -> dict[str, Any]:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "sandbox",
                "seed",
                "--state",
                str(self.state),
                "--channel",
                CHANNEL,
                "--projects",
                str(projects),
                "--scenes",
                str(SCENES),
                "--url",
                self.url,
                "--youtube",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise DaemonError(f"seeding the sandbox failed: {done.stderr.strip()}")
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


async def run_demo(workspace: Path) -> int:
    require_sandbox()
    demo = workspace / "demo"
    sandbox = SandboxChild(demo / "sandbox")
    marker = demo / "demo.json"
    started = time.monotonic()
    # The daemon's log goes to a file of this run's own: the terminal is the progress view's.
    log_path = demo / "workspace" / "logs" / time.strftime("demo-%Y%m%d-%H%M%S.jsonl", time.gmtime())
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("a", encoding="utf-8")
    logs.configure([], stream=log)
    secrets: list[str] = []
    say(
        "demo: starting the local sandbox of Notion, Gemini, Kling, ElevenLabs and YouTube "
        f"(state in {sandbox.state})"
    )
    say(f"demo: the daemon's log (JSON lines) goes to {log_path}")
    try:
        sandbox.start()
        known = json.loads(marker.read_text()) if marker.exists() else {}
        seeded = sandbox.seed(0 if known.get("page_id") else 1)
        page_id = known.get("page_id") or seeded["page_ids"][0]
        marker.write_text(json.dumps({"page_id": page_id}))
        say(f"demo: watch the page (as Notion would show it) at {sandbox.url}/_sandbox/pages/{page_id}")
        for key, value in read_env_file(sandbox.state / "daemon.env").items():
            os.environ[key] = value  # the sandbox's addresses and keys win over the caller's
        os.environ["WORKSPACE_DIR"] = str(demo / "workspace")
        os.environ.pop("DATABASE_URL", None)
        settings = Settings(demo_auto_approve=True, notion_poll_s=1.0, claim_poll_s=0.2, lease_ttl_s=15.0)
        if settings.http_port is None and settings.port is None:
            # Not the default 8080: on a host that runs the daemon, the daemon holds it.
            settings = settings.model_copy(update={"http_port": _free_port()})
        # The redactor was set up before these keys existed: it must know them from now on.
        secrets = [*settings.secret_values(), os.environ.get("NOTION_OPERATOR_TOKEN", "")]
        logs.configure(secrets, level=settings.log_level, stream=log)
        await upgrade_url(settings.sqlalchemy_url)
        await _sign_in(settings)
        video = await _produce(settings, page_id, started)
    finally:
        sandbox.stop()
        logs.configure(secrets)  # back to stderr, before the file closes
        log.close()
    if video is None:
        say(f"demo: the daemon's log is in {log_path}")
        return 1
    say(f"demo: done in {time.monotonic() - started:.0f} s; the daemon's log is in {log_path}")
    say(
        f"demo: to open the page again: {sys.executable} -m sandbox serve --state {sandbox.state} "
        f"--port 8765, then http://127.0.0.1:8765/_sandbox/pages/{page_id}"
    )
    say(str(video))
    return 0


def _free_port() -> int:
    """A port no program listens on now, for the demo daemon's HTTP listener."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _sign_in(settings: Settings) -> None:
    """The channel signs in to the sandbox's YouTube through the real consent flow; the demo plays
    the browser (the sandbox's Google account consents at once and redirects to the loopback)."""
    app = await App.build(settings, check=False)
    try:
        key = settings.token_key.get_secret_value() if settings.token_key else None
        if await accounts.load(app.engine, key, CHANNEL) is not None:
            return

        def browse(text: str) -> None:
            url = next(line.strip() for line in text.splitlines() if line.strip().startswith("http"))
            threading.Thread(
                target=httpx.get, args=(url,), kwargs={"follow_redirects": True}, daemon=True
            ).start()

        title = await sign_in(
            app.engine, settings, app.channels[CHANNEL], say=browse, read_line=None, timeout_s=30
        )
        say(
            f"demo: channel {CHANNEL} signed in to the sandbox's YouTube ({title}), as `nvd "
            f"youtube-auth --channel {CHANNEL}` does with a browser"
        )
    finally:
        await app.close()


async def _produce(settings: Settings, page_id: str, started: float) -> Path | None:
    operator = NotionApi(os.environ["NOTION_OPERATOR_TOKEN"], settings.notion_base_url)
    app = await App.build(settings)
    stop = asyncio.Event()
    install_signal_handlers(stop)
    try:
        page = await operator.call("GET", f"pages/{page_id}")
        title = plain_text(page["properties"].get("Title"))
        status = option_name(page["properties"].get("Status"))
        if status not in ("Ready", "Published"):
            if status in ("Draft", "Error", "Cancelled", "Paused", None):
                await operator.call(
                    "PATCH",
                    f"pages/{page_id}",
                    body={"properties": {"Status": {"select": {"name": "Queued"}}}},
                )
                say(f"demo: project '{title}' set to Queued, as an operator would in Notion")
            else:
                say(f"demo: resuming project '{title}' (Status {status})")
        say("demo: review gates are approved automatically in demo mode")
        listen = settings.http_listen()
        if listen is not None:
            url = url_of(listen[0], listen[1])
            say(f"demo: the daemon's metrics, while it runs: {url}/metrics (health: {url}/healthz)")
        runner = asyncio.create_task(app.run(stop), name="daemon")
        try:
            return await _watch(app, operator, page_id, stop, runner, started)
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await runner
    finally:
        await operator.close()
        await app.close()


WATCH_S = 0.1  # how often the demo's view reads the project (one small query of the local DB)


async def _watch(
    app: App,
    operator: NotionApi,
    page_id: str,
    stop: asyncio.Event,
    runner: asyncio.Task[None],
    started: float,
) -> Path | None:
    view = view_for(sys.stdout)
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while time.monotonic() < deadline and not stop.is_set():
            if runner.done():
                view.close()
                runner.result()
                return None
            task, snap = await _snapshot(app, page_id)
            if task is not None:
                view.update(snap, time.monotonic() - started)
                if task.state == TaskState.ERROR:
                    view.close()
                    say(f"demo: the project stopped: {task.error}")
                    return None
                if task.state == TaskState.DONE:
                    view.close()
                    return await _finish(app, operator, page_id, task)
            # Often: the view prints each Status the project takes, and with scripts forked warm
            # the storyboard's Planning can last under a second (half-second looks missed it).
            await asyncio.sleep(WATCH_S)
    finally:
        view.close()
    say("demo: stopped before the video was finished; run it again to resume")
    return None


async def _snapshot(app: App, page_id: str) -> tuple[Any, Snapshot]:
    """The project's task and what the view shows of it (None and an empty view before intake)."""
    async with app.engine.connect() as conn:
        task = (await conn.execute(select(Task).where(Task.notion_page_id == page_id))).first()
        if task is None:
            return None, snapshot("active", [])
        rows = await conn.execute(
            select(Item.kind, Item.state, Item.cost_micros, Item.input).where(Item.task_id == task.id)
        )
        return task, snapshot(task.state, [tuple(row) for row in rows])


async def _shows_video(operator: NotionApi, page_id: str) -> bool:
    """The page's Video section holds the final cut."""
    blocks = await children(operator, page_id)
    _, video = find_section(blocks, "Video")
    return any(b.get("type") == "video" for b in video)


async def _finish(app: App, operator: NotionApi, page_id: str, task: Any) -> Path:
    """Waits until the page itself shows the video done (Published, with its YouTube URL) and the
    final cut, then reports what the operator sees there."""
    for _ in range(120):
        page = await operator.call("GET", f"pages/{page_id}")
        props = page["properties"]
        status = option_name(props.get("Status"))
        if status in ("Ready", "Published", "Scheduled") and await _shows_video(operator, page_id):
            cost = props.get("Cost", {}).get("number") or 0
            say(f"Notion page: Status {status} · {plain_text(props.get('Progress'))} · Cost ${cost:.2f}")
            say("Notion page: the images, the frames, the clips and the final cut are in its body")
            youtube = (props.get("YouTube URL") or {}).get("url")
            if youtube:
                say(f"Notion page: YouTube URL {youtube} (the video, its thumbnail and its captions)")
            break
        await asyncio.sleep(1)
    return (app.settings.workspace_dir / str(task.final_video_path)).resolve()
