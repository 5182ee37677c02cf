"""Databases and their data sources (API 2025-09-03: a database holds one or more data sources,
each with its own property schema; pages live in a data source)."""

from __future__ import annotations

from typing import Any

from sandbox.notion.errors import archived_block, body_validation, not_found, validation
from sandbox.notion.objects import (
    minute_iso,
    normalize_id,
    page_url,
    plain_text,
    precise_iso,
    rich_text,
    user_ref,
)
from sandbox.notion.properties import build_schema, update_schema
from sandbox.notion.state import DATA_SOURCE, DATABASE, PAGE, Call, Handler, Notion


# Rendering ---------------------------------------------------------------------------------------
def render_database(n: Notion, db: dict[str, Any]) -> dict[str, Any]:
    sources = [n.get(DATA_SOURCE, i) for i in db["data_sources"]]
    trashed = bool(db.get("in_trash"))
    return {
        "object": "database",
        "id": db["id"],
        "title": db["title"],
        "description": db.get("description", []),
        "parent": dict(db["parent"]),
        "is_inline": bool(db.get("is_inline")),
        "in_trash": trashed,
        "is_locked": bool(db.get("is_locked")),
        # Unlike pages, databases keep their exact times (see the recordings).
        "created_time": precise_iso(db["created_at"]),
        "last_edited_time": precise_iso(db["edited_at"]),
        "data_sources": [
            {"id": ds["id"], "name": plain_text(ds["title"])} for ds in sources if ds and not ds["in_trash"]
        ],
        "icon": db.get("icon"),
        "cover": db.get("cover"),
        "url": page_url(db["id"]),
        "public_url": None,
        "archived": trashed,
    }


def render_data_source(n: Notion, ds: dict[str, Any]) -> dict[str, Any]:
    db = n.get(DATABASE, ds["database_id"]) or {}
    trashed = bool(ds.get("in_trash"))
    return {
        "object": "data_source",
        "id": ds["id"],
        "cover": ds.get("cover"),
        "icon": ds.get("icon"),
        "created_time": minute_iso(ds["created_at"]),
        "created_by": user_ref(ds["created_by"]),
        "last_edited_by": user_ref(ds["edited_by"]),
        "last_edited_time": minute_iso(ds["edited_at"]),
        "title": ds["title"],
        "description": ds.get("description", []),
        "is_inline": bool(db.get("is_inline")),
        "properties": ds["properties"],
        "parent": {"type": "database_id", "database_id": ds["database_id"]},
        "database_parent": dict(db.get("parent") or {}),
        "url": page_url(ds["database_id"]),
        "public_url": None,
        "in_trash": trashed,
        "archived": trashed,
    }


def _title(body: dict[str, Any], key: str = "title") -> list[dict[str, Any]]:
    value = body.get(key)
    return [] if value is None else rich_text(value, f"body.{key}")


def _parent_page(n: Notion, parent: object) -> dict[str, Any]:
    """Databases can only be created under a page."""
    if not isinstance(parent, dict):
        raise body_validation("body.parent", "should be an object", parent)
    if parent.get("type", "page_id") != "page_id" or "page_id" not in parent:
        raise body_validation("body.parent.page_id", "should be defined", parent.get("page_id"))
    page_id = normalize_id(parent["page_id"], "body.parent.page_id")
    page = n.get(PAGE, page_id)
    if page is None:
        raise not_found("page", page_id)
    if n.trashed(page):
        raise archived_block()
    return page


def new_data_source(
    n: Notion, call: Call, database_id: str, title: list[dict[str, Any]], properties: object, where: str
) -> dict[str, Any]:
    schema = build_schema(properties, status_options_allowed=n.is_operator(call), where=where)
    return n.new_doc(
        "data_source",
        call.actor,
        database_id=database_id,
        title=title,
        description=[],
        properties=schema,
        icon=None,
        cover=None,
    )


