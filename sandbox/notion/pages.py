"""Pages: create (under a page or in a data source), retrieve, update, and one property's items."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from sandbox.notion.blocks import create_blocks, parse_children
from sandbox.notion.errors import archived_block, body_validation, not_found, validation
from sandbox.notion.objects import minute_iso, normalize_id, page_url, user_ref
from sandbox.notion.properties import (
    Schema,
    ValueChanges,
    add_options,
    default_values,
    find_property_name,
    page_schema,
    parse_values,
    render_value,
    render_values,
    title_text,
)
from sandbox.notion.state import BLOCK, DATA_SOURCE, DATABASE, PAGE, Call, Handler, Notion
from sandbox.notion.uploads import attach, shown


# Rendering ---------------------------------------------------------------------------------------
def render_page(
    n: Notion, doc: dict[str, Any], schema: Schema | None = None, only: set[str] | None = None
) -> dict[str, Any]:
    if schema is None:
        schema = schema_of(n, doc)
    trashed = bool(doc.get("in_trash"))
    return {
        "object": "page",
        "id": doc["id"],
        "created_time": minute_iso(doc["created_at"]),
        "last_edited_time": minute_iso(doc["edited_at"]),
        "created_by": user_ref(doc["created_by"]),
        "last_edited_by": user_ref(doc["edited_by"]),
        "cover": shown(n, doc.get("cover")),
        "icon": doc.get("icon"),
        "parent": dict(doc["parent"]),
        "in_trash": trashed,
        "is_archived": False,
        "is_locked": bool(doc.get("is_locked")),
        "properties": _files_shown(n, render_values(schema, doc, only)),
        "url": page_url(doc["id"], title_text(doc)),
        "public_url": None,
        "archived": trashed,
    }


def _files_shown(n: Notion, properties: dict[str, Any]) -> dict[str, Any]:
    """Files properties answer each attached upload as a signed URL, like Notion."""
    for prop in properties.values():
        if prop["type"] == "files":
            prop["files"] = [{"name": f.get("name"), **(shown(n, f.get("ref")) or {})} for f in prop["files"]]
    return properties


def attach_files(n: Notion, schema: Schema, changes: ValueChanges) -> None:
    """A files property's entries are checked and their uploads attached; stored by reference."""
    by_id = {d["id"]: name for name, d in schema.items()}
    for prop_id, value in changes.values.items():
        name = by_id.get(prop_id)
        if name is None or schema[name]["type"] != "files":
            continue
        entries = []
        for i, entry in enumerate(value or []):
            where = f"body.properties.{name}.files[{i}]"
            if not isinstance(entry, dict):
                raise body_validation(where, "should be an object", entry)
            ref = attach(n, entry, where)
            label = entry.get("name")
            if not isinstance(label, str) or not label.strip():
                raise body_validation(f"{where}.name", "should be a non-empty string", label)
            entries.append({"name": label[:100], "ref": ref})
        changes.values[prop_id] = entries


def _cover(n: Notion, value: object, where: str) -> dict[str, Any] | None:
    return None if value is None else attach(n, value, where, "image/")


def schema_of(n: Notion, doc: dict[str, Any]) -> Schema:
    ds_id = doc["parent"].get("data_source_id")
    if ds_id is None:
        return page_schema()
    ds = n.get(DATA_SOURCE, ds_id)
    return ds["properties"] if ds else page_schema()


def require_page(n: Notion, page_id: str) -> dict[str, Any]:
    doc = n.get(PAGE, page_id)
    if doc is None:
        raise not_found("page", page_id)
    return doc


# Parents -----------------------------------------------------------------------------------------
def resolve_parent(n: Notion, parent: object) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The new page's parent reference, and its data source when it goes into one."""
    if not isinstance(parent, dict):
        raise body_validation("body.parent", "should be an object", parent)
    ptype = parent.get("type") or next(
        (k for k in ("data_source_id", "database_id", "page_id", "workspace") if k in parent), None
    )
    if ptype == "page_id":
        page = require_page(n, normalize_id(parent.get("page_id"), "body.parent.page_id"))
        if n.trashed(page):
            raise archived_block()
        return {"type": "page_id", "page_id": page["id"]}, None
    if ptype == "data_source_id":
        ds_id = normalize_id(parent.get("data_source_id"), "body.parent.data_source_id")
        return _in_data_source(n, n.require(DATA_SOURCE, ds_id, "data source"))
    if ptype == "database_id":
        db_id = normalize_id(parent.get("database_id"), "body.parent.database_id")
        db = n.require(DATABASE, db_id, "database")
        live = [d for d in (n.get(DATA_SOURCE, i) for i in db["data_sources"]) if d and not d["in_trash"]]
        if len(live) != 1:
            raise validation(
                f"Database {db_id} has {len(live)} data sources; "
                "create the page with a data_source_id parent."
            )
        return _in_data_source(n, live[0])
    if ptype == "workspace":
        raise validation("Pages cannot be created at the top level of a workspace by an integration.")
    raise body_validation("body.parent.page_id", "should be defined", None)


