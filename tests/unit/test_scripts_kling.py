"""Kling client: JWT claims, lookups, and the resume logic that keeps a clip from being paid twice."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from PIL import Image

from scripts import generate_video
from scripts._lib import kling
from scripts._lib.errors import ScriptError
from scripts._lib.http import make_client

# HS256 wants a key of at least 32 bytes (PyJWT warns below that).
SECRET = "sk_" + "0123456789abcdef" * 3


def test_jwt_claims() -> None:
    token = kling.make_token("ak_test", SECRET, now=1_700_000_000)
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(
        token, SECRET, algorithms=["HS256"], options={"verify_exp": False, "verify_nbf": False}
    )
    assert header["alg"] == "HS256"
    assert claims == {"iss": "ak_test", "exp": 1_700_000_000 + 1800, "nbf": 1_700_000_000 - 5}


def test_every_request_gets_a_fresh_token() -> None:
    tokens: list[str] = []
    clock = iter([1000.0, 2000.0])

    def handler(request: httpx.Request) -> httpx.Response:
        tokens.append(request.headers["Authorization"].removeprefix("Bearer "))
        return httpx.Response(200, json={"code": 0, "data": {}})

    auth = kling.JwtAuth("ak", SECRET, clock=lambda: next(clock))
    with make_client("http://k", auth=auth, transport=httpx.MockTransport(handler)) as client:
        client.get("/a")
        client.get("/b")
    nbfs = [
        jwt.decode(t, SECRET, algorithms=["HS256"], options={"verify_exp": False, "verify_nbf": False})["nbf"]
        for t in tokens
    ]
    assert nbfs == [995, 1995]


class FakeKling:
    """A minimal in-memory Kling: tasks by id and external id, with scripted statuses."""

    def __init__(self, statuses: list[str] | None = None, list_shape: bool = False) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}
        self.creates = 0
        self.statuses = statuses or ["processing", "succeed"]
        self.list_shape = list_shape
        self.polls = 0
        # Answers to give the next lookups by external id instead of the truth (oldest first).
        self.lookup_answers: list[httpx.Response] = []

    def add(self, task_id: str, external_id: str, status: str = "submitted") -> None:
        self.tasks[task_id] = {
            "task_id": task_id,
            "task_status": status,
            "task_info": {"external_task_id": external_id},
        }

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            body = json.loads(request.content)
            ext = body["external_task_id"]
            if any(t["task_info"]["external_task_id"] == ext for t in self.tasks.values()):
                return httpx.Response(400, json={"code": 1201, "message": "external_task_id already exists"})
            self.creates += 1
            self.add(f"T{self.creates}", ext)
            return httpx.Response(200, json={"code": 0, "data": self.tasks[f"T{self.creates}"]})
        ext = request.url.params.get("external_task_id")
        if ext is not None and self.lookup_answers:
            return self.lookup_answers.pop(0)
        if ext is not None:
            found = [t for t in self.tasks.values() if t["task_info"]["external_task_id"] == ext]
            if not found:
                return httpx.Response(404, json={"code": 1203, "message": "not found"})
            return httpx.Response(200, json={"code": 0, "data": found if self.list_shape else found[0]})
        task_id = request.url.path.rsplit("/", 1)[1]
        if task_id not in self.tasks:
            return httpx.Response(404, json={"code": 1203, "message": "task not found"})
        task = self.tasks[task_id]
        self.polls += 1
        task["task_status"] = self.statuses[min(self.polls - 1, len(self.statuses) - 1)]
        if task["task_status"] == "failed":
            task["task_status_msg"] = "Failure to pass the risk control system"
        return httpx.Response(200, json={"code": 0, "data": task})

    def client(self) -> httpx.Client:
        return make_client(
            "http://k", auth=kling.JwtAuth("ak", SECRET), transport=httpx.MockTransport(self.handler)
        )


@pytest.fixture
def frame(tmp_path: Path) -> Path:
    path = tmp_path / "frame.png"
    Image.new("RGB", (640, 360), (10, 20, 30)).save(path)
    return path


def _args(frame: Path, **overrides: Any) -> argparse.Namespace:
    values: dict[str, Any] = {
        "image": frame,
        "prompt": "slow push in",
        "duration": 5,
        "external_id": "clip_s01_a1",
        "resume_job": None,
        "model": "kling-v2-1",
        "mode": "std",
    }
    values.update(overrides)
    return argparse.Namespace(**values)


def test_create_sends_raw_base64_and_the_external_id(frame: Path) -> None:
    body = generate_video.create_body(_args(frame))
    assert not body["image"].startswith("data:")
    assert body["duration"] == "5"
    assert body["external_task_id"] == "clip_s01_a1"


def test_an_existing_task_with_the_external_id_is_collected_not_paid_again(frame: Path) -> None:
    fake = FakeKling()
    fake.add("T0", "clip_s01_a1")
    with fake.client() as client:
        task, resumed = generate_video.obtain(client, _args(frame))
    assert (task.task_id, resumed, fake.creates) == ("T0", True, 0)


def test_duplicate_refusal_on_create_resumes_the_earlier_task(frame: Path) -> None:
    fake = FakeKling()
    fake.add("T0", "clip_s01_a1")
    # The lookup misses (e.g. the earlier submit landed a moment later); the create is refused as a duplicate.
    fake.lookup_answers = [httpx.Response(404, json={"code": 1203, "message": "not found"})]
    with fake.client() as client:
        task, resumed = generate_video.obtain(client, _args(frame))
    assert (task.task_id, resumed, fake.creates) == ("T0", True, 0)


def test_a_refused_lookup_does_not_block_the_submit(frame: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeKling()
    fake.lookup_answers = [httpx.Response(400, json={"code": 1200, "message": "unknown parameter"})]
    with fake.client() as client:
        task, resumed = generate_video.obtain(client, _args(frame))
    assert (task.task_id, resumed, fake.creates) == ("T1", False, 1)
    assert '"event": "warning"' in capsys.readouterr().out


def test_a_list_answer_only_matches_the_exact_external_id() -> None:
    answer = {
        "code": 0,
        "data": [{"task_id": "T5", "task_info": {"external_task_id": "other"}}, {"task_id": "T6"}],
    }
    client = make_client(
        "http://k", transport=httpx.MockTransport(lambda r: httpx.Response(200, json=answer))
    )
    with client:
        assert kling.find_by_external_id(client, "clip_s01_a1") is None


@pytest.mark.parametrize("list_shape", [False, True])
def test_resume_by_external_id(frame: Path, list_shape: bool) -> None:
    fake = FakeKling(list_shape=list_shape)
    fake.add("T9", "clip_s01_a1")
    with fake.client() as client:
        task, resumed = generate_video.obtain(client, _args(frame, resume_job="clip_s01_a1"))
    assert (task.task_id, resumed, fake.creates) == ("T9", True, 0)


def test_resume_by_task_id(frame: Path) -> None:
    fake = FakeKling()
    fake.add("T9", "other")
    with fake.client() as client:
        task, resumed = generate_video.obtain(client, _args(frame, resume_job="T9"))
    assert (task.task_id, resumed, fake.creates) == ("T9", True, 0)


def test_resume_of_a_submit_that_never_landed_creates_it(frame: Path) -> None:
    fake = FakeKling()
    with fake.client() as client:
        task, resumed = generate_video.obtain(client, _args(frame, resume_job="clip_s01_a1"))
    assert (task.task_id, resumed, fake.creates) == ("T1", False, 1)


def test_resume_of_an_unknown_job_without_external_id_is_permanent(frame: Path) -> None:
    fake = FakeKling()
    with fake.client() as client, pytest.raises(ScriptError) as info:
        generate_video.obtain(client, _args(frame, resume_job="nope", external_id=None))
    assert info.value.kind == "permanent"
    assert fake.creates == 0


def test_wait_polls_until_success() -> None:
    fake = FakeKling(["submitted", "processing", "succeed"])
    fake.add("T1", "e")
    with fake.client() as client:
        first = kling.get(client, "T1")
        assert first is not None
        done = generate_video.wait(client, first, interval=0.001, timeout=10)
    assert done.status == "succeed"


def test_failed_task_is_permanent_with_the_reason() -> None:
    fake = FakeKling(["processing", "failed"])
    fake.add("T1", "e", "processing")
    with fake.client() as client, pytest.raises(ScriptError) as info:
        generate_video.wait(client, kling.Task.from_data(fake.tasks["T1"]), interval=0.001, timeout=10)
    assert info.value.kind == "permanent"
    assert "risk control" in info.value.message


def test_waiting_too_long_is_transient_and_names_the_job() -> None:
    task = kling.Task.from_data({"task_id": "T1", "task_status": "processing"})
    with pytest.raises(ScriptError) as info:
        generate_video.wait(httpx.Client(), task, interval=5, timeout=1)
    assert info.value.kind == "transient"
    assert "--resume-job T1" in info.value.message


def test_a_few_failed_polls_are_tolerated() -> None:
    answers = iter(
        [
            httpx.Response(503, json={"code": 5001, "message": "busy"}),
            httpx.Response(200, json={"code": 0, "data": {"task_id": "T1", "task_status": "succeed"}}),
        ]
    )
    client = make_client("http://k", transport=httpx.MockTransport(lambda r: next(answers)))
    with client:
        done = generate_video.wait(
            client, kling.Task.from_data({"task_id": "T1", "task_status": "submitted"}), 0.001, 10
        )
    assert done.status == "succeed"


def test_task_parsing() -> None:
    task = kling.Task.from_data(
        {
            "task_id": "T1",
            "task_status": "succeed",
            "task_info": {"external_task_id": "e"},
            "task_result": {"videos": [{"id": "v", "url": "http://cdn/v.mp4", "duration": "5.1"}]},
            "final_unit_deduction": "1.5",
        }
    )
    assert (task.video_url, task.video_duration, task.external_id, task.final_unit_deduction) == (
        "http://cdn/v.mp4",
        "5.1",
        "e",
        "1.5",
    )


def test_new_submit_needs_every_argument(frame: Path) -> None:
    with pytest.raises(ScriptError) as info:
        generate_video.check_args(_args(frame, external_id=None))
    assert info.value.exit_code == 2
    assert "--external-id" in info.value.message
