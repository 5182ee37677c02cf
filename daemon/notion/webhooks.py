"""Notion webhooks: the verification handshake, the signature check, and the events that wake intake.

A subscription (made in the integration's settings, pointed at `WEBHOOK_PATH` on the daemon's HTTP
listener) first receives one unsigned POST, `{"verification_token": "secret_..."}`; the operator
pastes that token back into Notion to verify the subscription. Every later event is signed with it:
`X-Notion-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed with the token>`.

The route is mounted only when webhooks are turned on (NOTION_WEBHOOKS=true, or
NOTION_WEBHOOK_SECRET set): anyone who can reach the URL can post to it. The token is the webhook's
secret, and a handshake is unsigned, so no handshake is ever adopted by itself: each new token is
written to `WORKSPACE_DIR/notion-webhook-token.new` (mode 0600; at most one write per
HANDSHAKE_WRITE_S, the newest replacing the one before) and the log says what to do: paste it into
Notion's Verify dialog (Notion accepts only its own token), then adopt it, by moving the file over
`notion-webhook-token` (read again when it changes, no restart) or by setting NOTION_WEBHOOK_SECRET,
which wins over the file. Tokens are never logged and never answered.

Events are a signal only (Notion may aggregate, delay, reorder and repeat them): a page event wakes
an intake of its data source now (NotionJobs.wake), which reads Notion as a poll does. Polling stays
as the reconciler; a lost or refused event costs at most one poll interval.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from daemon.logs import get_logger
from daemon.notion.intake import Source
from daemon.workspace import write_atomic

WEBHOOK_PATH = "/notion/webhook"
TOKEN_FILE = "notion-webhook-token"
SIGNATURE_HEADER = "X-Notion-Signature"
# An event is about 1 KB; a page.content_updated lists its changed blocks, a few hundred at most.
MAX_BODY = 256 * 1024
# A body not read within this long is refused (408): a client trickling bytes would otherwise hold
# the request, and the daemon's stop, open. A Notion event arrives in one packet.
BODY_READ_S = 5.0
# The events that can change what intake would do with a page: its properties (Status, the inputs),
# its body (the Storyboard block), a page made (or moved, or restored) in a data source already in
# an operator status (a duplicate, a template, an automation). Comments and schema changes: no.
WAKING = frozenset(
    {"page.properties_updated", "page.content_updated", "page.created", "page.moved", "page.undeleted"}
)
REFUSAL_LOG_S = 60.0  # refused requests are logged at most once a minute, with the count since
# Handshake tokens written to the .new file at most this often: a flood of them costs one small file
# rewritten once a second, not the disk.
HANDSHAKE_WRITE_S = 1.0


@dataclass(frozen=True)
class Author:
    id: str
    type: str  # person | bot | agent


@dataclass(frozen=True)
class WebhookEvent:
    """What the daemon uses of a Notion event."""

    id: str
    type: str
    entity_id: str
    entity_type: str
    parent: dict[str, Any]
    authors: tuple[Author, ...]
    attempt: int

    @property
    def wakes(self) -> bool:
        return self.type in WAKING and self.entity_type == "page"

    def only_by(self, bot_id: str) -> bool:
        """Whether the integration's own user made every change in this event (our own writes)."""
        return bool(self.authors) and all(a.type == "bot" and a.id == bot_id for a in self.authors)


class BadEvent(ValueError):
    """A signed body that is not a Notion event; the message names the field."""


def parse_event(body: object) -> WebhookEvent:
    if not isinstance(body, dict):
        raise BadEvent("the body must be a JSON object")
    kind = body.get("type")
    if not isinstance(kind, str) or not kind:
        raise BadEvent("type: missing (a Notion event names its type, e.g. page.properties_updated)")
    entity = body.get("entity")
    if not isinstance(entity, dict) or not isinstance(entity.get("id"), str):
        raise BadEvent("entity.id: missing")
    data = body.get("data")
    parent = data.get("parent") if isinstance(data, dict) else None
    authors = body.get("authors")
    attempt = body.get("attempt_number")
    return WebhookEvent(
        id=str(body.get("id") or ""),
        type=kind,
        entity_id=str(entity["id"]),
        entity_type=str(entity.get("type") or ""),
        parent=dict(parent) if isinstance(parent, dict) else {},
        authors=tuple(
            Author(str(a.get("id") or ""), str(a.get("type") or ""))
            for a in (authors if isinstance(authors, list) else [])
            if isinstance(a, dict)
        ),
        attempt=attempt if isinstance(attempt, int) else 1,
    )


