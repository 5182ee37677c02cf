"""Notion's webhooks, as a subscription of the integration sees them (API version 2025-09-03).

Setting `notion_webhook_url` (POST /_sandbox/config) makes the subscription: its verification
request, `{"verification_token": ...}` unsigned, goes to the URL at once. From then on every page
created, every change to a page's properties and every block added, changed or removed through the
API is POSTed there as an event, signed like Notion's: `X-Notion-Signature: sha256=<hex
HMAC-SHA256 of the body, keyed with the verification token>`. The token is the state's
`notion_webhook_token` (credentials.json), as the operator would copy it from Notion.

Events carry their author (the integration's bot or the operator, whoever made the change) and, for
a page in a data source, `data.parent` = the database's id and type with the `data_source_id`.
Handlers note events while they run; only a call that succeeds sends them, from one background
thread, so the API's answer never waits. A delivery that fails (no answer, or not 2xx) is tried
again with doubling waits, `attempt_number` counting up, and dropped after ATTEMPTS, as Notion does
(it tries up to 8 times over hours).
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

ATTEMPTS = 4
FIRST_RETRY_S = 0.25  # then 0.5 s, 1 s
TIMEOUT_S = 5.0

Event = dict[str, Any]


def signature(token: str, body: bytes) -> str:
    return "sha256=" + hmac.new(token.encode(), body, hashlib.sha256).hexdigest()


class Webhooks:
    """Events noted by the running handler, sent once it has succeeded."""

    def __init__(self, url: Callable[[], str], token: str, bot_id: str, workspace_id: str) -> None:
        self._url = url
        self._token = token
        self._bot_id = bot_id
        self._workspace_id = workspace_id
        self._pending: list[Event] = []  # the current call's events (handlers run one at a time)
        self._queue: list[tuple[float, int, str, Event | None, bytes | None, int]] = []
        self._seq = itertools.count()
        self._wakeup = threading.Condition()
        self._thread: threading.Thread | None = None
        # Events delivered, deliveries that failed (each try), events given up; the same for the
        # verification requests.
        self._counts = dict.fromkeys(
            ("sent", "failed", "dropped", "verified", "verify_failed", "verify_dropped"), 0
        )

    # Noting events (under the store's lock, inside a handler) ------------------------------------------
    def begin(self) -> None:
        self._pending = []

    def take(self) -> list[Event]:
        events, self._pending = self._pending, []
        return events

    def page_created(self, page: dict[str, Any], actor: str) -> None:
        self._note("page.created", page, actor, {})

    def properties_updated(self, page: dict[str, Any], actor: str, property_ids: list[str]) -> None:
        self._note("page.properties_updated", page, actor, {"updated_properties": property_ids})

    def content_updated(self, page: dict[str, Any], actor: str, block_ids: list[str]) -> None:
        blocks = [{"id": b, "type": "block"} for b in block_ids]
        self._note("page.content_updated", page, actor, {"updated_blocks": blocks})

    def page_trashed(self, page: dict[str, Any], actor: str, trashed: bool) -> None:
        self._note("page.deleted" if trashed else "page.undeleted", page, actor, {})

    def _note(self, kind: str, page: dict[str, Any], actor: str, data: dict[str, Any]) -> None:
        if not self._url():
            return
        self._pending.append(
            {
                "id": str(uuid.uuid4()),
                "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "workspace_id": self._workspace_id,
                "subscription_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox-subscription:{self._url()}")),
                "integration_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox-integration:{self._bot_id}")),
                "type": kind,
                "authors": [{"id": actor, "type": "bot" if actor == self._bot_id else "person"}],
                "attempt_number": 1,
                "entity": {"id": page["id"], "type": "page"},
                "data": {"parent": self._parent(page), **data},
            }
        )

    def _parent(self, page: dict[str, Any]) -> dict[str, Any]:
        parent = page.get("parent") or {}
        kind = parent.get("type")
        if kind == "data_source_id":
            return {
                "id": parent["database_id"],
                "type": "database",
                "data_source_id": parent["data_source_id"],
            }
        if kind in ("page_id", "block_id"):
            return {"id": parent[kind], "type": kind.removesuffix("_id")}
        return {"id": self._workspace_id, "type": "space"}

    # Sending (outside the lock) -----------------------------------------------------------------------
    def send(self, events: list[Event]) -> None:
        url = self._url()
        for event in events:
            self._enqueue(url, event, None, 1)

    def verify(self, url: str) -> None:
        """The new subscription's verification request (unsigned: it carries the token itself)."""
        body = json.dumps({"verification_token": self._token}).encode()
        self._enqueue(url, None, body, 1)

    def stats(self) -> dict[str, int]:
        with self._wakeup:
            return dict(self._counts)

    def _enqueue(
        self, url: str, event: Event | None, raw: bytes | None, attempt: int, due: float = 0.0
    ) -> None:
        if not url:
            return
        with self._wakeup:
            heapq.heappush(self._queue, (due, next(self._seq), url, event, raw, attempt))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._deliver_forever, name="notion-webhooks", daemon=True
                )
                self._thread.start()
            self._wakeup.notify()

    def _deliver_forever(self) -> None:
        while True:
            with self._wakeup:
                while not self._queue or self._queue[0][0] > time.time():
                    wait = self._queue[0][0] - time.time() if self._queue else None
                    self._wakeup.wait(wait)
                _, _, url, event, raw, attempt = heapq.heappop(self._queue)
            self._deliver(url, event, raw, attempt)

    def _deliver(self, url: str, event: Event | None, raw: bytes | None, attempt: int) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": "notion-api (sandbox)"}
        if event is not None:
            raw = json.dumps({**event, "attempt_number": attempt}, separators=(",", ":")).encode()
            headers["X-Notion-Signature"] = signature(self._token, raw)
        assert raw is not None
        try:
            answer = httpx.post(url, content=raw, headers=headers, timeout=TIMEOUT_S)
            ok, why = answer.is_success, f"HTTP {answer.status_code}"
        except httpx.HTTPError as exc:
            ok, why = False, type(exc).__name__
        with self._wakeup:
            prefix = "verify_" if event is None else ""
            if ok:
                self._counts["verified" if event is None else "sent"] += 1
                return
            self._counts[prefix + "failed"] += 1
            if attempt >= ATTEMPTS:
                self._counts[prefix + "dropped"] += 1
        if attempt >= ATTEMPTS:
            what = "verification request" if event is None else f"{event['type']} event"
            print(f"sandbox: Notion webhook {what} to {url} dropped after {attempt} tries ({why})",
                  file=sys.stderr, flush=True)  # fmt: skip
            return
        retry_at = time.time() + FIRST_RETRY_S * 2 ** (attempt - 1)
        self._enqueue(url, event, raw if event is None else None, attempt + 1, retry_at)
