"""The Notion stand-in's state: identities, documents in the sandbox store, counters, the tree."""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sandbox.http import Request, Response, json_response
from sandbox.notion.errors import NotionError, body_validation, error_response, not_found
from sandbox.notion.objects import new_id, normalize_id, now, text_item
from sandbox.notion.ratelimit import TokenBuckets
from sandbox.notion.webhooks import Webhooks

if TYPE_CHECKING:
    from sandbox.app import Sandbox

LOG = logging.getLogger("sandbox.notion")

PAGE = "notion_page"
BLOCK = "notion_block"
DATABASE = "notion_database"
DATA_SOURCE = "notion_data_source"
COMMENT = "notion_comment"
FILE_UPLOAD = "notion_file_upload"

ROOT_TITLE = "Sandbox workspace"
BOT_NAME = "Sandbox integration"
OPERATOR_NAME = "Sandbox Operator"


@dataclass
class Call:
    """One API request as a handler sees it: who makes it, its path parameters and body."""

    request: Request
    actor: str
    _body: Any = field(default=None, repr=False)

    def body(self) -> dict[str, Any]:
        if self._body is None:
            try:
                parsed = self.request.json()
            except ValueError:
                raise NotionError(400, "invalid_json", "Error parsing JSON body.") from None
            if not isinstance(parsed, dict):
                raise body_validation("body", "should be an object", parsed)
            self._body = parsed
        return dict(self._body)

    def id(self, name: str) -> str:
        return normalize_id(self.request.params.get(name, ""), f"path.{name}")

    def arg(self, name: str) -> str | None:
        return self.request.arg(name)

    def args(self, name: str) -> list[str]:
        """A repeated query parameter (`filter_properties=a&filter_properties=b`, or with `[]`)."""
        values = self.request.query.get(name, []) + self.request.query.get(f"{name}[]", [])
        return [v for value in values for v in value.split(",") if v]


Handler = Callable[["Notion", Call], dict[str, Any]]


