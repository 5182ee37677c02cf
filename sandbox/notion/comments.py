"""Comments on pages: create (a new discussion, or a reply in one) and list by block."""

from __future__ import annotations

from typing import Any

from sandbox.notion.blocks import page_size
from sandbox.notion.errors import archived_block, body_validation, not_found, validation
from sandbox.notion.objects import minute_iso, new_id, normalize_id, rich_text, user_ref
from sandbox.notion.state import BOT_NAME, COMMENT, OPERATOR_NAME, Call, Handler, Notion


def render_comment(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "comment",
        "id": doc["id"],
        "parent": dict(doc["parent"]),
        "discussion_id": doc["discussion_id"],
        "created_time": minute_iso(doc["created_at"]),
        "last_edited_time": minute_iso(doc["edited_at"]),
        "created_by": user_ref(doc["created_by"]),
        "rich_text": doc["rich_text"],
        "display_name": doc["display_name"],
    }


def create(n: Notion, call: Call) -> dict[str, Any]:
    body = call.body()
    text = rich_text(body.get("rich_text"), "body.rich_text")
    parent, discussion = _target(n, body)
    bot = call.actor == n.bot_id
    doc = n.new_doc(
        "comment",
        call.actor,
        parent=parent,
        discussion_id=discussion,
        rich_text=text,
        display_name={
            "type": "integration" if bot else "user",
            "resolved_name": BOT_NAME if bot else OPERATOR_NAME,
        },
    )
    n.put(COMMENT, doc)
    return render_comment(doc)


def _target(n: Notion, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A page (or block) parent starts a discussion; a discussion_id replies in one."""
    if body.get("discussion_id"):
        discussion = normalize_id(body["discussion_id"], "body.discussion_id")
        first = next((c for c in n.store.iter_raw(COMMENT) if c["discussion_id"] == discussion), None)
        if first is None:
            raise validation(f"Could not find discussion with ID: {discussion}.")
        return dict(first["parent"]), discussion
    parent = body.get("parent")
    if not isinstance(parent, dict):
        raise body_validation("body.parent", "should be an object", parent)
    key = "page_id" if "page_id" in parent else "block_id"
    target_id = normalize_id(parent.get(key), f"body.parent.{key}")
    found = n.find_node(target_id)
    if found is None:
        raise not_found("page" if key == "page_id" else "block", target_id)
    if n.trashed(found[1]):
        raise archived_block()
    return {"type": key, key: target_id}, new_id()


def list_comments(n: Notion, call: Call) -> dict[str, Any]:
    block_id = normalize_id(call.arg("block_id"), "query.block_id")
    size = page_size(call.arg("page_size"), "query.page_size")
    docs = [c for c in n.store.iter_raw(COMMENT) if block_id in c["parent"].values()]
    docs.sort(key=lambda c: int(c["seq"]))
    start = 0
    cursor = call.arg("start_cursor")
    if cursor:
        ids = [c["id"] for c in docs]
        cursor_id = normalize_id(cursor, "query.start_cursor")
        if cursor_id not in ids:
            raise validation(f"The start_cursor provided is invalid: {cursor}")
        start = ids.index(cursor_id)
    chunk = docs[start : start + size]
    more = start + size < len(docs)
    return {
        "object": "list",
        "results": [render_comment(c) for c in chunk],
        "next_cursor": docs[start + size]["id"] if more else None,
        "has_more": more,
        "type": "comment",
        "comment": {},
    }


ROUTES: list[tuple[str, str, str, Handler]] = [
    ("POST", "/v1/comments", "comments.create", create),
    ("GET", "/v1/comments", "comments.list", list_comments),
]
