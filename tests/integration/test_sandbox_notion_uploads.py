"""The sandbox's file uploads through notion-client 3.1's `file_uploads`, as Notion documents them:
create, send, multi-part with complete, the workspace's cap, content types, expiry, listing, and
attaching to blocks, files properties and covers (read back as signed URLs that serve the bytes)."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from notion_client import Client
from notion_client.errors import APIResponseError
from PIL import Image

from tests.support.sandbox_proc import SandboxProcess

LOG = logging.getLogger("tests.notion")
MB = 1024 * 1024


def _png(color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 36), color).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def proc(tmp_path: Any) -> Iterator[SandboxProcess]:
    proc = SandboxProcess(tmp_path / "sandbox", "--notion-rate", "1000").start()
    yield proc
    proc.stop()


@pytest.fixture
def notion(proc: SandboxProcess) -> Iterator[Client]:
    token = json.loads((proc.state_dir / "credentials.json").read_text())["notion_token"]
    with httpx.Client(timeout=60) as http:
        yield Client(client=http, auth=token, base_url=proc.base("notion"), retry=False, logger=LOG)


def _page(proc: SandboxProcess, notion: Client) -> str:
    root = json.loads((proc.state_dir / "credentials.json").read_text())["notion_root_page_id"]
    db = notion.databases.create(
        parent={"type": "page_id", "page_id": root},
        title=[{"type": "text", "text": {"content": "Videos"}}],
        initial_data_source={"properties": {"Title": {"title": {}}, "Video": {"files": {}}}},
    )
    page = notion.pages.create(
        parent={"data_source_id": db["data_sources"][0]["id"]},
        properties={"Title": {"title": [{"type": "text", "text": {"content": "Heron"}}]}},
    )
    return str(page["id"])


def _uploaded(notion: Client, name: str, data: bytes, ctype: str) -> dict[str, Any]:
    made = notion.file_uploads.create(mode="single_part", filename=name, content_type=ctype)
    return dict(notion.file_uploads.send(made["id"], file=(name, data, ctype)))


def _refused(call: Any, *words: str) -> None:
    with pytest.raises(APIResponseError) as caught:
        call()
    assert caught.value.status == 400 and caught.value.code == "validation_error"
    for word in words:
        assert word in str(caught.value), str(caught.value)


def test_a_single_part_upload_goes_pending_then_uploaded_and_is_listed(notion: Client) -> None:
    made = notion.file_uploads.create(mode="single_part", filename="frame.png", content_type="image/png")
    assert made["object"] == "file_upload" and made["status"] == "pending"
    assert made["upload_url"].endswith(f"/v1/file_uploads/{made['id']}/send")
    assert made["expiry_time"] is not None and made["content_length"] is None
    data = _png()
    sent = notion.file_uploads.send(made["id"], file=("frame.png", data, "image/png"))
    assert (sent["status"], sent["content_length"], sent["upload_url"]) == ("uploaded", len(data), None)
    assert notion.file_uploads.retrieve(made["id"])["status"] == "uploaded"
    listed = notion.file_uploads.list(status="uploaded")["results"]
    assert [u["id"] for u in listed] == [made["id"]]
    assert notion.file_uploads.list(status="pending")["results"] == []
    # Its bytes are in: a second send is refused rather than taken twice.
    _refused(lambda: notion.file_uploads.send(made["id"], file=("frame.png", data, "image/png")), "uploaded")


def test_content_types_and_extensions_must_agree(notion: Client) -> None:
    _refused(
        lambda: notion.file_uploads.create(mode="single_part", filename="cut.mp4", content_type="image/png"),
        "video/mp4",
    )
    _refused(lambda: notion.file_uploads.create(mode="single_part", filename="cut.exe"), "extension")
    made = notion.file_uploads.create(mode="single_part", filename="cut.mp4", content_type="video/mp4")
    _refused(
        lambda: notion.file_uploads.send(made["id"], file=("cut.png", _png(), "image/png")), "content type"
    )


def test_the_workspace_cap_and_the_single_part_limit_refuse_big_files(
    proc: SandboxProcess, notion: Client
) -> None:
    proc.configure(notion_upload_cap=5 * MB)
    assert notion.users.me()["bot"]["workspace_limits"]["max_file_upload_size_in_bytes"] == 5 * MB
    made = notion.file_uploads.create(mode="single_part", filename="cut.mp4", content_type="video/mp4")
    big = b"\0" * (5 * MB + 1)
    _refused(lambda: notion.file_uploads.send(made["id"], file=("cut.mp4", big, "video/mp4")), "limit")
    assert notion.file_uploads.retrieve(made["id"])["status"] == "pending"
    proc.configure(notion_upload_cap=5 * 1024 * MB)
    huge = b"\0" * (20 * MB + 1)
    _refused(lambda: notion.file_uploads.send(made["id"], file=("cut.mp4", huge, "video/mp4")), "single part")


def test_a_multi_part_upload_takes_its_parts_then_completes(notion: Client) -> None:
    first, last = b"a" * (5 * MB), b"b" * 1000
    made = notion.file_uploads.create(
        mode="multi_part", filename="cut.mp4", content_type="video/mp4", number_of_parts=2
    )
    assert made["number_of_parts"] == {"total": 2, "sent_count": 0}
    _refused(lambda: notion.file_uploads.complete(made["id"]), "1, 2")
    _refused(
        lambda: notion.file_uploads.send(
            made["id"], file=("cut.mp4", b"x" * 10, "video/mp4"), part_number="1"
        ),
        "Part 1",
    )  # only the last part may be under 5 MB
    notion.file_uploads.send(made["id"], file=("cut.mp4", last, "video/mp4"), part_number="2")
    sent = notion.file_uploads.send(made["id"], file=("cut.mp4", first, "video/mp4"), part_number="1")
    assert (sent["status"], sent["number_of_parts"]["sent_count"]) == ("pending", 2)
    done = notion.file_uploads.complete(made["id"])
    assert (done["status"], done["content_length"]) == ("uploaded", len(first) + len(last))


def test_an_unattached_upload_expires_and_an_attached_one_does_not(
    proc: SandboxProcess, notion: Client
) -> None:
    page = _page(proc, notion)
    proc.configure(notion_upload_expiry_s=1.0)
    kept = _uploaded(notion, "kept.png", _png(), "image/png")
    left = _uploaded(notion, "left.png", _png(), "image/png")
    notion.blocks.children.append(
        page,
        children=[{"type": "image", "image": {"type": "file_upload", "file_upload": {"id": kept["id"]}}}],
    )
    time.sleep(1.3)
    assert notion.file_uploads.retrieve(kept["id"])["status"] == "uploaded"
    assert notion.file_uploads.retrieve(left["id"])["status"] == "expired"
    _refused(
        lambda: notion.blocks.children.append(
            page,
            children=[{"type": "image", "image": {"type": "file_upload", "file_upload": {"id": left["id"]}}}],
        ),
        "expired",
    )


def test_attached_files_read_back_as_urls_that_serve_the_bytes(proc: SandboxProcess, notion: Client) -> None:
    page = _page(proc, notion)
    data = _png((10, 120, 200))
    image = _uploaded(notion, "frame.png", data, "image/png")
    made = notion.blocks.children.append(
        page,
        children=[
            {
                "type": "image",
                "image": {
                    "type": "file_upload",
                    "file_upload": {"id": image["id"]},
                    "caption": [{"type": "text", "text": {"content": "heron"}}],
                },
            }
        ],
    )["results"][0]
    assert made["type"] == "image" and made["image"]["type"] == "file"
    assert made["image"]["caption"][0]["plain_text"] == "heron"
    assert httpx.get(made["image"]["file"]["url"]).content == data
    # An image is not a video: the block type must fit the file.
    _refused(
        lambda: notion.blocks.children.append(
            page,
            children=[
                {"type": "video", "video": {"type": "file_upload", "file_upload": {"id": image["id"]}}}
            ],
        ),
        "image/png",
    )
    # One upload, attached again: as the cover and in a files property.
    updated = notion.pages.update(
        page,
        cover={"type": "file_upload", "file_upload": {"id": image["id"]}},
        properties={
            "Video": {"files": [{"type": "file_upload", "file_upload": {"id": image["id"]}, "name": "f"}]}
        },
    )
    assert httpx.get(updated["cover"]["file"]["url"]).content == data
    [entry] = updated["properties"]["Video"]["files"]
    assert entry["name"] == "f" and httpx.get(entry["file"]["url"]).content == data
    # A changed file replaces the block's file in place.
    other = _uploaded(notion, "frame2.png", _png((0, 0, 0)), "image/png")
    notion.blocks.update(made["id"], image={"type": "file_upload", "file_upload": {"id": other["id"]}})
    again = notion.blocks.retrieve(made["id"])
    assert httpx.get(again["image"]["file"]["url"]).content == _png((0, 0, 0))
    assert again["image"]["caption"][0]["plain_text"] == "heron"
    # The sandbox's own view of the page shows the image.
    html = httpx.get(f"{proc.url}/_sandbox/pages/{page}").text
    assert "<img" in html and "heron" in html


def test_every_send_is_in_the_call_log_and_faults_reach_uploads(proc: SandboxProcess, notion: Client) -> None:
    made = notion.file_uploads.create(mode="single_part", filename="a.png", content_type="image/png")
    proc.fault(provider="notion", kind="apply_then_fail", status=500, endpoint="/send", count=1)
    with pytest.raises(APIResponseError) as caught:
        notion.file_uploads.send(made["id"], file=("a.png", _png(), "image/png"))
    assert caught.value.status == 500
    # Applied all the same: the upload is in, as a client that looks (instead of sending again) finds.
    assert notion.file_uploads.retrieve(made["id"])["status"] == "uploaded"
    proc.fault(provider="notion", kind="error", status=429, endpoint="file_uploads", count=1)
    with pytest.raises(APIResponseError) as limited:
        notion.file_uploads.create(mode="single_part", filename="b.png", content_type="image/png")
    assert limited.value.status == 429
    sends = [c for c in proc.calls("notion") if c["endpoint"].endswith("/send")]
    assert [(c["identity"], c["status"]) for c in sends] == [(made["id"], 200)]