def _plain_id(value: object) -> str:
    """Notion ids with or without dashes, compared as 32 lower-case hex digits."""
    return str(value or "").replace("-", "").lower()


def event_sources(event: WebhookEvent, sources: Sequence[Source]) -> list[Source]:
    """The watched data sources an event's page is in. Under API version 2025-09-03 the parent of a
    page in a database names its data source (`data_source_id`, beside the database's `id`); an
    older subscription names the database only, which is matched too. A page under another page is
    in no data source; a parent not given at all could be any."""
    parent = event.parent
    if not parent:
        return list(sources)
    named = parent.get("data_source_id")
    if named:
        return [s for s in sources if _plain_id(s.info.data_source_id) == _plain_id(named)]
    kind, parent_id = parent.get("type"), _plain_id(parent.get("id"))
    if kind == "data_source":
        return [s for s in sources if _plain_id(s.info.data_source_id) == parent_id]
    if kind == "database":
        return [s for s in sources if _plain_id(s.info.database_id) == parent_id]
    return []


def signature(secret: str, body: bytes) -> str:
    """The X-Notion-Signature value of a body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_ok(secret: str, body: bytes, given: str) -> bool:
    return hmac.compare_digest(signature(secret, body).encode(), given.strip().encode("utf-8", "replace"))


class TokenStore:
    """The adopted token, in a 0600 file of the workspace the operator puts there, read again when the
    file changes (adopting a new token with `mv` needs no restart); and the last handshake's token,
    beside it in `.new`, for the operator to check with Notion and adopt."""

    def __init__(self, workspace: Path) -> None:
        self.path = workspace / TOKEN_FILE
        self.new_path = workspace / f"{TOKEN_FILE}.new"
        self._seen: tuple[int, int] | None = None
        self._token: str | None = None

    def read(self) -> str | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._seen, self._token = None, None
            return None
        if self._seen != (stat.st_mtime_ns, stat.st_size):
            self._token = self.path.read_text().strip() or None
            self._seen = (stat.st_mtime_ns, stat.st_size)
        return self._token

    def pending(self) -> str | None:
        """The token waiting in `.new`, if any."""
        try:
            return self.new_path.read_text().strip() or None
        except FileNotFoundError:
            return None

    def set_aside(self, token: str) -> Path:
        """Writes a handshake's token to `.new` for the operator; never to the file in use."""
        write_atomic(self.new_path, token.encode() + b"\n")  # a temporary file made 0600, then renamed
        os.chmod(self.new_path, 0o600)
        return self.new_path


class _Throttle:
    """Counts requests of a kind (refused, repeated or unwritten handshakes) and says so in the log
    at most once per REFUSAL_LOG_S: anyone who can reach the URL can post to it, and the log must
    not fill up with it."""

    def __init__(self) -> None:
        self.count = 0
        self.logged_at = float("-inf")

    def due(self) -> int:
        """The refusals to report now (this one included), or 0 to stay quiet."""
        self.count += 1
        now = time.monotonic()
        if now - self.logged_at < REFUSAL_LOG_S:
            return 0
        count, self.count, self.logged_at = self.count, 0, now
        return count


_NOT_JSON = object()
Sink = Callable[[WebhookEvent], bool]  # True when the event was taken (this daemon leads)