# Databases ---------------------------------------------------------------------------------------
def create_database(n: Notion, call: Call) -> dict[str, Any]:
    body = call.body()
    page = _parent_page(n, body.get("parent"))
    title = _title(body)
    initial = body.get("initial_data_source") or {}
    if not isinstance(initial, dict):
        raise body_validation("body.initial_data_source", "should be an object", initial)
    db = n.new_doc(
        "database",
        call.actor,
        parent={"type": "page_id", "page_id": page["id"]},
        title=title,
        description=_title(body, "description"),
        is_inline=bool(body.get("is_inline", False)),
        is_locked=False,
        icon=body.get("icon"),
        cover=body.get("cover"),
        data_sources=[],
    )
    ds = new_data_source(
        n, call, db["id"], title, initial.get("properties"), "body.initial_data_source.properties"
    )
    db["data_sources"] = [ds["id"]]
    n.put(DATA_SOURCE, ds)
    n.put(DATABASE, db)
    page["children"] = [*page.get("children", []), db["id"]]
    n.put(PAGE, page)
    return render_database(n, db)


def retrieve_database(n: Notion, call: Call) -> dict[str, Any]:
    return render_database(n, n.require(DATABASE, call.id("database_id"), "database"))


def update_database(n: Notion, call: Call) -> dict[str, Any]:
    db = n.require(DATABASE, call.id("database_id"), "database")
    body = call.body()
    trash = body.get("in_trash", body.get("archived"))
    if db.get("in_trash") and trash is not False:
        raise archived_block()
    for key in ("title", "description"):
        if key in body:
            db[key] = _title(body, key)
    for key in ("icon", "cover", "is_inline", "is_locked"):
        if key in body:
            db[key] = body[key]
    if isinstance(trash, bool):
        db["in_trash"] = trash
    n.touch(db, call.actor)
    n.put(DATABASE, db)
    return render_database(n, db)


# Data sources ------------------------------------------------------------------------------------
def create_data_source(n: Notion, call: Call) -> dict[str, Any]:
    body = call.body()
    parent = body.get("parent")
    if not isinstance(parent, dict) or "database_id" not in parent:
        raise body_validation("body.parent.database_id", "should be defined", None)
    db = n.require(DATABASE, normalize_id(parent["database_id"], "body.parent.database_id"), "database")
    if n.trashed(db):
        raise archived_block()
    ds = new_data_source(n, call, db["id"], _title(body), body.get("properties"), "body.properties")
    ds["icon"] = body.get("icon")
    db["data_sources"] = [*db["data_sources"], ds["id"]]
    n.put(DATA_SOURCE, ds)
    n.put(DATABASE, db)
    return render_data_source(n, ds)


def retrieve_data_source(n: Notion, call: Call) -> dict[str, Any]:
    return render_data_source(n, n.require(DATA_SOURCE, call.id("data_source_id"), "data source"))


def update_data_source(n: Notion, call: Call) -> dict[str, Any]:
    ds = n.require(DATA_SOURCE, call.id("data_source_id"), "data source")
    body = call.body()
    trash = body.get("in_trash", body.get("archived"))
    if trash is not None and not isinstance(trash, bool):
        raise body_validation("body.in_trash", "should be a boolean", trash)
    if ds.get("in_trash") and trash is not False:
        raise archived_block()
    if "title" in body:
        ds["title"] = _title(body)
    if "icon" in body:
        ds["icon"] = body["icon"]
    if body.get("properties") is not None:
        ds["properties"] = update_schema(
            ds["properties"],
            body["properties"],
            status_options_allowed=n.is_operator(call),
            where="body.properties",
        )
    if "parent" in body:
        raise validation("Moving a data source to another database is not supported by the sandbox.")
    if trash is not None:
        ds["in_trash"] = trash
    n.touch(ds, call.actor)
    n.put(DATA_SOURCE, ds)
    return render_data_source(n, ds)


ROUTES: list[tuple[str, str, str, Handler]] = [
    ("POST", "/v1/databases", "databases.create", create_database),
    ("GET", "/v1/databases/{database_id}", "databases.retrieve", retrieve_database),
    ("PATCH", "/v1/databases/{database_id}", "databases.update", update_database),
    ("POST", "/v1/data_sources", "data_sources.create", create_data_source),
    ("GET", "/v1/data_sources/{data_source_id}", "data_sources.retrieve", retrieve_data_source),
    ("PATCH", "/v1/data_sources/{data_source_id}", "data_sources.update", update_data_source),
]