class Notion:
    def __init__(self, app: Sandbox) -> None:
        self.app = app
        self.store = app.store
        creds = app.credentials
        self.bot_id = creds["notion_bot_id"]
        self.operator_id = creds["notion_operator_id"]
        self.root_id = creds["notion_root_page_id"]
        self.workspace_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox-workspace:{self.root_id}"))
        self._actors = {creds["notion_token"]: self.bot_id, creds["notion_operator_token"]: self.operator_id}
        self.buckets = TokenBuckets(lambda: (app.config.notion_rate, app.config.notion_burst))
        self.webhooks = Webhooks(
            lambda: app.config.notion_webhook_url,
            creds["notion_webhook_token"],
            self.bot_id,
            self.workspace_id,
        )
        app.config_hooks.append(self._subscription_changed)
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        with self.store.lock:
            self._seq = max(
                (
                    int(d.get("seq", 0))
                    for k in (PAGE, BLOCK, DATABASE, DATA_SOURCE, COMMENT, FILE_UPLOAD)
                    for d in self.store.iter_raw(k)
                ),
                default=0,
            )
            self._ensure_root()

    # Identities ----------------------------------------------------------------------------------
    def actor(self, request: Request) -> str | None:
        scheme, _, token = request.header("authorization").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return self._actors.get(token.strip())

    def user(self, user_id: str) -> dict[str, Any] | None:
        if user_id == self.bot_id:
            return {
                "object": "user",
                "id": self.bot_id,
                "name": BOT_NAME,
                "avatar_url": None,
                "type": "bot",
                "bot": {
                    "owner": {"type": "workspace", "workspace": True},
                    "workspace_name": ROOT_TITLE,
                    "workspace_id": self.workspace_id,
                    "workspace_limits": {
                        "max_file_upload_size_in_bytes": int(self.app.config.notion_upload_cap)
                    },
                },
            }
        if user_id == self.operator_id:
            return {
                "object": "user",
                "id": self.operator_id,
                "name": OPERATOR_NAME,
                "avatar_url": "https://s3-us-west-2.amazonaws.com/public.notion-static.com/sandbox/operator.png",
                "type": "person",
                "person": {"email": "operator@sandbox.invalid", "email_verified": True},
            }
        return None

    def is_operator(self, call: Call) -> bool:
        return call.actor == self.operator_id

    # The gate: auth, then the rate limit ---------------------------------------------------------
    def gate(self, request: Request) -> Response | None:
        token = request.header("authorization").partition(" ")[2].strip()
        if self.actor(request) is None:
            self.count("unauthorized")
            return error_response(401, "unauthorized", "API token is invalid.", None)
        wait = self.buckets.take(token)
        if wait is not None:
            self.count("rate_limited")
            return error_response(
                429, "rate_limited", "You have been rate limited. Please try again later.", wait
            )
        return None

    def endpoint(self, name: str, handler: Handler) -> Callable[[Request], Response]:
        def run(request: Request) -> Response:
            self.count(name, by_endpoint=True)
            call = Call(request, self.actor(request) or self.bot_id)
            try:
                with self.store.lock:
                    self.webhooks.begin()
                    result = handler(self, call)
                    events = self.webhooks.take()  # a call that failed sends none
            except NotionError as exc:
                return error_response(exc.status, exc.code, exc.message, exc.retry_after)
            except Exception:  # a sandbox bug: answer like Notion would, and leave a trace
                LOG.exception("notion %s failed", name)
                return error_response(500, "internal_server_error", None, None)
            self.webhooks.send(events)
            result["request_id"] = str(uuid.uuid4())
            return json_response(200, result)

        return run

    def _subscription_changed(self, before: dict[str, Any]) -> None:
        """A webhook URL set (or changed) is a new subscription: Notion sends its verification."""
        url = self.app.config.notion_webhook_url
        if url and url != before.get("notion_webhook_url"):
            self.webhooks.verify(url)

    # Counters, for /_sandbox/stats ----------------------------------------------------------------
    def count(self, name: str, by_endpoint: bool = False) -> None:
        with self._counts_lock:
            self._counts[("endpoint:" if by_endpoint else "") + name] += 1

    def stats(self) -> dict[str, object]:
        with self._counts_lock:
            counts = dict(self._counts)
        by_endpoint = {k.split(":", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("endpoint:")}
        return {
            "requests": sum(by_endpoint.values()),
            "requests_by_endpoint": by_endpoint,
            "rate_limited": counts.get("rate_limited", 0),
            "unauthorized": counts.get("unauthorized", 0),
            "webhooks": self.webhooks.stats(),
        }

    # Documents -----------------------------------------------------------------------------------
    def new_doc(self, obj: str, actor: str, **fields: Any) -> dict[str, Any]:
        """A new stored object; `obj` is its Notion object name (page, block, database, ...)."""
        self._seq += 1
        ts = now()
        return {
            "object": obj,
            "id": new_id(),
            "seq": self._seq,
            "created_at": ts,
            "edited_at": ts,
            "created_by": actor,
            "edited_by": actor,
            "in_trash": False,
            **fields,
        }

    def get(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        return self.store.get(kind, doc_id)

    def put(self, kind: str, doc: dict[str, Any]) -> None:
        self.store.put(kind, doc["id"], doc)

    def require(self, kind: str, doc_id: str, label: str) -> dict[str, Any]:
        doc = self.store.get(kind, doc_id)
        if doc is None:
            raise not_found(label, doc_id)
        return doc

    @staticmethod
    def touch(doc: dict[str, Any], actor: str) -> None:
        doc["edited_at"] = now()
        doc["edited_by"] = actor

    def find_node(self, node_id: str) -> tuple[str, dict[str, Any]] | None:
        """A block id may name a block, a page (a child_page block) or a database (child_database)."""
        for kind in (BLOCK, PAGE, DATABASE):
            doc = self.store.get(kind, node_id)
            if doc is not None:
                return kind, doc
        return None

    def parent_of(self, doc: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        if doc.get("object") == "data_source":
            db = self.store.get(DATABASE, doc["database_id"])
            return (DATABASE, db) if db else None
        parent = doc.get("parent") or {}
        ptype = parent.get("type")
        if ptype == "data_source_id":
            ds = self.store.get(DATA_SOURCE, parent["data_source_id"])
            return (DATA_SOURCE, ds) if ds else None
        if ptype == "database_id":
            db = self.store.get(DATABASE, parent["database_id"])
            return (DATABASE, db) if db else None
        if ptype in ("page_id", "block_id"):
            return self.find_node(parent[ptype])
        return None

    def trashed(self, doc: dict[str, Any]) -> bool:
        """Trashed itself or through an ancestor: Notion hides a trashed page's whole subtree."""
        current: dict[str, Any] | None = doc
        for _ in range(64):
            if current is None:
                return False
            if current.get("in_trash"):
                return True
            found = self.parent_of(current)
            current = found[1] if found else None
        return False

    def owning_page(self, kind: str, doc: dict[str, Any]) -> dict[str, Any] | None:
        """The page whose body holds a block (its last_edited_time moves with its content)."""
        current_kind, current = kind, doc
        for _ in range(64):
            if current_kind == PAGE:
                return current
            found = self.parent_of(current)
            if found is None:
                return None
            current_kind, current = found
        return None

    # The workspace root ----------------------------------------------------------------------------
    def _ensure_root(self) -> None:
        if self.store.get(PAGE, self.root_id) is not None:
            return
        root = self.new_doc(
            "page",
            self.operator_id,
            parent={"type": "workspace", "workspace": True},
            values={"title": [text_item(ROOT_TITLE)]},
            children=[],
            icon=None,
            cover=None,
            is_locked=False,
        )
        root["id"] = self.root_id
        self.put(PAGE, root)
