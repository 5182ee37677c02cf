"""Builds the sandbox with every provider and serves it."""

from __future__ import annotations

import importlib
import json
import os
from http.server import ThreadingHTTPServer
from pathlib import Path

from sandbox import control
from sandbox.app import Sandbox
from sandbox.config import SandboxConfig
from sandbox.http import make_server

# Provider modules, each with register(app). Imported by name so one missing piece names itself.
PROVIDER_MODULES = (
    "sandbox.notion",
    "sandbox.gemini",
    "sandbox.kling",
    "sandbox.elevenlabs",
    "sandbox.youtube",
    "sandbox.media",
)


def build(state_dir: Path, config: SandboxConfig | None = None) -> Sandbox:
    app = Sandbox(state_dir, config)
    control.register(app)
    for name in PROVIDER_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(app)
    return app


def start(
    state_dir: Path, host: str = "127.0.0.1", port: int = 0, config: SandboxConfig | None = None
) -> tuple[Sandbox, ThreadingHTTPServer]:
    app = build(state_dir, config)
    server = make_server(host, port, app.dispatch)
    app.base_url = f"http://{host}:{server.server_address[1]}"
    info = {"url": app.base_url, "pid": os.getpid()}
    (state_dir / "server.json").write_text(json.dumps(info))
    return app, server