class WebhookReceiver:
    """The aiohttp handler of WEBHOOK_PATH: `listener.add_post(WEBHOOK_PATH, receiver.handle)`."""

    def __init__(
        self,
        workspace: Path,
        secret: str | None,
        sink: Sink,
        *,
        write_every_s: float = HANDSHAKE_WRITE_S,
    ) -> None:
        self.store = TokenStore(workspace)
        self.configured = secret or None  # NOTION_WEBHOOK_SECRET
        self.sink = sink
        self.throttles: dict[str, _Throttle] = {}
        self.write_every_s = write_every_s
        self.written_at = float("-inf")  # the last handshake token written (monotonic)
        self.log = get_logger(job="notion_webhook")

    def secret(self) -> str | None:
        return self.configured or self.store.read()

    async def handle(self, request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(BODY_READ_S):
                body = await _read_body(request)
        except TimeoutError:
            self._refused(
                "slow_body",
                fix=f"a Notion event's body arrives at once; this one took over {BODY_READ_S:g} s",
            )
            return _error(408, f"the body did not arrive within {BODY_READ_S:g} s")
        if body is None:
            return _error(413, f"the body is over {MAX_BODY} bytes; a Notion event is about 1 KB")
        try:
            parsed: object = json.loads(body)
        except ValueError:
            parsed = _NOT_JSON
        if isinstance(parsed, dict) and set(parsed) == {"verification_token"}:
            return self._verification(parsed["verification_token"])
        given = request.headers.get(SIGNATURE_HEADER)
        if given is None:
            self._refused("unsigned", fix=f"every Notion event carries {SIGNATURE_HEADER}")
            return _error(401, f"{SIGNATURE_HEADER} is missing")
        secret = self.secret()
        if secret is None:
            self._refused(
                "no_secret",
                fix="this daemon has no webhook secret yet: verify the subscription in Notion with the "
                f"token in {self.store.new_path}, then move that file over {self.store.path} (or set "
                "NOTION_WEBHOOK_SECRET to the token)",
            )
            return _error(
                401,
                "this daemon has no Notion webhook secret yet: its operator adopts the subscription's "
                "verification token (NOTION_WEBHOOK_SECRET, or the notion-webhook-token file)",
            )
        if not signature_ok(secret, body, given):
            self._refused(
                "bad_signature", fix="check that NOTION_WEBHOOK_SECRET is this subscription's token"
            )
            return _error(401, f"{SIGNATURE_HEADER} does not match the body")
        if parsed is _NOT_JSON:
            return _error(400, "the body is not JSON")
        try:
            event = parse_event(parsed)
        except BadEvent as exc:
            return _error(400, str(exc))
        if not event.wakes:
            self.log.debug("notion_webhook_ignored", type=event.type, entity=event.entity_id)
            return web.json_response({"ok": True})
        taken = self.sink(event)
        self.log.debug(
            "notion_webhook_event", type=event.type, page=event.entity_id, attempt=event.attempt, taken=taken
        )
        return web.json_response({"ok": True})

    def _verification(self, token: object) -> web.Response:
        """A verification request: its token is set aside for the operator, never adopted here (the
        request is unsigned: anyone who can reach the URL can send one), never logged or answered."""
        if (
            not isinstance(token, str)
            or not token.strip()
            or len(token) > 512
            or any(c.isspace() for c in token.strip())
        ):
            return _error(400, "verification_token: expected one word of up to 512 characters")
        token = token.strip()
        in_use = self.secret()
        if any(
            hmac.compare_digest(token.encode(), known.encode())
            for known in (in_use, self.store.pending())
            if known
        ):
            if count := self._due("repeated"):
                self.log.info(
                    "notion_webhook_verification_repeated",
                    requests=count,
                    detail="a token already in use or waiting in the file; nothing written",
                )
            return web.json_response({"ok": True})
        now = time.monotonic()
        if now - self.written_at < self.write_every_s:
            if count := self._due("not_written"):
                self.log.warning(
                    "notion_webhook_verification_not_written",
                    requests=count,
                    detail=f"verification requests come faster than one per {self.write_every_s:g} s; "
                    "someone other than Notion may be posting to the URL",
                    action="wait a little, then use Resend token in Notion's Verify dialog",
                )
            return web.json_response({"ok": True})
        self.written_at = now
        path = self.store.set_aside(token)
        in_use_where = (
            "NOTION_WEBHOOK_SECRET" if self.configured else str(self.store.path) if in_use else "none"
        )
        if not (count := self._due("received")):
            return web.json_response({"ok": True})  # said within the last minute: the file is the newest
        self.log.warning(
            "notion_webhook_verification_token_received",
            requests=count,
            file=str(path),
            in_use=in_use_where,
            action="a verification request came (an unsigned request: anyone who can reach the URL can "
            "send one, so its token is not used until you adopt it). If you just made or re-verified "
            "the subscription: paste the file's token into Notion's Verify dialog (integration "
            "settings, Webhooks); only if Notion accepts it, adopt it: "
            f"mv {path} {self.store.path} (no restart), or set NOTION_WEBHOOK_SECRET to it and "
            "restart. If Notion refuses it, or you made no subscription: delete the file",
        )
        return web.json_response({"ok": True})

    def _refused(self, reason: str, *, fix: str) -> None:
        if count := self._due(reason):
            self.log.warning("notion_webhook_refused", reason=reason, requests=count, fix=fix)

    def _due(self, kind: str) -> int:
        return self.throttles.setdefault(kind, _Throttle()).due()


async def _read_body(request: web.Request) -> bytes | None:
    """The raw body (the signature is over its bytes), or None past MAX_BODY."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)
