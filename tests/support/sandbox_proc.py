"""Runs the sandbox as a real subprocess for tests, benchmarks and the chaos run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx


class SandboxProcess:
    def __init__(self, state_dir: Path, *extra_args: str) -> None:
        self.state_dir = state_dir
        self.extra_args = extra_args
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self, port: int = 0) -> SandboxProcess:
        cmd = [
            sys.executable,
            "-m",
            "sandbox",
            "serve",
            "--state",
            str(self.state_dir),
            "--port",
            str(port),
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=os.environ.copy())
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"sandbox did not start (exit {self.proc.wait()})")
        self.url = json.loads(line)["url"]
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()

    def restart(self) -> None:
        port = int(self.url.rsplit(":", 1)[1])
        self.stop()
        self.start(port)

    # Control API -------------------------------------------------------------------------------------
    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(self.url + path, params=params, timeout=30)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: Any) -> Any:
        r = httpx.post(self.url + path, json=body, timeout=30)
        r.raise_for_status()
        return r.json()

    def calls(self, provider: str | None = None) -> list[dict[str, Any]]:
        params = {"provider": provider} if provider else {}
        return list(self.get("/_sandbox/calls", **params)["calls"])

    def file_sends(self) -> Counter[str]:
        """Notion file upload sends that reached the handler (taken or refused), per upload id."""
        return Counter(
            str(c["identity"]) for c in self.calls("notion") if str(c["endpoint"]).endswith("/send")
        )

    def stats(self) -> dict[str, Any]:
        return dict(self.get("/_sandbox/stats"))

    def fault(self, **spec: Any) -> None:
        self.post("/_sandbox/faults", spec)

    def clear_faults(self) -> None:
        httpx.delete(self.url + "/_sandbox/faults", timeout=30).raise_for_status()

    def configure(self, **values: Any) -> dict[str, Any]:
        return dict(self.post("/_sandbox/config", values))

    def base(self, provider: str) -> str:
        return f"{self.url}/{provider}"
