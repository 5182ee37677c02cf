"""Data source queries and search: filter and sort the stored documents in one pass, then page.

Cursors are the id of the next result, like Notion's. A page that stops matching between two
requests (its Status changed) does not break the cursor: the query resumes at the place the
cursor's page would sort to.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any

from sandbox.notion.blocks import page_size
from sandbox.notion.databases import render_data_source
from sandbox.notion.errors import body_validation, validation
from sandbox.notion.filters import Doc, compile_filter, compile_sorts
from sandbox.notion.objects import normalize_id, plain_text
from sandbox.notion.pages import render_page
from sandbox.notion.properties import title_text
from sandbox.notion.state import BLOCK, DATA_SOURCE, DATABASE, PAGE, Call, Handler, Notion


def result_list(results: list[dict[str, Any]], next_cursor: str | None) -> dict[str, Any]:
    return {
        "object": "list",
        "results": results,
        "next_cursor": next_cursor,
        "has_more": next_cursor is not None,
        "type": "page_or_data_source",
        "page_or_data_source": {},
    }


def window(
    ordered: list[Doc],
    key: Callable[[Doc], Any],
    cursor: object,
    size: int,
    lookup: Callable[[str], Doc | None],
) -> tuple[list[Doc], str | None]:
    """One page of an ordered result list starting at the cursor, and the next cursor."""
    start = 0
    if cursor is not None:
        cursor_id = normalize_id(cursor, "body.start_cursor")
        anchor = lookup(cursor_id)
        if anchor is None:
            raise validation(f"The start_cursor provided is invalid: {cursor}")
        keys = [key(d) for d in ordered]
        start = bisect.bisect_left(keys, key(anchor))
    chunk = ordered[start : start + size]
    more = start + size < len(ordered)
    return chunk, (ordered[start + size]["id"] if more else None)


# Data source query -------------------------------------------------------------------------------
def query_data_source(n: Notion, call: Call) -> dict[str, Any]:
    ds = n.require(DATA_SOURCE, call.id("data_source_id"), "data source")
    body = call.body()
    schema = ds["properties"]
    test = compile_filter(body.get("filter"), schema)
    key = compile_sorts(body.get("sorts"), schema)
    size = page_size(body.get("page_size"), "body.page_size")
    only = set(call.args("filter_properties")) or None
    want_trashed = body.get("in_trash") is True or body.get("archived") is True
    # The caller holds the store lock: read the cached documents as they are, copy nothing yet.
    ds_id = ds["id"]
    matches = [
        d
        for d in n.store.iter_raw(PAGE)
        if d["parent"].get("data_source_id") == ds_id and bool(d["in_trash"]) == want_trashed and test(d)
    ]
    matches.sort(key=key)
    chunk, next_cursor = window(matches, key, body.get("start_cursor"), size, lambda i: n.get(PAGE, i))
    return result_list([render_page(n, d, schema, only) for d in chunk], next_cursor)


# Search ------------------------------------------------------------------------------------------
class _Tree:
    """Raw documents by id for one search, so the trash check up the parents copies nothing."""

    def __init__(self, n: Notion) -> None:
        self.docs: dict[str, Doc] = {}
        for kind in (PAGE, BLOCK, DATABASE, DATA_SOURCE):
            for doc in n.store.iter_raw(kind):
                self.docs[doc["id"]] = doc
        self._memo: dict[str, bool] = {}

    def trashed(self, doc: Doc, depth: int = 0) -> bool:
        known = self._memo.get(doc["id"])
        if known is not None:
            return known
        parent = self._parent(doc)
        result = bool(doc.get("in_trash")) or (
            parent is not None and depth < 64 and self.trashed(parent, depth + 1)
        )
        self._memo[doc["id"]] = result
        return result

    def _parent(self, doc: Doc) -> Doc | None:
        if doc.get("object") == "data_source":
            return self.docs.get(doc["database_id"])
        ref = doc.get("parent") or {}
        ptype = ref.get("type")
        return self.docs.get(ref[ptype]) if ptype in ("page_id", "block_id", "data_source_id") else None


def search(n: Notion, call: Call) -> dict[str, Any]:
    body = call.body()
    text = body.get("query") or ""
    if not isinstance(text, str):
        raise body_validation("body.query", "should be a string", text)
    kinds = _search_kinds(body.get("filter"))
    descending = _search_direction(body.get("sort"))
    size = page_size(body.get("page_size"), "body.page_size")
    tree = _Tree(n)
    needle = text.lower()
    found: list[Doc] = []
    for kind in kinds:
        for doc in n.store.iter_raw(kind):
            title = title_text(doc) if kind == PAGE else plain_text(doc.get("title"))
            if needle in title.lower() and not tree.trashed(doc):
                found.append(doc)

    def key(doc: Doc) -> tuple[float, int]:
        sign = -1 if descending else 1
        return sign * float(doc["edited_at"]), sign * int(doc.get("seq", 0))

    found.sort(key=key)
    chunk, next_cursor = window(found, key, body.get("start_cursor"), size, tree.docs.get)
    results = [render_page(n, d) if d["object"] == "page" else render_data_source(n, d) for d in chunk]
    return result_list(results, next_cursor)


def _search_kinds(spec: object) -> tuple[str, ...]:
    if spec is None:
        return (PAGE, DATA_SOURCE)
    if not isinstance(spec, dict) or spec.get("property") != "object":
        raise body_validation("body.filter.property", "should be `object`", spec)
    value = spec.get("value")
    if value == "page":
        return (PAGE,)
    if value == "data_source":
        return (DATA_SOURCE,)
    raise body_validation("body.filter.value", "should be `page` or `data_source`", value)


def _search_direction(spec: object) -> bool:
    if spec is None:
        return True
    if not isinstance(spec, dict) or spec.get("timestamp", "last_edited_time") != "last_edited_time":
        raise body_validation("body.sort.timestamp", "should be `last_edited_time`", spec)
    direction = spec.get("direction", "descending")
    if direction not in ("ascending", "descending"):
        raise body_validation("body.sort.direction", "should be `ascending` or `descending`", direction)
    return bool(direction == "descending")


ROUTES: list[tuple[str, str, str, Handler]] = [
    ("POST", "/v1/data_sources/{data_source_id}/query", "data_sources.query", query_data_source),
    ("POST", "/v1/search", "search", search),
]
