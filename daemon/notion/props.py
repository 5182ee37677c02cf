"""Reading page properties and writing property values, in Notion's JSON shapes."""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]
RICH_TEXT_LIMIT = 2000  # characters per rich text object


def plain_text(prop: JSON | None) -> str:
    """The text of a title or rich_text property ('' when absent or empty)."""
    if not prop:
        return ""
    parts = prop.get(prop.get("type", ""), [])
    if not isinstance(parts, list):
        return ""
    return "".join(str(p.get("plain_text") or p.get("text", {}).get("content", "")) for p in parts)


def option_name(prop: JSON | None) -> str | None:
    """The chosen option of a select or status property."""
    if not prop:
        return None
    value = prop.get(prop.get("type", ""))
    return value.get("name") if isinstance(value, dict) else None


def text_value(text: str) -> JSON:
    """A rich_text value; long text is split into 2,000-character pieces (Notion's limit per piece)."""
    pieces = [text[i : i + RICH_TEXT_LIMIT] for i in range(0, len(text), RICH_TEXT_LIMIT)][:100]
    return {"rich_text": [{"type": "text", "text": {"content": p}} for p in pieces]}
