"""Blocks: page bodies as block children; retrieve, update, delete (trash), list and append.

A block id may also name a page (answered as a `child_page` block) or a database
(`child_database`), as in Notion, where deleting a page is `DELETE /v1/blocks/{page_id}`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sandbox.notion.errors import archived_block, body_validation, not_found, validation
from sandbox.notion.objects import MAX_ARRAY, minute_iso, normalize_id, plain_text, rich_text, user_ref
from sandbox.notion.properties import title_text
from sandbox.notion.state import BLOCK, DATABASE, PAGE, Call, Handler, Notion
from sandbox.notion.uploads import MEDIA_BLOCKS, attach, shown

# Block types with their payload defaults (besides rich_text), in Notion's key order.
TEXT_BLOCKS: dict[str, dict[str, Any]] = {
    "paragraph": {"icon": None, "color": "default"},
    "heading_1": {"is_toggleable": False, "color": "default"},
    "heading_2": {"is_toggleable": False, "color": "default"},
    "heading_3": {"is_toggleable": False, "color": "default"},
    "bulleted_list_item": {"color": "default"},
    "numbered_list_item": {"color": "default"},
    "quote": {"color": "default"},
    "toggle": {"color": "default"},
    "to_do": {"checked": False, "color": "default"},
    "callout": {"icon": {"type": "emoji", "emoji": "💡"}, "color": "gray_background"},
}
CODE_LANGUAGES = frozenset(
    (
        "abap",
        "bash",
        "c",
        "c#",
        "c++",
        "css",
        "dart",
        "diff",
        "docker",
        "elixir",
        "go",
        "graphql",
        "haskell",
        "html",
        "java",
        "javascript",
        "json",
        "kotlin",
        "latex",
        "lua",
        "makefile",
        "markdown",
        "mermaid",
        "objective-c",
        "perl",
        "php",
        "plain text",
        "powershell",
        "python",
        "r",
        "ruby",
        "rust",
        "scala",
        "shell",
        "sql",
        "swift",
        "typescript",
        "xml",
        "yaml",
    )
)
MAX_NESTING = 2  # levels of `children` one append may carry


@dataclass
class BlockSpec:
    type: str
    content: dict[str, Any]
    children: list[BlockSpec] = field(default_factory=list)


# Parsing -----------------------------------------------------------------------------------------
def parse_children(children: object, where: str = "body.children", depth: int = 1) -> list[BlockSpec]:
    if not isinstance(children, list):
        raise body_validation(where, "should be an array", children)
    if len(children) > MAX_ARRAY:
        raise body_validation(f"{where}.length", f"should be ≤ `{MAX_ARRAY}`", len(children))
    return [parse_block(spec, f"{where}[{i}]", depth) for i, spec in enumerate(children)]


def parse_block(spec: object, where: str, depth: int = 1) -> BlockSpec:
    if not isinstance(spec, dict):
        raise body_validation(where, "should be an object", spec)
    known = ("code", "divider", *TEXT_BLOCKS, *MEDIA_BLOCKS)
    btype = spec.get("type") or next((k for k in spec if k in known), None)
    if btype not in known:
        raise body_validation(f"{where}.type", f"should be one of {', '.join(known)}", btype)
    payload = spec.get(btype)
    if not isinstance(payload, dict):
        raise body_validation(f"{where}.{btype}", "should be defined", payload)
    content = block_content(btype, payload, {}, f"{where}.{btype}")
    nested: list[BlockSpec] = []
    if payload.get("children") is not None:
        if depth >= MAX_NESTING:
            raise body_validation(f"{where}.{btype}.children", "should be not present", "nested children")
        nested = parse_children(payload["children"], f"{where}.{btype}.children", depth + 1)
    return BlockSpec(btype, content, nested)


def _media_payload(payload: dict[str, Any], current: dict[str, Any], where: str) -> dict[str, Any]:
    """A media block's caption and file reference; the file itself is checked where the sandbox's
    state is at hand (media_content)."""
    content = {"caption": [], **current}
    if "caption" in payload:
        content["caption"] = rich_text(payload["caption"], f"{where}.caption")
    ref = {k: payload[k] for k in ("type", "file_upload", "external") if k in payload}
    if ref:
        content["ref"] = ref
    elif not current:
        raise body_validation(f"{where}.file_upload", "should be defined", None)
    return content


def block_content(btype: str, payload: dict[str, Any], current: dict[str, Any], where: str) -> dict[str, Any]:
    """A block's payload in Notion's answer form; fields not given keep their current value."""
    if btype == "divider":
        return {}
    if btype in MEDIA_BLOCKS:
        return _media_payload(payload, current, where)
    if btype == "code":
        content = {"caption": [], "rich_text": [], "language": "plain text", **current}
        if "caption" in payload:
            content["caption"] = rich_text(payload["caption"], f"{where}.caption")
        if "language" in payload:
            if payload["language"] not in CODE_LANGUAGES:
                raise body_validation(
                    f"{where}.language", "should be a supported language", payload["language"]
                )
            content["language"] = payload["language"]
    else:
        content = {"rich_text": [], **TEXT_BLOCKS[btype], **current}
        for key in TEXT_BLOCKS[btype]:
            if key in payload:
                content[key] = payload[key]
    if "rich_text" in payload:
        content["rich_text"] = rich_text(payload["rich_text"], f"{where}.rich_text")
    elif not current:
        raise body_validation(f"{where}.rich_text", "should be defined", None)
    return content


# Rendering ---------------------------------------------------------------------------------------
def render_node(n: Notion, kind: str, doc: dict[str, Any]) -> dict[str, Any]:
    """Any node as a block object."""
    if kind == PAGE:
        btype, content = "child_page", {"title": title_text(doc)}
    elif kind == DATABASE:
        btype, content = "child_database", {"title": plain_text(doc.get("title"))}
    else:
        btype, content = doc["type"], doc["content"]
        if btype in MEDIA_BLOCKS:
            stored = {k: v for k, v in content.items() if k != "caption"}
            content = {"caption": content.get("caption", []), **(shown(n, stored) or {})}
    return {
        "object": "block",
        "id": doc["id"],
        "parent": _block_parent(doc),
        "created_time": minute_iso(doc["created_at"]),
        "last_edited_time": minute_iso(doc["edited_at"]),
        "created_by": user_ref(doc["created_by"]),
        "last_edited_by": user_ref(doc["edited_by"]),
        "has_children": any(True for _ in _live_children(n, doc)),
        "in_trash": bool(doc.get("in_trash")),
        "type": btype,
        btype: content,
        "archived": bool(doc.get("in_trash")),
    }


def _block_parent(doc: dict[str, Any]) -> dict[str, Any]:
    parent = dict(doc["parent"])
    if parent.get("type") == "data_source_id":
        # Seen as a block, a data source's page hangs under its database.
        return {"type": "database_id", "database_id": parent["database_id"]}
    return parent


def _live_children(n: Notion, doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for child_id in doc.get("children", []):
        found = n.find_node(child_id)
        if found is not None and not found[1].get("in_trash"):
            out.append(found)
    return out


def block_list(results: list[dict[str, Any]], next_cursor: str | None) -> dict[str, Any]:
    return {
        "object": "list",
        "results": results,
        "next_cursor": next_cursor,
        "has_more": next_cursor is not None,
        "type": "block",
        "block": {},
    }


# Writing -----------------------------------------------------------------------------------------
def create_blocks(n: Notion, parent: dict[str, Any], specs: list[BlockSpec], actor: str) -> list[str]:
    """Stores the blocks (and their nested children); returns the new top-level ids in order."""
    ids: list[str] = []
    for spec in specs:
        if spec.type in MEDIA_BLOCKS:
            spec.content = media_content(n, spec.type, spec.content)
        doc = n.new_doc("block", actor, parent=parent, type=spec.type, content=spec.content, children=[])
        if spec.children:
            child_parent = {"type": "block_id", "block_id": doc["id"]}
            doc["children"] = create_blocks(n, child_parent, spec.children, actor)
        n.put(BLOCK, doc)
        ids.append(doc["id"])
    return ids


def media_content(n: Notion, btype: str, content: dict[str, Any]) -> dict[str, Any]:
    """A media block's content as stored: its caption and its checked file (an upload attached)."""
    ref = content.pop("ref", None)
    if ref is None:
        return content
    accepts = MEDIA_BLOCKS[btype]
    return {"caption": content.get("caption", []), **attach(n, ref, f"body.{btype}", accepts)}


