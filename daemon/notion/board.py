"""The scene board: what the daemon made, shown in the page body under its own headings.

- "Assets": each generated image, its key as caption, as soon as it exists;
- "Scenes": per scene a heading, the narration, the frame and, once made, the clip;
- "Video": the final cut, playable (a smaller preview, and a line saying so, when the file is over
  the workspace's upload cap), and its thumbnail; the thumbnail (until it exists, the first
  scene's frame) is the page's cover, the final cut is in the Video files property (when the data
  source has one).

A section is its heading_2 and the blocks after it up to the next heading_1 or heading_2: those
blocks are the daemon's, and nothing else in the page is touched. Each write reads the sections
and changes only what differs (difflib over the blocks' signatures), so the board is replaced in
place and never duplicated, even when an append of an earlier write landed late. A media block
is known by its file's name, which carries the content's hash (daemon/notion/uploads.py): Notion
answers attached files with signed URLs that end in that name.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from daemon.db.models import Item
from daemon.logs import get_logger
from daemon.notion.body import block_text, children, plain
from daemon.notion.gateway import (
    NotionGateway,
    NotionNotFound,
)
from daemon.notion.props import text_value
from daemon.notion.uploads import NotSentYet, UploadRefused, Uploads
from services.states import ItemState
from services.storyboard import parse_storyboard

JSON = dict[str, Any]
SECTIONS = ("Assets", "Scenes", "Video")
VIDEO_PROPERTY = "Video"
THUMBNAIL_SUFFIX = ".thumbnail.jpg"  # beside the final cut (scripts/assemble_video.py)
SHOWN_KINDS = ("asset", "composite", "clip", "assembly")
LOG = get_logger(job="board")


class BoardNotReady(Exception):
    """Some of the board's files are not in Notion yet: the board is written once they are."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"{len(missing)} files not in Notion yet")
        self.missing = missing


def board_files(value: JSON) -> list[str]:
    """Every file the board shows, by workspace path."""
    files = [a["file"] for a in value["assets"]]
    files += [f for s in value["scenes"] for f in (s["frame"], s["clip"])]
    files += [value["video"], value.get("thumbnail")]
    return [str(f["path"]) for f in files if f is not None]


async def send_files(uploads: Uploads, value: JSON, now: datetime) -> None:
    """Sends the board's files to Notion (each once); a file that cannot go is left for the board
    to name. A Notion outage ends the round: the next one tries again."""
    for path in board_files(value):
        try:
            await uploads.send(path, now)
        except (UploadRefused, OSError) as exc:
            LOG.warning("board_file_not_sent", file=path, error=str(exc))


# What the board should show, from the database ----------------------------------------------------
async def board_value(conn: AsyncConnection, task: Any, workspace: Path | None = None) -> JSON | None:
    """The board of a task whose storyboard exists: files by workspace path, with a revision that
    changes when an item is made again (so the board is written again). The final cut's thumbnail
    (a sidecar the assembly writes) is on it when it exists in `workspace`."""
    if task.storyboard is None:
        return None
    storyboard = parse_storyboard(task.storyboard)
    rows = await conn.execute(
        select(Item.key, Item.output_path, Item.updated_at).where(
            Item.task_id == task.id,
            Item.state == ItemState.SUCCEEDED,
            Item.kind.in_(SHOWN_KINDS),
            Item.output_path.is_not(None),
        )
    )
    made = {key: {"path": path, "rev": updated.isoformat()} for key, path, updated in rows}
    return {
        "assets": [{"key": a.key, "file": made.get(f"asset_{a.key}")} for a in storyboard.assets],
        "scenes": [
            {
                "key": s.key,
                "narration": s.narration,
                "frame": made.get(f"composite_{s.key}"),
                "clip": made.get(f"clip_{s.key}"),
            }
            for s in storyboard.scenes
        ],
        "video": made.get("assembly"),
        "thumbnail": _thumbnail(made.get("assembly"), workspace),
    }


def _thumbnail(video: JSON | None, workspace: Path | None) -> JSON | None:
    if video is None or workspace is None:
        return None
    path = f"{video['path']}{THUMBNAIL_SUFFIX}"
    return {"path": path, "rev": video["rev"]} if (workspace / path).is_file() else None


# Writing it -----------------------------------------------------------------------------------------
def _heading(level: int, text: str) -> JSON:
    kind = f"heading_{level}"
    return {"type": kind, kind: {"rich_text": text_value(text)["rich_text"]}}


