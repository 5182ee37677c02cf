"""The scene board in the page body: the gates show what they ask about before they ask, an edited
scene's blocks are replaced in place (never duplicated, other files not sent again), an append
whose answer was lost is not repeated, and the operator's own text stays where it is."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from daemon.notion.board import find_section
from daemon.notion.body import block_text, read_storyboard_block, write_storyboard_block
from tests.support.db import ON_SQLITE
from tests.support.media import FFMPEG
from tests.support.notion_kit import NotionKit
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import credentials


@pytest.fixture
async def kit(sandbox: SandboxProcess, db_url: str, tmp_path: Path) -> AsyncIterator[NotionKit]:
    k = NotionKit(sandbox, db_url, tmp_path)
    yield k
    await k.close()


async def _waiting_at(kit: NotionKit, page: str, gate: str) -> bool:
    task = await kit.task(page)
    item = (await kit.items(task.id)).get(gate) if task is not None else None
    return item is not None and item.state == "ready"


def _section(blocks: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    start, section = find_section(blocks, name)
    assert start is not None, f"no {name} section"
    return section


def _shown(blocks: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(type, caption or text) of each block."""
    out = []
    for b in blocks:
        content = b[b["type"]]
        text = (
            block_text(b) if "rich_text" in content else "".join(r["plain_text"] for r in content["caption"])
        )
        out.append((b["type"], text))
    return out


def _file_name(block: dict[str, Any]) -> str:
    return str(block[block["type"]]["file"]["url"]).rsplit("/", 1)[-1]


async def test_each_gate_shows_what_it_asks_about_before_it_asks(
    kit: NotionKit, sandbox: SandboxProcess
) -> None:
    await kit.start(gates={"storyboard": True, "assets": True, "final": True})
    page = kit.pages[0]
    # The operator's own notes, above anything the daemon writes, stay as they are.
    assert kit.operator
    await kit.operator.call(
        "PATCH",
        f"blocks/{page}/children",
        body={
            "children": [
                {"type": "paragraph", "paragraph": {"rich_text": [{"text": {"content": "My notes"}}]}}
            ]
        },
    )
    await kit.set(page, Status="Queued")
    await kit.poll()
    await kit.work(lambda: _waiting_at(kit, page, "storyboard_gate"))
    await kit.flush()
    assert (await kit.page(page))["Status"] == "Storyboard Review"
    blocks = await kit.blocks(page)
    assert _shown(blocks)[0] == ("paragraph", "My notes")
    scenes = _shown(_section(blocks, "Scenes"))
    assert scenes[:2] == [("heading_3", "Scene 1 · s01"), ("paragraph", "Scene 1 of a patient morning.")]
    assert _section(blocks, "Assets") == [] and _section(blocks, "Video") == []
    assert any("Scenes section" in c for c in await kit.comments(page))

    await kit.set(page, Status="Storyboard Approved")
    await kit.poll()
    await kit.work(lambda: _waiting_at(kit, page, "assets_gate"))
    # The images cannot reach Notion for now: the page must not ask for their review yet.
    sandbox.fault(provider="notion", kind="error", status=503, endpoint="/send", count=100)
    await kit.flush()
    assert (await kit.page(page))["Status"] != "Assets Review"
    assert not any("Assets section" in c for c in await kit.comments(page))
    sandbox.clear_faults()
    await kit.db_time_travel_comments()
    await kit.flush()
    assert (await kit.page(page))["Status"] == "Assets Review"
    assets = _section(await kit.blocks(page), "Assets")
    assert _shown(assets) == [("image", "env_s01"), ("image", "char_s01")]
    assert any("Assets section" in c for c in await kit.comments(page))

    await kit.set(page, Status="Assets Approved")
    await kit.poll()
    await kit.work(lambda: _waiting_at(kit, page, "final_gate"))
    await kit.flush()
    assert (await kit.page(page))["Status"] == "Final Review"
    blocks = await kit.blocks(page)
    assert _shown(_section(blocks, "Video")) == [("video", "Final cut"), ("image", "Thumbnail")]
    # The video's thumbnail is the page's cover now (the first scene's frame was until then).
    assert kit.operator
    cover = (await kit.operator.call("GET", f"pages/{page}"))["cover"]
    assert re.search(r"\.thumbnail-[0-9a-f]{12}\.jpg$", str(cover["file"]["url"]).split("?")[0]), cover
    scene = _shown(_section(blocks, "Scenes"))
    assert ("image", "Scene 1 frame") in scene and ("video", "Scene 1 clip") in scene
    page_now = await kit.page(page)
    assert page_now["Video"] and page_now["Video"][0]["name"].endswith(".mp4")
    assert _shown(blocks)[0] == ("paragraph", "My notes")
    # Each file went to Notion once, however many times the board was written.
    assert set(sandbox.file_sends().values()) == {1}