def parent_ref(kind: str, doc: dict[str, Any]) -> dict[str, Any]:
    key = "page_id" if kind == PAGE else "block_id"
    return {"type": key, key: doc["id"]}


def insert_position(body: dict[str, Any], children: list[str]) -> int:
    """Where appended blocks go: `position` (start, end, after_block) or the older `after`."""
    position = body.get("position")
    after = body.get("after")
    if isinstance(position, dict):
        ptype = position.get("type", "end")
        if ptype == "start":
            return 0
        if ptype == "after_block":
            after = (position.get("after_block") or {}).get("id")
        elif ptype != "end":
            raise body_validation("body.position.type", "should be one of start, end, after_block", ptype)
    if after is None:
        return len(children)
    after_id = normalize_id(after, "body.after")
    if after_id not in children:
        raise validation(f"Block {after_id} is not a child of the parent block.")
    return children.index(after_id) + 1


def touch_page(
    n: Notion, kind: str, doc: dict[str, Any], actor: str, blocks: list[str] | None = None
) -> None:
    """Editing a body moves its page's last_edited_time, as in Notion, and is a page.content_updated
    event (`blocks`: the blocks changed, by default `doc`)."""
    page = n.owning_page(kind, doc)
    if page is not None and page["id"] != doc["id"]:
        n.touch(page, actor)
        n.put(PAGE, page)
    if page is not None:
        n.webhooks.content_updated(page, actor, blocks if blocks is not None else [doc["id"]])