def _paragraph(text: str) -> JSON:
    return {"type": "paragraph", "paragraph": {"rich_text": text_value(text)["rich_text"]}}


KEPT = "kept"  # a media block whose file is gone from the workspace: the page keeps what it shows


def _kept(kind: str, caption: str) -> JSON:
    """Stands for the block the page already shows for this caption, whose file retention removed
    once the page showed it; never sent to Notion as it is (_shown)."""
    return {"type": kind, kind: {"type": KEPT, "caption": text_value(caption)["rich_text"]}}


def _is_kept(block: JSON) -> bool:
    return (block.get(str(block.get("type"))) or {}).get("type") == KEPT


def _shown(blocks: Sequence[JSON]) -> list[JSON]:
    """The blocks as they go to Notion: a kept block with nothing on the page to keep is a line."""
    out = []
    for block in blocks:
        if _is_kept(block):
            caption = plain(block[str(block["type"])]["caption"])
            block = _paragraph(f"{caption}: not shown here (retention removed it from the workspace)")
        out.append(block)
    return out


def _media(kind: str, upload_id: str, caption: str) -> JSON:
    return {
        "type": kind,
        kind: {
            "type": "file_upload",
            "file_upload": {"id": upload_id},
            "caption": text_value(caption)["rich_text"],
        },
    }


class _Files:
    """The board's files sent to Notion: a media block each, or a line saying why it is not there."""

    def __init__(self, uploads: Uploads, now: datetime) -> None:
        self.uploads = uploads
        self.now = now
        self.names: dict[str, str] = {}  # upload id -> the name its signed URL ends in
        self.ids: dict[str, str] = {}  # workspace path -> upload id
        self.missing: list[str] = []  # files not sent yet

    async def blocks(self, kind: str, file: JSON | None, caption: str) -> list[JSON]:
        if file is None:
            return []
        path = str(file["path"])
        try:
            sent = await self.uploads.sent(path, self.now)
        except NotSentYet:
            self.missing.append(path)
            return []
        except FileNotFoundError:
            # Retention removes a done video's files only once its page shows them: a write of the
            # board after that (an unanswered write's recheck) keeps the blocks the page has.
            return [_kept(kind, caption)]
        except (UploadRefused, OSError) as exc:
            LOG.warning("board_file_not_shown", file=path, error=str(exc))
            return [_paragraph(f"{caption}: not shown here ({exc}). The file is {path} in the workspace.")]
        self.names[sent.upload_id] = sent.filename
        self.ids[path] = sent.upload_id
        out = [_media(kind, sent.upload_id, caption)]
        if sent.preview is not None:
            out.append(_paragraph(sent.preview.note()))
        return out


async def _sections(value: JSON, files: _Files) -> dict[str, list[JSON]]:
    assets: list[JSON] = []
    for asset in value["assets"]:
        assets += await files.blocks("image", asset["file"], asset["key"])
    scenes: list[JSON] = []
    for number, scene in enumerate(value["scenes"], 1):
        scenes.append(_heading(3, f"Scene {number} · {scene['key']}"))
        scenes.append(_paragraph(scene["narration"]))
        scenes += await files.blocks("image", scene["frame"], f"Scene {number} frame")
        scenes += await files.blocks("video", scene["clip"], f"Scene {number} clip")
    video = await files.blocks("video", value["video"], "Final cut")
    video += await files.blocks("image", value.get("thumbnail"), "Thumbnail")
    return {"Assets": assets, "Scenes": scenes, "Video": video}


def _signature(block: JSON, names: dict[str, str]) -> str:
    """What a block shows: its type, its text or caption, and for a file the name it is known by."""
    kind = str(block.get("type"))
    content = block.get(kind) or {}
    text = block_text(block) if "rich_text" in content else plain(content.get("caption", []))
    name = ""
    if content.get("type") == "file_upload":
        name = names.get(str(content["file_upload"]["id"]), "")
    elif content.get("type") == "file":
        name = unquote(urlsplit(str(content["file"].get("url", ""))).path.rsplit("/", 1)[-1])
    return f"{kind}|{text}|{name}"


