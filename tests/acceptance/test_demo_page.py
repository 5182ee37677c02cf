"""The demo's page, as the operator sees it: read through notion-client, an image per asset, a frame
and a clip per scene, the final cut, and its thumbnail, also the cover, each file sent to Notion
once; and opened in a real browser (Debian's Chromium, headless) at the sandbox's page view: the
images load and the video plays."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from notion_client import Client

from daemon.notion.board import find_section
from tests.support.ci import skip_unless_ci
from tests.support.demo_run import SHARED_DEMO, DemoRun
from tests.support.sandbox_proc import SandboxProcess

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def served(demo: DemoRun) -> Iterator[tuple[SandboxProcess, str]]:
    """The demo's sandbox, serving its state again after the demo stopped it; the demo's page."""
    assert demo.first.returncode == 0, demo.first.stdout[-2000:] + demo.first.stderr[-2000:]
    page = json.loads((demo.workspace / "demo" / "demo.json").read_text())["page_id"]
    proc = SandboxProcess(demo.state).start()
    yield proc, str(page)
    proc.stop()


@pytest.fixture
def notion(served: tuple[SandboxProcess, str]) -> Iterator[Client]:
    proc = served[0]
    token = json.loads((proc.state_dir / "credentials.json").read_text())["notion_token"]
    with httpx.Client(timeout=60) as http:
        yield Client(client=http, auth=token, base_url=proc.base("notion"), retry=False)


def _caption(block: dict[str, Any]) -> str:
    return "".join(r["plain_text"] for r in block[block["type"]]["caption"])


@SHARED_DEMO
def test_the_demo_page_holds_every_image_frame_clip_and_the_final_cut(
    demo: DemoRun, served: tuple[SandboxProcess, str], notion: Client
) -> None:
    proc, page = served
    blocks = notion.blocks.children.list(page, page_size=100)["results"]
    storyboard = json.loads(
        next((demo.workspace / "demo" / "workspace").rglob("storyboard.json")).read_text()
    )
    assets = [b for b in find_section(blocks, "Assets")[1] if b["type"] == "image"]
    assert [_caption(b) for b in assets] == [a["key"] for a in storyboard["assets"]]
    scenes = find_section(blocks, "Scenes")[1]
    frames = [b for b in scenes if b["type"] == "image"]
    clips = [b for b in scenes if b["type"] == "video"]
    assert len(frames) == len(clips) == len(storyboard["scenes"]) == 4
    [final] = [b for b in find_section(blocks, "Video")[1] if b["type"] == "video"]
    [thumb] = [b for b in find_section(blocks, "Video")[1] if b["type"] == "image"]
    assert _caption(thumb) == "Thumbnail"
    shown = httpx.get(final["video"]["file"]["url"], timeout=60).content
    made = Path(demo.first.stdout.strip().splitlines()[-1]).read_bytes()
    assert shown == made  # the final cut itself (under the sandbox's default cap)
    read = notion.pages.retrieve(page)
    assert read["cover"]["type"] == "file"
    # The cover is the video's thumbnail (a JPEG the assembly wrote beside the final cut).
    cover = httpx.get(read["cover"]["file"]["url"], timeout=60).content
    assert cover[:3] == b"\xff\xd8\xff"
    assert cover == Path(f"{demo.first.stdout.strip().splitlines()[-1]}.thumbnail.jpg").read_bytes()
    assert read["properties"]["Video"]["files"][0]["file"]["url"].endswith(".mp4")
    # Each file went to Notion once.
    sends = proc.file_sends()
    assert len(sends) == len(assets) + len(frames) + len(clips) + 2  # the final cut and its thumbnail
    assert set(sends.values()) == {1}


@SHARED_DEMO
def test_a_browser_sees_the_demo_page_with_its_images_and_a_playable_video(
    served: tuple[SandboxProcess, str],
) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if CHROMIUM is None or CHROMEDRIVER is None:
        skip_unless_ci("Debian's chromium and chromium-driver are missing: apt-get install them")
    proc, page = served
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.get(f"{proc.url}/_sandbox/pages/{page}")
        assert "The Heron" in driver.title
        deadline = time.monotonic() + 30
        while True:
            images = driver.execute_script(
                "return [...document.images].map(i => [i.complete, i.naturalWidth, i.alt])"
            )
            if images and all(done and width > 0 for done, width, _ in images):
                break
            assert time.monotonic() < deadline, f"images did not load: {images}"
            time.sleep(0.2)
        assert len(images) == 8 + 4 + 1 + 1  # the assets, the frames, the thumbnail, the cover
        videos = driver.find_elements("css selector", "video")
        assert len(videos) == 4 + 1  # the clips and the final cut
        final = videos[-1]
        driver.execute_script("arguments[0].muted = true; arguments[0].play();", final)
        deadline = time.monotonic() + 30
        while True:
            state = driver.execute_script(
                "const v = arguments[0]; return [v.readyState, v.currentTime, v.videoWidth, v.duration, "
                "v.error && v.error.message];",
                final,
            )
            if state[1] > 0.5:
                break
            assert state[4] is None, f"the video failed to play: {state}"
            assert time.monotonic() < deadline, f"the video did not play: {state}"
            time.sleep(0.2)
        ready, _, width, duration, _ = state
        assert ready >= 2 and width == 1920 and duration > 10
    finally:
        driver.quit()
