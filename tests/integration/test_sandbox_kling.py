"""The sandbox's Kling: JWT auth, clock-driven tasks, real push-in MP4s, limits, persistence."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import jwt
import pytest
from PIL import Image, ImageChops, ImageStat

from tests.support.media import frame_at, video_info
from tests.support.sandbox_proc import SandboxProcess

# Long enough for PyJWT's key-length check: a short HMAC secret is itself a warning (an error here).
WRONG_SECRET = "sk_" + "0" * 40


def _keys(sandbox: SandboxProcess) -> tuple[str, str]:
    creds = json.loads((sandbox.state_dir / "credentials.json").read_text())
    return creds["kling_access_key"], creds["kling_secret_key"]


def _token(sandbox: SandboxProcess, **overrides: Any) -> str:
    access, secret = _keys(sandbox)
    now = int(time.time())
    claims = {"iss": access, "exp": now + 1800, "nbf": now - 5, **overrides}
    return jwt.encode(claims, secret, "HS256")


def _headers(sandbox: SandboxProcess, trace: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {_token(sandbox)}"}
    if trace:
        headers["X-Pipeline-Trace"] = trace
    return headers


def _url(sandbox: SandboxProcess, suffix: str = "") -> str:
    return f"{sandbox.base('kling')}/v1/videos/image2video{suffix}"


def _picture(width: int = 1344, height: int = 768) -> str:
    image = Image.new("RGB", (width, height), (40, 90, 140))
    for x in range(0, width, 64):  # detail, so a push-in changes the picture
        image.paste((230, 200, 90), (x, 0, x + 16, height))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def _create(sandbox: SandboxProcess, trace: str | None = None, **fields: Any) -> httpx.Response:
    body = {"model_name": "kling-v2-1", "image": _picture(), "prompt": "Slow push in on the heron", **fields}
    return httpx.post(_url(sandbox), json=body, headers=_headers(sandbox, trace), timeout=60)


def _query(sandbox: SandboxProcess, task_id: str) -> dict[str, Any]:
    r = httpx.get(_url(sandbox, f"/{task_id}"), headers=_headers(sandbox), timeout=30)
    assert r.status_code == 200, r.text
    return dict(r.json()["data"])


def _wait(sandbox: SandboxProcess, task_id: str, status: str, timeout: float = 40) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        data = _query(sandbox, task_id)
        if data["task_status"] == status or time.monotonic() > deadline:
            assert data["task_status"] == status, data
            return data
        time.sleep(0.1)


def _download(url: str, path: Path) -> Path:
    r = httpx.get(url, timeout=60)
    assert r.status_code == 200
    assert r.headers["content-type"] == "video/mp4"
    path.write_bytes(r.content)
    return path


# Auth and errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, 1001),
        ("Token abc", 1002),
        ("Bearer not-a-jwt", 1002),
        ("iss", 1000),
        ("signature", 1002),
        ("expired", 1004),
        ("early", 1003),
    ],
)
def test_bad_tokens_are_401_with_klings_codes(
    sandbox: SandboxProcess, authorization: str | None, code: int
) -> None:
    access, _ = _keys(sandbox)
    now = int(time.time())
    tokens = {
        "iss": _token(sandbox, iss="ak_someone_else"),
        "signature": jwt.encode({"iss": access, "exp": now + 1800, "nbf": now - 5}, WRONG_SECRET, "HS256"),
        "expired": _token(sandbox, exp=now - 60, nbf=now - 1800),
        "early": _token(sandbox, nbf=now + 600),
    }
    headers = {}
    if authorization is not None:
        headers["Authorization"] = (
            f"Bearer {tokens[authorization]}" if authorization in tokens else authorization
        )
    r = httpx.get(_url(sandbox), headers=headers)
    assert r.status_code == 401
    body = r.json()
    assert body["code"] == code
    assert body["message"]
    assert body["request_id"]


def test_injected_fault_speaks_klings_envelope(sandbox: SandboxProcess) -> None:
    sandbox.fault(provider="kling", status=429, code=1303, count=1)
    r = httpx.get(_url(sandbox), headers=_headers(sandbox))
    assert r.status_code == 429
    assert r.json()["code"] == 1303
    assert "retry-after" not in r.headers


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"mode": "ultra"}, 400, 1201),
        ({"duration": "7"}, 400, 1201),
        ({"prompt": "x" * 2501}, 400, 1201),
        ({"model_name": "kling-v9"}, 400, 1201),
        ({"cfg_scale": 2}, 400, 1201),
        ({"image": "data:image/png;base64," + _picture()}, 400, 1201),
        ({"image": "%%% not base64 %%%"}, 400, 1201),
        ({"image": _picture(200, 120)}, 400, 1201),
        ({"image": _picture(1400, 400)}, 400, 1201),
        ({"callback_url": "ftp://example.invalid/hook"}, 400, 1201),
        ({"prompt": "a heron [sandbox:unsafe]"}, 400, 1301),
    ],
)
def test_invalid_creates_are_refused_without_a_task(
    sandbox: SandboxProcess, fields: dict[str, Any], status: int, code: int
) -> None:
    r = _create(sandbox, **fields)
    assert (r.status_code, r.json()["code"]) == (status, code), r.text


def test_unknown_task_is_404_1203(sandbox: SandboxProcess) -> None:
    r = httpx.get(_url(sandbox, "/no-such-task"), headers=_headers(sandbox))
    assert (r.status_code, r.json()["code"]) == (404, 1203)
    r = httpx.get(_url(sandbox), params={"external_task_id": "nobody"}, headers=_headers(sandbox))
    assert (r.status_code, r.json()["code"]) == (404, 1203)


# Tasks ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_task_goes_submitted_processing_succeed_with_a_real_push_in_clip(
    fresh_sandbox: SandboxProcess, tmp_path: Path
) -> None:
    fresh_sandbox.configure(kling_seconds=90)  # 1.5 s at the default 1/60 scale
    r = _create(fresh_sandbox, "generate_video/clip_s01", external_task_id="clip_s01-a1", duration="5")
    assert r.status_code == 200, r.text
    created = r.json()["data"]
    assert created["task_status"] == "submitted"
    assert created["task_info"]["external_task_id"] == "clip_s01-a1"
    task_id = created["task_id"]
    assert "task_result" not in _wait(fresh_sandbox, task_id, "processing")
    done = _wait(fresh_sandbox, task_id, "succeed")
    assert done["final_unit_deduction"] == "1"
    video = done["task_result"]["videos"][0]
    assert video["duration"] == "5.1"
    assert video["url"].startswith(fresh_sandbox.url + "/media/")

    clip = _download(video["url"], tmp_path / "clip.mp4")
    info = video_info(clip)
    assert (info.width, info.height, info.video_codec, info.fps) == (1280, 720, "h264", 24.0)
    assert info.duration == pytest.approx(5.0, abs=0.05)
    assert info.audio_codec is None
    first = Image.open(frame_at(clip, 0.0, tmp_path / "first.png")).convert("RGB")
    last = Image.open(frame_at(clip, 4.9, tmp_path / "last.png")).convert("RGB")
    assert sum(ImageStat.Stat(ImageChops.difference(first, last)).mean) / 3 > 5  # the push-in moved

    by_external = httpx.get(
        _url(fresh_sandbox), params={"external_task_id": "clip_s01-a1"}, headers=_headers(fresh_sandbox)
    ).json()["data"]
    assert by_external["task_id"] == task_id

    calls = fresh_sandbox.calls("kling")
    assert [(c["identity"], c["client"], c["item"], c["status"]) for c in calls] == [
        ("clip_s01-a1", "generate_video", "clip_s01", 200)
    ]
    assert calls[0]["usage"]["units"] == 1.0


def test_external_task_id_reuse_is_refused_not_a_second_task(fresh_sandbox: SandboxProcess) -> None:
    fresh_sandbox.configure(cheap_media=True)
    assert _create(fresh_sandbox, external_task_id="clip_s02-a1").status_code == 200
    again = _create(fresh_sandbox, external_task_id="clip_s02-a1")
    assert again.status_code == 400
    assert again.json()["code"] == 1201
    assert "external_task_id already exists" in again.json()["message"]
    listed = httpx.get(
        _url(fresh_sandbox), params={"pageNum": 1, "pageSize": 30}, headers=_headers(fresh_sandbox)
    )
    assert len(listed.json()["data"]) == 1
    assert fresh_sandbox.stats()["kling"]["tasks"] == 1


@pytest.mark.slow
def test_pro_ten_second_clip_is_1080p_and_a_task_without_external_id_is_logged_by_task_id(
    fresh_sandbox: SandboxProcess, tmp_path: Path
) -> None:
    fresh_sandbox.configure(kling_seconds=60)
    r = _create(fresh_sandbox, mode="pro", duration="10")
    task_id = r.json()["data"]["task_id"]
    done = _wait(fresh_sandbox, task_id, "succeed", timeout=60)
    assert done["final_unit_deduction"] == "7"
    video = done["task_result"]["videos"][0]
    assert video["duration"] == "10.1"
    info = video_info(_download(video["url"], tmp_path / "pro.mp4"))
    assert (info.width, info.height) == (1920, 1080)
    assert info.duration == pytest.approx(10.0, abs=0.05)
    assert [c["identity"] for c in fresh_sandbox.calls("kling")] == [task_id]


def test_over_the_concurrency_limit_is_429_1303(fresh_sandbox: SandboxProcess) -> None:
    fresh_sandbox.configure(kling_concurrency=2, kling_seconds=6000, cheap_media=True)
    assert [_create(fresh_sandbox).status_code for _ in range(2)] == [200, 200]
    third = _create(fresh_sandbox)
    assert (third.status_code, third.json()["code"]) == (429, 1303)
    stats = fresh_sandbox.stats()["kling"]
    assert (stats["tasks"], stats["active_tasks"]) == (2, 2)


def test_stats_show_the_most_tasks_running_at_once(fresh_sandbox: SandboxProcess) -> None:
    fresh_sandbox.configure(kling_seconds=30, cheap_media=True)
    first = _create(fresh_sandbox).json()["data"]["task_id"]
    second = _create(fresh_sandbox).json()["data"]["task_id"]
    _wait(fresh_sandbox, first, "succeed")
    _wait(fresh_sandbox, second, "succeed")
    third = _create(fresh_sandbox).json()["data"]["task_id"]  # after the others: no overlap
    _wait(fresh_sandbox, third, "succeed")
    stats = fresh_sandbox.stats()["kling"]
    assert stats == {**stats, "tasks": 3, "active_tasks": 0, "max_task_concurrency": 2}


def test_fail_trigger_ends_the_task_failed_with_a_message(fresh_sandbox: SandboxProcess) -> None:
    fresh_sandbox.configure(kling_seconds=30)
    task_id = _create(fresh_sandbox, prompt="A heron [sandbox:fail]").json()["data"]["task_id"]
    failed = _wait(fresh_sandbox, task_id, "failed")
    assert failed["task_status_msg"]
    assert "task_result" not in failed


@pytest.mark.slow
def test_a_restarted_sandbox_answers_for_old_tasks_and_renders_missing_clips(
    fresh_sandbox: SandboxProcess, tmp_path: Path
) -> None:
    fresh_sandbox.configure(kling_seconds=30, cheap_media=True)
    # Cheap media takes the tiny pictures cheap-mode Gemini makes (below the real 300 px minimum).
    created = _create(fresh_sandbox, external_task_id="clip_s03-a1", image=_picture(160, 90))
    task_id = created.json()["data"]["task_id"]
    done = _wait(fresh_sandbox, task_id, "succeed")
    assert done["task_result"]["videos"][0]["duration"] == "5.1"  # nominal, whatever the file
    url = done["task_result"]["videos"][0]["url"]

    fresh_sandbox.restart()
    again = _query(fresh_sandbox, task_id)
    assert again["task_status"] == "succeed"
    assert again["task_result"]["videos"][0]["url"] == url
    kept = video_info(_download(url, tmp_path / "kept.mp4"))
    assert (kept.width, kept.height, kept.fps) == (64, 36, 8.0)
    assert kept.duration == pytest.approx(5.0, abs=0.2)

    fresh_sandbox.stop()
    for clip in (fresh_sandbox.state_dir / "media" / "kling").glob("*.mp4"):
        clip.unlink()
    fresh_sandbox.start(int(url.split(":")[2].split("/")[0]))
    assert _query(fresh_sandbox, "clip_s03-a1")["task_status"] == "succeed"
    assert video_info(_download(url, tmp_path / "remade.mp4")).frames == 40  # 5 s at cheap 8 fps


@pytest.mark.slow
def test_stopping_mid_render_is_quick_and_the_restarted_sandbox_finishes_the_clip(
    fresh_sandbox: SandboxProcess, tmp_path: Path
) -> None:
    fresh_sandbox.configure(kling_seconds=30)
    task_id = _create(fresh_sandbox, mode="pro", duration="10").json()["data"]["task_id"]
    started = time.monotonic()
    fresh_sandbox.stop()
    assert time.monotonic() - started < 3  # renders are not waited for: a restart makes them again
    fresh_sandbox.start(int(fresh_sandbox.url.rsplit(":", 1)[1]))
    assert _query(fresh_sandbox, task_id)["task_status"] == "processing"
    done = _wait(fresh_sandbox, task_id, "succeed", timeout=60)
    info = video_info(_download(done["task_result"]["videos"][0]["url"], tmp_path / "after.mp4"))
    assert (info.width, info.height, info.frames) == (1920, 1080, 240)


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_status_changes_are_posted_to_the_callback_url_signed(fresh_sandbox: SandboxProcess) -> None:
    fresh_sandbox.configure(kling_seconds=60, cheap_media=True)
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        callback = f"http://127.0.0.1:{server.server_address[1]}/hook"
        task_id = _create(fresh_sandbox, callback_url=callback).json()["data"]["task_id"]
        _wait(fresh_sandbox, task_id, "succeed")
        deadline = time.monotonic() + 10
        while not any(b'"succeed"' in body for _, body in _Receiver.received) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.shutdown()
        server.server_close()
    _, secret = _keys(fresh_sandbox)
    statuses = []
    for headers, body in _Receiver.received:
        signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
        expected = base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()
        assert headers["webhook-signature"] == f"v1,{expected}"
        data = json.loads(body)
        assert data["task_id"] == task_id
        statuses.append(data["task_status"])
    assert statuses[-1] == "succeed"
    assert statuses == sorted(set(statuses), key=["submitted", "processing", "succeed"].index)  # each once
    assert json.loads(_Receiver.received[-1][1])["task_result"]["videos"][0]["url"].endswith(".mp4")