async def write_board(
    notion: NotionGateway, uploads: Uploads, page_id: str, value: JSON, previous: JSON | None, now: datetime
) -> None:
    files = _Files(uploads, now)
    wanted = await _sections(value, files)
    if files.missing:
        raise BoardNotReady(files.missing)
    blocks = await children(notion, page_id)
    for name in SECTIONS:
        start, existing = find_section(blocks, name)
        if start is None:
            anchor = _last_of_board(blocks)
            made = await _append(notion, page_id, [_heading(2, name), *_shown(wanted[name])], anchor)
            blocks = await children(notion, page_id) if made else blocks
            continue
        await _reconcile(notion, page_id, start, existing, wanted[name], files.names)
    await uploads.attached(list(files.names), now)
    await _page_media(notion, page_id, value, previous, files)


def find_section(blocks: list[JSON], name: str) -> tuple[str | None, list[JSON]]:
    """The section's heading id and its blocks."""
    for i, block in enumerate(blocks):
        if block.get("type") == "heading_2" and block_text(block).strip() == name:
            section: list[JSON] = []
            for after in blocks[i + 1 :]:
                if after.get("type") in ("heading_1", "heading_2"):
                    break
                section.append(after)
            return str(block["id"]), section
    return None, []


def _last_of_board(blocks: list[JSON]) -> str | None:
    """Where a missing section goes: after the last section of the board there is, else at the end."""
    last: str | None = None
    for name in SECTIONS:
        start, section = find_section(blocks, name)
        if start is not None:
            last = str(section[-1]["id"]) if section else start
    return last


async def _append(notion: NotionGateway, page_id: str, new: Sequence[JSON], after: str | None) -> list[str]:
    """Appends blocks (100 per call) after `after` (at the end when None); returns their ids."""
    ids: list[str] = []
    for start in range(0, len(new), 100):
        body: JSON = {"children": list(new[start : start + 100])}
        if after is not None:
            body["position"] = {"type": "after_block", "after_block": {"id": after}}
        made = await notion.call("PATCH", f"blocks/{page_id}/children", body=body, idempotent=False)
        ids += [str(b["id"]) for b in made.get("results", [])]
        if ids:
            after = ids[-1]
    return ids


async def _reconcile(
    notion: NotionGateway,
    page_id: str,
    heading: str,
    existing: list[JSON],
    wanted: list[JSON],
    names: dict[str, str],
) -> None:
    have = [_signature(b, {}) for b in existing]
    want = [_signature(b, names) for b in wanted]
    for j, block in enumerate(wanted):
        if _is_kept(block):  # the block the page shows for this caption, whatever its file
            slot = want[j].rsplit("|", 1)[0] + "|"
            want[j] = next((h for h in have if h.startswith(slot)), want[j])
    anchor = heading
    matcher = difflib.SequenceMatcher(a=have, b=want, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            anchor = str(existing[i2 - 1]["id"])
            continue
        for old in existing[i1:i2]:  # delete and replace: the old blocks go
            with contextlib.suppress(NotionNotFound):  # deleted already (by the operator, an earlier try)
                await notion.call("DELETE", f"blocks/{old['id']}")
        if j2 > j1:
            made = await _append(notion, page_id, _shown(wanted[j1:j2]), anchor)
            anchor = made[-1] if made else anchor


async def _page_media(
    notion: NotionGateway, page_id: str, value: JSON, previous: JSON | None, files: _Files
) -> None:
    """The cover (the video's thumbnail, until there is one the first scene's frame) and the Video
    files property (the final cut), written when they changed since the board's last write."""
    update: JSON = {}
    frame = (value["scenes"][0]["frame"] if value["scenes"] else None) or None
    old_frame = ((previous or {}).get("scenes") or [{}])[0].get("frame")
    if value.get("thumbnail") is not None:  # the video's own thumbnail, once there is one
        frame, old_frame = value["thumbnail"], (previous or {}).get("thumbnail")
    if frame is not None and frame != old_frame and frame["path"] in files.ids:
        update["cover"] = {"type": "file_upload", "file_upload": {"id": files.ids[frame["path"]]}}
    video = value["video"]
    if video is not None and video != (previous or {}).get("video") and video["path"] in files.ids:
        page = await notion.call("GET", f"pages/{page_id}")
        if (page.get("properties", {}).get(VIDEO_PROPERTY) or {}).get("type") == "files":
            update["properties"] = {
                VIDEO_PROPERTY: {
                    "files": [
                        {
                            "type": "file_upload",
                            "file_upload": {"id": files.ids[video["path"]]},
                            "name": video["path"].rsplit("/", 1)[-1],
                        }
                    ]
                }
            }
    if update:
        await notion.call("PATCH", f"pages/{page_id}", body=update)
