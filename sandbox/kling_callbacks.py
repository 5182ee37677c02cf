"""Kling's callbacks: the task's data POSTed to its `callback_url` when its status changes, signed
the Standard Webhooks way (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64
HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`; the sandbox signs with the account's secret key).

Statuses follow the clock, so there is no event to hang a callback on: a watcher thread compares
each task's status with the last one delivered (kept in the task, so a restart does not resend).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

SWEEP_SECONDS = 0.1
ATTEMPTS = 5  # deliveries of one status before giving up, with doubling waits
_TIMEOUT = 5.0

Task = dict[str, Any]


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class Notifier:
    def __init__(
        self,
        secret: str,
        tasks: Callable[[], list[Task]],
        view: Callable[[Task], dict[str, Any]],
        delivered: Callable[[str, str], None],
    ) -> None:
        self._secret = secret
        self._tasks = tasks
        self._view = view
        self._delivered = delivered
        self._retries: dict[tuple[str, str], tuple[int, float]] = {}  # (task, status) -> (tries, next try)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        """Starts watching (once): called when a task with a callback_url exists."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="kling-callbacks", daemon=True)
                self._thread.start()

    def _watch(self) -> None:
        while True:
            time.sleep(SWEEP_SECONDS)
            for task in self._tasks():
                if task.get("callback_url"):
                    self._notify(task)

    def _notify(self, task: Task) -> None:
        data = self._view(task)
        status = data["task_status"]
        if task.get("notified") == status:
            return
        key = (task["task_id"], status)
        tries, next_try = self._retries.get(key, (0, 0.0))
        if tries >= ATTEMPTS or time.time() < next_try:
            return
        if self._post(task["callback_url"], task["task_id"], data):
            self._retries.pop(key, None)
            self._delivered(task["task_id"], status)
        else:
            self._retries[key] = (tries + 1, time.time() + 0.5 * 2**tries)

    def _post(self, url: str, task_id: str, data: dict[str, Any]) -> bool:
        body = json.dumps(data, separators=(",", ":")).encode()
        message_id = f"{task_id}-{data['task_status']}"
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(self._secret, message_id, timestamp, body),
        }
        try:
            response = httpx.post(url, content=body, headers=headers, timeout=_TIMEOUT)
        except httpx.HTTPError as exc:
            print(f"sandbox kling callback to {url} failed: {exc}", file=sys.stderr, flush=True)
            return False
        return response.is_success