async def test_an_edited_scene_replaces_its_blocks_in_place_and_sends_only_what_changed(
    kit: NotionKit, sandbox: SandboxProcess
) -> None:
    await kit.start(gates={"storyboard": False, "assets": False, "final": True}, channel={"scenes": 2})
    page = kit.pages[0]
    await kit.set(page, Status="Queued")
    await kit.poll()
    await kit.work(lambda: _waiting_at(kit, page, "final_gate"))
    await kit.flush()
    before = await kit.blocks(page)
    first = {
        b[b["type"]]["caption"][0]["plain_text"]: _file_name(b)
        for b in before
        if b["type"] in ("image", "video")
    }
    sent_before = sum(sandbox.file_sends().values())

    # The operator stops the video, rewrites scene 2's motion and queues the page again: a new
    # clip for scene 2, and a new final cut.
    assert kit.operator and kit.scripts
    await kit.set(page, Status="Cancelled")
    await kit.poll()
    await kit.flush()
    block = await read_storyboard_block(kit.operator, page)
    plan = yaml.safe_load(str(block.text))
    plan["scenes"][1]["motion"] = "A slow pan to the left"
    await write_storyboard_block(kit.operator, page, yaml.safe_dump(plan, sort_keys=False))
    await kit.set(page, Status="Queued")
    await kit.poll()
    await kit.work(lambda: _waiting_at(kit, page, "final_gate"))
    await kit.flush()
    after = await kit.blocks(page)
    second = {
        b[b["type"]]["caption"][0]["plain_text"]: _file_name(b)
        for b in after
        if b["type"] in ("image", "video")
    }
    assert set(second) == set(first)  # one block per file, none duplicated
    changed = {caption for caption in first if first[caption] != second[caption]}
    assert changed == {"Scene 2 clip", "Final cut"}
    assert sum(sandbox.file_sends().values()) - sent_before == 2
    headings = Counter(block_text(b) for b in after if b["type"] == "heading_2")
    assert headings == {"Storyboard": 1, "Assets": 1, "Scenes": 1, "Video": 1}


async def test_an_append_whose_answer_was_lost_is_not_repeated(
    kit: NotionKit, sandbox: SandboxProcess
) -> None:
    await kit.start(gates={"storyboard": False, "assets": False, "final": True}, notion_late_write_s=0.5)
    page = kit.pages[0]
    await kit.set(page, Status="Queued")
    await kit.poll()
    await kit.work(lambda: _waiting_at(kit, page, "final_gate"))
    # Notion applies the board's appends and the answers are lost (then it answers again).
    token = credentials(sandbox)["notion_token"]  # the daemon's appends, not the operator's reads
    sandbox.fault(
        provider="notion",
        kind="apply_then_fail",
        status=502,
        endpoint="^PATCH .*children$",
        count=3,
        token=token,
    )
    for _ in range(6):
        await kit.db_time_travel_comments()
        await kit.flush()
    faults = sandbox.get("/_sandbox/faults")["faults"]
    assert faults == [], faults  # used up: all three answers were lost
    blocks = await kit.blocks(page)
    headings = Counter(block_text(b) for b in blocks if b["type"] == "heading_2")
    assert headings == {"Storyboard": 1, "Assets": 1, "Scenes": 1, "Video": 1}
    media = Counter(
        b[b["type"]]["caption"][0]["plain_text"] for b in blocks if b["type"] in ("image", "video")
    )
    assert set(media.values()) == {1}
    assert (await kit.page(page))["Status"] == "Final Review"


def _big_video(path: Path, seconds: int = 8) -> None:
    """A real 720p video with sound, over 5 MiB (noise does not compress)."""
    subprocess.run(
        [
            FFMPEG, "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=25:duration={seconds}",
            "-f", "lavfi", "-i", f"anoisesrc=duration={seconds}:amplitude=0.1",
            "-vf", "noise=alls=60:allf=t", "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "8M",
            "-c:a", "aac", "-shortest", str(path),
        ],
        check=True,
        timeout=120,
    )  # fmt: skip


def _decoded_seconds(path: Path) -> float:
    """Decodes the whole file; the duration of what decoded."""
    done = subprocess.run(
        [FFMPEG, "-hide_banner", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-500:]
    times = re.findall(r"time=(\d+):(\d+):(\d+\.\d+)", done.stderr)
    h, m, s = times[-1]
    return int(h) * 3600 + int(m) * 60 + float(s)


@ON_SQLITE  # the preview is the same on either database; its video takes seconds to make
async def test_a_video_over_the_workspace_cap_is_shown_as_a_preview_under_it(
    fresh_sandbox: SandboxProcess, database: str, tmp_path: Path
) -> None:
    cap = 5 * 1024 * 1024
    fresh_sandbox.configure(notion_upload_cap=cap)
    kit = NotionKit(fresh_sandbox, database, tmp_path)
    try:
        await kit.start(gates={"storyboard": False, "assets": False, "final": True}, channel={"scenes": 1})
        page = kit.pages[0]
        await kit.set(page, Status="Queued")
        await kit.poll()
        await kit.work(lambda: _waiting_at(kit, page, "final_gate"))
        # The assembly's output, as big as a real final cut on a free workspace.
        task = await kit.task(page)
        assert kit.app
        final = kit.app.settings.workspace_dir / str(task.final_video_path)
        _big_video(final)
        assert final.stat().st_size > cap
        await kit.flush()
        assert (await kit.page(page))["Status"] == "Final Review"
        video = _shown(_section(await kit.blocks(page), "Video"))
        assert video[0] == ("video", "Final cut")
        assert video[1][0] == "paragraph" and "smaller preview" in video[1][1] and "5.0 MB" in video[1][1]
        [entry] = (await kit.page(page))["Video"]
        shown = tmp_path / "shown.mp4"
        shown.write_bytes(httpx.get(entry["file"]["url"], timeout=60).content)
        assert 0 < shown.stat().st_size <= cap
        assert _decoded_seconds(shown) == pytest.approx(_decoded_seconds(final), abs=0.5)
    finally:
        await kit.close()
