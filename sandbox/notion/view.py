"""A read-only HTML view of a page, at /_sandbox/pages/<id>: its title, cover, properties and body,
with images shown and videos playable, so the board can be watched without Notion. It reads the
page as the API answers it (the same rendering notion-client gets), never the store directly."""

from __future__ import annotations

from html import escape
from typing import Any

from sandbox.http import Request, Response
from sandbox.notion.blocks import render_node
from sandbox.notion.objects import normalize_id
from sandbox.notion.pages import render_page
from sandbox.notion.state import BLOCK, PAGE, Notion

_STYLE = """
body { font: 16px/1.5 system-ui, sans-serif; max-width: 960px; margin: 0 auto 4em; padding: 0 1em }
.cover { width: 100%; max-height: 280px; object-fit: cover; display: block }
table.props { border-collapse: collapse; margin: 1em 0 }
table.props td { padding: 2px 12px 2px 0; vertical-align: top }
table.props td:first-child { color: #777 }
figure { margin: 0.6em 0 } figure img, figure video { max-width: 100%; border-radius: 4px }
figcaption { color: #777; font-size: 14px } pre { background: #f6f6f4; padding: 0.8em; overflow-x: auto }
"""


def _text(rich: list[dict[str, Any]] | None) -> str:
    return escape("".join(str(r.get("plain_text", "")) for r in rich or []))


def _url(file_ref: dict[str, Any] | None) -> str | None:
    if not file_ref:
        return None
    kind = file_ref.get("type")
    return str((file_ref.get(kind) or {}).get("url") or "") or None if kind else None


def _value(prop: dict[str, Any]) -> str:
    kind = prop["type"]
    value = prop.get(kind)
    if kind in ("title", "rich_text"):
        return _text(value)
    if kind in ("select", "status"):
        return escape(value["name"]) if value else ""
    if kind == "multi_select":
        return escape(", ".join(o["name"] for o in value or []))
    if kind == "date":
        return escape(value["start"]) if value else ""
    if kind == "files":
        links = [f'<a href="{escape(_url(f) or "")}">{escape(str(f.get("name")))}</a>' for f in value or []]
        return ", ".join(links)
    if kind == "url" and value:
        return f'<a href="{escape(value)}">{escape(value)}</a>'
    return "" if value is None else escape(str(value))


def _block(n: Notion, block: dict[str, Any]) -> str:
    kind = block["type"]
    content = block.get(kind) or {}
    if kind.startswith("heading_"):
        level = int(kind[-1]) + 1
        return f"<h{level}>{_text(content.get('rich_text'))}</h{level}>"
    if kind == "code":
        language = escape(content.get("language", ""))
        return f'<pre data-language="{language}">{_text(content.get("rich_text"))}</pre>'
    if kind in ("image", "video", "audio", "file", "pdf"):
        url = escape(_url(content) or "")
        caption = (
            f"<figcaption>{_text(content.get('caption'))}</figcaption>" if content.get("caption") else ""
        )
        media = {
            "image": f'<img src="{url}" alt="{_text(content.get("caption"))}">',
            "video": f'<video src="{url}" controls preload="metadata"></video>',
            "audio": f'<audio src="{url}" controls></audio>',
        }.get(kind, f'<a href="{url}">file</a>')
        return f'<figure class="{kind}">{media}{caption}</figure>'
    if kind == "divider":
        return "<hr>"
    if kind in ("bulleted_list_item", "numbered_list_item", "to_do"):
        return f"<li>{_text(content.get('rich_text'))}</li>"
    if kind == "child_page":
        return f'<p><a href="/_sandbox/pages/{block["id"]}">{escape(content.get("title", ""))}</a></p>'
    if "rich_text" in content:
        return f"<p>{_text(content.get('rich_text'))}</p>"
    return ""


def _children(n: Notion, doc: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for child_id in doc.get("children", []):
        found = n.find_node(child_id)
        if found is not None and not found[1].get("in_trash"):
            out.append(render_node(n, *found))
    return out


def page_view(n: Notion, request: Request) -> Response:
    try:
        page_id = normalize_id(request.params.get("page_id", ""))
    except Exception:
        return Response(404, b"no such page", {"Content-Type": "text/plain"})
    with n.store.lock:
        doc = n.get(PAGE, page_id)
        if doc is None or n.trashed(doc):
            return Response(404, b"no such page", {"Content-Type": "text/plain"})
        page = render_page(n, doc)
        parts: list[str] = []
        for block in _children(n, doc):
            parts.append(_block(n, block))
            if block.get("has_children") and block["type"] != "child_page":
                nested = n.get(BLOCK, block["id"]) or {}
                parts += [_block(n, b) for b in _children(n, nested)]
    title = next((_value(p) for p in page["properties"].values() if p["type"] == "title"), "")
    cover = _url(page.get("cover"))
    rows = "".join(
        f"<tr><td>{escape(name)}</td><td>{_value(prop)}</td></tr>"
        for name, prop in page["properties"].items()
        if prop["type"] != "title"
    )
    html = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{_STYLE}</style></head><body>"
        + (f'<img class="cover" src="{escape(cover)}" alt="cover">' if cover else "")
        + f"<h1>{title}</h1><table class='props'>{rows}</table>"
        + "".join(parts)
        + "</body></html>"
    )
    return Response(200, html.encode(), {"Content-Type": "text/html; charset=utf-8"})
