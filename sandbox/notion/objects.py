"""Primitives shared by every Notion object: ids, timestamps, rich text, user references, URLs."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from sandbox.notion.errors import body_validation, validation

MAX_TEXT = 2000  # characters per rich text item's content
MAX_ARRAY = 100  # items per rich text array, blocks per append

_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")
_DASHED = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

ANNOTATIONS_DEFAULT: dict[str, Any] = {
    "bold": False,
    "italic": False,
    "strikethrough": False,
    "underline": False,
    "code": False,
    "color": "default",
}


def new_id() -> str:
    return str(uuid.uuid4())


def now() -> float:
    return time.time()


def normalize_id(value: object, where: str = "path.id") -> str:
    """Notion accepts ids with or without dashes and answers with the dashed form."""
    if isinstance(value, str):
        text = value.strip()
        if _DASHED.match(text):
            return text.lower()
        if _HEX32.match(text):
            h = text.lower()
            return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    raise validation(
        f"{where.split('.')[0]} failed validation: {where} should be a valid uuid, instead was `{value!r}`."
    )


# Times -------------------------------------------------------------------------------------------
def minute_iso(ts: float) -> str:
    """Pages, blocks, data sources and comments: rounded DOWN to the minute, like Notion."""
    return datetime.fromtimestamp(floor_minute(ts), UTC).strftime("%Y-%m-%dT%H:%M:00.000Z")


def floor_minute(ts: float) -> float:
    return float(int(ts // 60) * 60)


def precise_iso(ts: float) -> str:
    """Databases keep milliseconds and an explicit offset ("2026-07-04T09:09:08.209+00:00")."""
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}+00:00"


def parse_when(value: object, where: str) -> tuple[float, float]:
    """An ISO date or date-time as an epoch range: a date covers its whole (UTC) day."""
    if not isinstance(value, str) or not value:
        raise body_validation(where, "should be an ISO 8601 date string", value)
    text = value.strip()
    try:
        if len(text) == 10:
            day = datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()
            return day, day + 86400 - 0.001
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise body_validation(where, "should be an ISO 8601 date string", value) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    ts = dt.timestamp()
    return ts, ts


# Users -------------------------------------------------------------------------------------------
def user_ref(user_id: str) -> dict[str, str]:
    return {"object": "user", "id": user_id}


# Rich text ---------------------------------------------------------------------------------------
def rich_text(items: object, where: str) -> list[dict[str, Any]]:
    """Normalizes a request's rich text array into Notion's answer form, enforcing its limits."""
    if not isinstance(items, list):
        raise body_validation(where, "should be an array", items)
    if len(items) > MAX_ARRAY:
        raise body_validation(f"{where}.length", f"should be ≤ `{MAX_ARRAY}`", len(items))
    return [_rich_item(item, f"{where}[{i}]") for i, item in enumerate(items)]


def _rich_item(item: object, where: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise body_validation(where, "should be an object", item)
    annotations = {**ANNOTATIONS_DEFAULT, **(item.get("annotations") or {})}
    kind = item.get("type") or next((k for k in ("text", "mention", "equation") if k in item), None)
    if kind == "text":
        return _text_item(item.get("text"), annotations, where)
    if kind == "equation":
        expression = str((item.get("equation") or {}).get("expression", ""))
        return _item("equation", {"expression": expression}, annotations, expression, None)
    if kind == "mention":
        mention = item.get("mention") or {}
        return _item("mention", mention, annotations, str(item.get("plain_text", "")), None)
    raise body_validation(f"{where}.text", "should be defined", None)


def _text_item(text: object, annotations: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(text, dict) or not isinstance(text.get("content"), str):
        raise body_validation(f"{where}.text.content", "should be a string", None)
    content = text["content"]
    if len(content) > MAX_TEXT:
        raise body_validation(f"{where}.text.content.length", f"should be ≤ `{MAX_TEXT}`", len(content))
    link = text.get("link")
    if link is not None and not (isinstance(link, dict) and isinstance(link.get("url"), str)):
        raise body_validation(f"{where}.text.link.url", "should be a string", link)
    href = link["url"] if link else None
    return _item("text", {"content": content, "link": link}, annotations, content, href)


def _item(
    kind: str, payload: dict[str, Any], annotations: dict[str, Any], plain: str, href: str | None
) -> dict[str, Any]:
    return {"type": kind, kind: payload, "annotations": annotations, "plain_text": plain, "href": href}


def plain_text(items: list[dict[str, Any]] | None) -> str:
    return "".join(str(i.get("plain_text", "")) for i in items or [])


def text_item(content: str) -> dict[str, Any]:
    return _item("text", {"content": content, "link": None}, dict(ANNOTATIONS_DEFAULT), content, None)


# URLs --------------------------------------------------------------------------------------------
def page_url(object_id: str, title: str = "") -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-")
    hexid = object_id.replace("-", "")
    return f"https://app.notion.com/p/{slug + '-' if slug else ''}{hexid}"
