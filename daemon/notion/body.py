"""The Storyboard block in a page body: a heading "Storyboard" followed by a YAML code block.

Read at intake (an operator's storyboard wins over generation) and written back in place: the code
block is updated when it exists, appended once when it does not; never duplicated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from daemon.notion.gateway import NotionGateway
from daemon.notion.props import text_value

HEADING = "storyboard"
JSON = dict[str, Any]


@dataclass(frozen=True)
class StoryboardBlock:
    text: str | None
    code_id: str | None
    heading_id: str | None


def plain(rich: list[JSON]) -> str:
    """A rich text array's text, as Notion answers it (plain_text) or as it was written."""
    return "".join(str(p.get("plain_text") or p.get("text", {}).get("content", "")) for p in rich)


def block_text(block: JSON) -> str:
    content = block.get(block.get("type", ""), {})
    return plain(content.get("rich_text", []) if isinstance(content, dict) else [])


async def children(notion: NotionGateway, page_id: str) -> list[JSON]:
    blocks: list[JSON] = []
    cursor: str | None = None
    while True:
        query: JSON = {"page_size": 100}
        if cursor:
            query["start_cursor"] = cursor
        listing = await notion.call("GET", f"blocks/{page_id}/children", query=query)
        blocks.extend(listing.get("results", []))
        cursor = listing.get("next_cursor")
        if not listing.get("has_more") or not cursor:
            return blocks


async def read_storyboard_block(notion: NotionGateway, page_id: str) -> StoryboardBlock:
    """The first code block after a heading named Storyboard (any level), if there is one."""
    heading_id: str | None = None
    for block in await children(notion, page_id):
        kind = block.get("type", "")
        if kind.startswith("heading_") and block_text(block).strip().lower() == HEADING:
            heading_id = str(block["id"])
            continue
        if heading_id and kind == "code":
            return StoryboardBlock(block_text(block), str(block["id"]), heading_id)
        if heading_id and kind.startswith("heading_"):
            break  # the next section began without a code block
    return StoryboardBlock(None, None, heading_id)


def _code_block(yaml_text: str) -> JSON:
    return {
        "object": "block",
        "type": "code",
        "code": {"language": "yaml", "rich_text": text_value(yaml_text)["rich_text"]},
    }


async def write_storyboard_block(notion: NotionGateway, page_id: str, yaml_text: str) -> None:
    found = await read_storyboard_block(notion, page_id)
    if found.code_id:
        await notion.call(
            "PATCH",
            f"blocks/{found.code_id}",
            body={"code": {"language": "yaml", "rich_text": text_value(yaml_text)["rich_text"]}},
        )
        return
    if found.heading_id:
        await notion.call(
            "PATCH",
            f"blocks/{page_id}/children",
            idempotent=False,
            body={
                "children": [_code_block(yaml_text)],
                "position": {"type": "after_block", "after_block": {"id": found.heading_id}},
            },
        )
        return
    heading = {
        "object": "block",
        "type": "heading_2",
        "heading_2": {"rich_text": [{"type": "text", "text": {"content": "Storyboard"}}]},
    }
    await notion.call(
        "PATCH",
        f"blocks/{page_id}/children",
        idempotent=False,
        body={"children": [heading, _code_block(yaml_text)]},
    )