def _require_node(n: Notion, node_id: str) -> tuple[str, dict[str, Any]]:
    found = n.find_node(node_id)
    if found is None:
        raise not_found("block", node_id)
    return found


# Handlers ----------------------------------------------------------------------------------------
def retrieve(n: Notion, call: Call) -> dict[str, Any]:
    kind, doc = _require_node(n, call.id("block_id"))
    return render_node(n, kind, doc)


def update(n: Notion, call: Call) -> dict[str, Any]:
    kind, doc = _require_node(n, call.id("block_id"))
    body = call.body()
    trash = body.get("in_trash", body.get("archived"))
    if trash is not None and not isinstance(trash, bool):
        raise body_validation("body.in_trash", "should be a boolean", trash)
    edits = {k: v for k, v in body.items() if k not in ("in_trash", "archived", "type")}
    if doc.get("in_trash") and trash is not False:
        raise archived_block()
    if edits:
        if kind != BLOCK or set(edits) != {doc["type"]} or not isinstance(edits[doc["type"]], dict):
            btype = doc["type"] if kind == BLOCK else ("child_page" if kind == PAGE else "child_database")
            raise body_validation(f"body.{btype}", "should be defined", None)
        doc["content"] = block_content(doc["type"], edits[doc["type"]], doc["content"], f"body.{doc['type']}")
        if doc["type"] in MEDIA_BLOCKS:
            doc["content"] = media_content(n, doc["type"], doc["content"])
    if trash is not None:
        doc["in_trash"] = trash
    n.touch(doc, call.actor)
    n.put(kind, doc)
    touch_page(n, kind, doc, call.actor)
    return render_node(n, kind, doc)


def delete(n: Notion, call: Call) -> dict[str, Any]:
    kind, doc = _require_node(n, call.id("block_id"))
    if doc.get("in_trash"):
        raise archived_block()
    doc["in_trash"] = True
    n.touch(doc, call.actor)
    n.put(kind, doc)
    touch_page(n, kind, doc, call.actor)
    return render_node(n, kind, doc)


def list_children(n: Notion, call: Call) -> dict[str, Any]:
    _, doc = _require_node(n, call.id("block_id"))
    size = page_size(call.arg("page_size"), "query.page_size")
    live = _live_children(n, doc)
    start = 0
    cursor = call.arg("start_cursor")
    if cursor:
        cursor_id = normalize_id(cursor, "query.start_cursor")
        ids = [d["id"] for _, d in live]
        if cursor_id not in ids:
            raise validation(f"The start_cursor provided is invalid: {cursor}")
        start = ids.index(cursor_id)
    window = live[start : start + size]
    more = start + size < len(live)
    next_cursor = live[start + size][1]["id"] if more else None
    return block_list([render_node(n, k, d) for k, d in window], next_cursor)


def append_children(n: Notion, call: Call) -> dict[str, Any]:
    kind, doc = _require_node(n, call.id("block_id"))
    body = call.body()
    specs = parse_children(body.get("children"))
    if kind == DATABASE:
        raise validation("Block type child_database does not support children.")
    if doc.get("in_trash") or n.trashed(doc):
        raise archived_block()
    at = insert_position(body, doc.get("children", []))
    new_ids = create_blocks(n, parent_ref(kind, doc), specs, call.actor)
    doc["children"] = doc.get("children", [])[:at] + new_ids + doc.get("children", [])[at:]
    n.touch(doc, call.actor)
    n.put(kind, doc)
    touch_page(n, kind, doc, call.actor, new_ids)
    return block_list([render_node(n, BLOCK, n.require(BLOCK, i, "block")) for i in new_ids], None)


def page_size(value: object, where: str) -> int:
    if value is None:
        return MAX_ARRAY
    try:
        size = int(str(value))
    except ValueError:
        raise body_validation(where, "should be a number", value) from None
    if size < 1:
        raise body_validation(where, "should be ≥ `1`", size)
    if size > MAX_ARRAY:
        raise body_validation(where, f"should be ≤ `{MAX_ARRAY}`", size)
    return size


ROUTES: list[tuple[str, str, str, Handler]] = [
    ("GET", "/v1/blocks/{block_id}", "blocks.retrieve", retrieve),
    ("PATCH", "/v1/blocks/{block_id}", "blocks.update", update),
    ("DELETE", "/v1/blocks/{block_id}", "blocks.delete", delete),
    ("GET", "/v1/blocks/{block_id}/children", "blocks.children.list", list_children),
    ("PATCH", "/v1/blocks/{block_id}/children", "blocks.children.append", append_children),
]