def _in_data_source(n: Notion, ds: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    if n.trashed(ds):
        raise archived_block()
    ref = {"type": "data_source_id", "data_source_id": ds["id"], "database_id": ds["database_id"]}
    return ref, ds


def save_new_options(n: Notion, ds: dict[str, Any] | None, changes: ValueChanges) -> Schema | None:
    """Select values that were not options yet become options of the data source."""
    if ds is None:
        return None
    if changes.new_options:
        ds["properties"] = add_options(ds["properties"], changes.new_options)
        n.put(DATA_SOURCE, ds)
    properties: Schema = ds["properties"]
    return properties


# Handlers ----------------------------------------------------------------------------------------
def create(n: Notion, call: Call) -> dict[str, Any]:
    body = call.body()
    parent, ds = resolve_parent(n, body.get("parent"))
    schema = ds["properties"] if ds else page_schema()
    changes = parse_values(schema, body.get("properties") or {})
    attach_files(n, schema, changes)
    children = parse_children(body["children"]) if body.get("children") is not None else []
    schema = save_new_options(n, ds, changes) or schema
    page = n.new_doc(
        "page",
        call.actor,
        parent=parent,
        values={**default_values(schema), **changes.values},
        children=[],
        icon=body.get("icon"),
        cover=_cover(n, body.get("cover"), "body.cover"),
        is_locked=False,
    )
    page["children"] = create_blocks(n, {"type": "page_id", "page_id": page["id"]}, children, call.actor)
    n.put(PAGE, page)
    n.webhooks.page_created(page, call.actor)
    if ds is None:
        holder = require_page(n, parent["page_id"])
        holder["children"] = [*holder.get("children", []), page["id"]]
        n.put(PAGE, holder)
    return render_page(n, page, schema)


def retrieve(n: Notion, call: Call) -> dict[str, Any]:
    page = require_page(n, call.id("page_id"))
    only = set(call.args("filter_properties")) or None
    return render_page(n, page, only=only)


def update(n: Notion, call: Call) -> dict[str, Any]:
    page = require_page(n, call.id("page_id"))
    body = call.body()
    trash = body.get("in_trash", body.get("archived"))
    if trash is not None and not isinstance(trash, bool):
        raise body_validation("body.in_trash", "should be a boolean", trash)
    if page.get("in_trash") and trash is not False:
        raise archived_block()
    ds = n.get(DATA_SOURCE, page["parent"]["data_source_id"]) if "data_source_id" in page["parent"] else None
    schema = ds["properties"] if ds else page_schema()
    changes = parse_values(schema, body.get("properties") or {})
    attach_files(n, schema, changes)
    schema = save_new_options(n, ds, changes) or schema
    before = page.get("values", {})
    changed = [k for k, v in changes.values.items() if before.get(k) != v]
    was_trashed = bool(page.get("in_trash"))
    page["values"] = {**before, **changes.values}
    if "cover" in body:
        page["cover"] = _cover(n, body["cover"], "body.cover")
    for key in ("icon", "is_locked"):
        if key in body:
            page[key] = body[key]
    if trash is not None:
        page["in_trash"] = trash
    if body.get("erase_content"):
        _erase(n, page)
    n.touch(page, call.actor)
    n.put(PAGE, page)
    if changed:
        n.webhooks.properties_updated(page, call.actor, changed)
    if trash is not None and trash != was_trashed:
        n.webhooks.page_trashed(page, call.actor, trash)
    return render_page(n, page, schema)


def _erase(n: Notion, page: dict[str, Any]) -> None:
    for block_id in page.get("children", []):
        block = n.get(BLOCK, block_id)
        if block is not None and not block["in_trash"]:
            block["in_trash"] = True
            n.put(BLOCK, block)


def property_item(n: Notion, call: Call) -> dict[str, Any]:
    page = require_page(n, call.id("page_id"))
    schema = schema_of(n, page)
    key = unquote(call.request.params.get("property_id", ""))
    name = find_property_name(schema, key)
    if name is None:
        raise not_found("property", key)
    definition = schema[name]
    kind = definition["type"]
    value = render_value(definition, page.get("values", {}).get(definition["id"]), page)
    if kind not in ("title", "rich_text"):
        return {"object": "property_item", "id": definition["id"], "type": kind, kind: value}
    items = [{"object": "property_item", "type": kind, "id": definition["id"], kind: item} for item in value]
    return {
        "object": "list",
        "results": items,
        "next_cursor": None,
        "has_more": False,
        "type": "property_item",
        "property_item": {"id": definition["id"], "next_url": None, "type": kind, kind: {}},
    }


ROUTES: list[tuple[str, str, str, Handler]] = [
    ("POST", "/v1/pages", "pages.create", create),
    ("GET", "/v1/pages/{page_id}", "pages.retrieve", retrieve),
    ("PATCH", "/v1/pages/{page_id}", "pages.update", update),
    ("GET", "/v1/pages/{page_id}/properties/{property_id}", "pages.properties.retrieve", property_item),
]
