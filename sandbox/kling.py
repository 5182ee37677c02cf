"""Kling image-to-video: JWT auth, tasks whose status follows the clock, real MP4 results.

A task is `submitted` for the first 10 % of the (scaled) latency, then `processing`, then `succeed`
once the latency has passed AND its clip is rendered (the render starts at creation, on a worker
thread, so it overlaps the wait). Tasks live in the store (kind "kling_task"): a restarted sandbox
still answers for them, and renders again any clip whose file is missing.

A task with a `callback_url` is POSTed to on each status change (`sandbox/kling_callbacks.py`).

Prompt triggers: `[sandbox:fail]` ends the task `failed`; `[sandbox:unsafe]` is refused at once
(400 1301, content safety).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from PIL import Image

from sandbox import jwt
from sandbox.app import IDENTITY_HEADER, USAGE_HEADER, Provider
from sandbox.http import Request, Response, json_response
from sandbox.kling_callbacks import Notifier
from sandbox.media import clip, ffmpeg, media_path, media_url
from sandbox.media.renders import RenderPool

if TYPE_CHECKING:
    from sandbox.app import Sandbox

KIND = "kling_task"
MODELS = (
    "kling-v1", "kling-v1-5", "kling-v1-6", "kling-v2-master", "kling-v2-1", "kling-v2-1-master",
    "kling-v2-5-turbo", "kling-v2-6", "kling-v3",
)  # fmt: skip
_STATUS_FOR_CODE = {1000: 401, 1001: 401, 1002: 401, 1003: 401, 1004: 401, 1100: 429, 1101: 429, 1102: 429,
                    1103: 403, 1200: 400, 1201: 400, 1202: 404, 1203: 404, 1300: 400, 1301: 400, 1302: 429,
                    1303: 429, 1304: 429, 5000: 500, 5001: 503, 5002: 504}  # fmt: skip
_CODE_FOR_STATUS = {400: 1201, 401: 1000, 403: 1103, 404: 1203, 405: 1202, 429: 1302, 500: 5000, 503: 5001,
                    504: 5002}  # fmt: skip
_UNITS = {("std", "5"): "1", ("std", "10"): "2", ("pro", "5"): "3.5", ("pro", "10"): "7"}
_MAX_IMAGE_BYTES = 10 * 1024 * 1024
_FAIL_TRIGGER = "[sandbox:fail]"
_UNSAFE_TRIGGER = "[sandbox:unsafe]"


class KlingError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def error_response(
    status: int, code: str | int | None, message: str | None, retry_after: float | None
) -> Response:
    """Kling's envelope {code, message, request_id}; Kling sends no Retry-After."""
    number = int(code) if code is not None and str(code).isdigit() else _CODE_FOR_STATUS.get(status, 5000)
    body = {"code": number, "message": message or f"error {number}", "request_id": str(uuid.uuid4())}
    return json_response(status, body)


def _refuse(code: int, message: str) -> Response:
    return error_response(_STATUS_FOR_CODE.get(code, 400), code, message, None)


def register(app: Sandbox) -> None:
    tasks = Tasks(app, RenderPool())

    def gate(request: Request) -> Response | None:
        failure = jwt.check(
            request.header("authorization"),
            app.credentials["kling_access_key"],
            app.credentials["kling_secret_key"],
        )
        return None if failure is None else _refuse(failure.code, failure.message)

    def create(request: Request) -> Response:
        try:
            task = tasks.create(request.json())
        except ValueError as exc:
            return _refuse(1201, f"invalid request body: {exc}")
        except KlingError as exc:
            return _refuse(exc.code, exc.message)
        # Kling bills a task's units when it succeeds; a task set to fail costs nothing.
        units = 0.0 if task["fail"] else float(_UNITS[(task["mode"], task["duration"])])
        usage = {
            "units": units,
            "mode": task["mode"],
            "duration": task["duration"],
            "task_id": task["task_id"],
        }
        headers = {
            IDENTITY_HEADER: task["external_task_id"] or task["task_id"],
            USAGE_HEADER: json.dumps(usage),
        }
        return _ok(tasks.view(task), headers)

    def query(request: Request) -> Response:
        task = tasks.find(request.params["task_id"])
        if task is None:
            return _refuse(1203, f"task {request.params['task_id']} does not exist")
        return _ok(tasks.view(task))

    def query_or_list(request: Request) -> Response:
        external = request.arg("external_task_id")
        if external is not None:
            task = tasks.by_external(external)
            if task is None:
                return _refuse(1203, f"no task with external_task_id {external}")
            return _ok(tasks.view(task))
        try:
            page = int(request.arg("pageNum", "1") or 1)
            size = int(request.arg("pageSize", "30") or 30)
        except ValueError:
            return _refuse(1201, "pageNum and pageSize must be integers")
        if page < 1 or not 1 <= size <= 500:
            return _refuse(1201, "pageNum must be >= 1 and pageSize within 1..500")
        newest_first = sorted(tasks.all(), key=lambda t: t["created_at"], reverse=True)
        return _ok([tasks.view(t) for t in newest_first[(page - 1) * size : page * size]])

    app.add_provider(Provider("kling", "/kling", error=error_response, gate=gate))
    base = "/kling/v1/videos/image2video"
    app.route("POST", base, create, provider="kling", billable=True, identify=_external_id)
    app.route("GET", base, query_or_list, provider="kling")
    app.route("GET", base + "/{task_id}", query, provider="kling")
    app.stat_sources["kling"] = tasks.stats
    tasks.resume_renders()


def _ok(data: Any, headers: dict[str, str] | None = None) -> Response:
    body = {"code": 0, "message": "SUCCEED", "request_id": str(uuid.uuid4()), "data": data}
    return json_response(200, body, headers)


def _external_id(request: Request) -> str | None:
    """The call log's identity: the caller's external_task_id (else the handler names the task id)."""
    try:
        value = json.loads(request.body or b"{}").get("external_task_id")
    except (ValueError, AttributeError):
        return None
    return str(value) if value else None


class Tasks:
    """The account's tasks: creation rules, the clock-driven status, rendering."""

    def __init__(self, app: Sandbox, renders: RenderPool) -> None:
        self.app = app
        self.renders = renders
        self.inputs = app.state_dir / "kling_inputs"
        self.notifier = Notifier(
            app.credentials["kling_secret_key"], self._awaiting_callback, self.view, self._delivered
        )

    # Creation -------------------------------------------------------------------------------------
    def create(self, body: Any) -> dict[str, Any]:
        fields = _validate(body)
        image_bytes, suffix = _load_image(str(body["image"]), self.app.config.cheap_media)
        now = time.time()
        with self.app.store.lock:
            external = fields["external_task_id"]
            if external and self.by_external(external) is not None:
                raise KlingError(1201, f"external_task_id already exists: {external}")
            active = sum(self._active(t, now) for t in self.app.store.iter_raw(KIND))
            if active >= self.app.config.kling_concurrency:
                raise KlingError(1303, "parallel task over resource pack limit")
            task_id = uuid.uuid4().hex[:18]
            task = {
                **fields,
                "task_id": task_id,
                "created_at": int(now * 1000),
                "latency_s": self.app.config.scaled(self.app.config.kling_seconds),
                "fail": _FAIL_TRIGGER in fields["prompt"],
                "video_id": str(uuid.uuid4()),
                "input": f"{task_id}{suffix}",
                "rendered_at": None,
                "render_error": None,
                "cheap": self.app.config.cheap_media,
            }
            self.inputs.mkdir(parents=True, exist_ok=True)
            (self.inputs / task["input"]).write_bytes(image_bytes)
            self.app.store.put(KIND, task_id, task)
        if not task["fail"]:
            self._render(task)
        if task["callback_url"]:
            self.notifier.wake()
        return task

    def _render(self, task: dict[str, Any]) -> None:
        output = self._video_path(task)
        width, height, fps = _frame_format(task["mode"], task["cheap"])
        if _portrait(self.inputs / task["input"]):
            width, height = height, width

        def job(children: ffmpeg.Children) -> None:
            clip.render(
                self.inputs / task["input"], output, int(task["duration"]), width, height, fps, children
            )
            self._update(task["task_id"], rendered_at=int(time.time() * 1000))

        def failed(exc: Exception) -> None:
            self._update(task["task_id"], render_error=str(exc)[:300])

        self.renders.submit(output, job, failed)

    def resume_renders(self) -> None:
        """After a restart: render again every clip whose file is missing."""
        self.renders.clear_stale_markers(media_path(self.app, "kling"))
        for task in sorted(self.all(), key=lambda t: t["created_at"]):
            if not task["fail"] and not task["render_error"] and not self._video_path(task).is_file():
                self._render(task)
        if self._awaiting_callback():
            self.notifier.wake()

    def _awaiting_callback(self) -> list[dict[str, Any]]:
        """Tasks with a callback_url whose final status has not been delivered yet."""
        with self.app.store.lock:
            waiting = [
                t for t in self.app.store.iter_raw(KIND)
                if t.get("callback_url") and t.get("notified") not in ("succeed", "failed")
            ]  # fmt: skip
            return [dict(t) for t in waiting]

    def _delivered(self, task_id: str, status: str) -> None:
        self._update(task_id, notified=status)

    def _update(self, task_id: str, **changes: Any) -> None:
        with self.app.store.lock:
            task = self.app.store.get(KIND, task_id)
            if task is not None:
                # A task keeps its first render time: a re-render after a restart must not move it.
                if task.get("rendered_at") and "rendered_at" in changes:
                    changes.pop("rendered_at")
                task.update(changes)
                self.app.store.put(KIND, task_id, task)

    # Reading --------------------------------------------------------------------------------------
    def all(self) -> list[dict[str, Any]]:
        return self.app.store.all(KIND)

    def find(self, task_id: str) -> dict[str, Any] | None:
        # The documented single-task query takes a task_id or, as the alternative, an external_task_id.
        return self.app.store.get(KIND, task_id) or self.by_external(task_id)

    def by_external(self, external: str) -> dict[str, Any] | None:
        with self.app.store.lock:
            for task in self.app.store.iter_raw(KIND):
                if task.get("external_task_id") == external:
                    return dict(task)
        return None

    def _video_path(self, task: dict[str, Any]) -> Path:
        return media_path(self.app, "kling", f"{task['video_id']}.mp4")

    def _status(self, task: dict[str, Any], now: float) -> tuple[str, float]:
        """(status, time it was entered) at `now`, from the task's timeline."""
        created = task["created_at"] / 1000
        latency = task["latency_s"]
        if now < created + 0.1 * latency:
            return "submitted", created
        if (task["fail"] or task["render_error"]) and now >= created + latency:
            return "failed", created + latency
        rendered = task["rendered_at"] / 1000 if task["rendered_at"] else None
        # Kling shows a URL only on succeed, so a slow render keeps the task processing.
        if rendered is not None and now >= created + latency:
            return "succeed", max(created + latency, rendered)
        return "processing", created + 0.1 * latency

    def view(self, task: dict[str, Any]) -> dict[str, Any]:
        """The task as Kling's API shows it now."""
        status, since = self._status(task, time.time())
        data: dict[str, Any] = {
            "task_id": task["task_id"],
            "task_status": status,
            "task_status_msg": "",
            "task_info": {"external_task_id": task["external_task_id"] or ""},
            "created_at": task["created_at"],
            "updated_at": int(since * 1000),
        }
        if status == "failed":
            data["task_status_msg"] = task["render_error"] or "Failure to pass the risk control system"
            data["final_unit_deduction"] = "0"
        if status == "succeed":
            duration = f"{int(task['duration'])}.1"
            url = media_url(self.app, "kling", f"{task['video_id']}.mp4")
            data["task_result"] = {"videos": [{"id": task["video_id"], "url": url, "duration": duration}]}
            data["final_unit_deduction"] = _UNITS[(task["mode"], task["duration"])]
        return data

    def _active(self, task: dict[str, Any], now: float) -> bool:
        return self._status(task, now)[0] in ("submitted", "processing")

    def stats(self) -> dict[str, object]:
        now = time.time()
        edges: list[tuple[float, int]] = []
        active = 0
        with self.app.store.lock:  # read without copying: thousands of tasks in a benchmark
            tasks = self.app.store.iter_raw(KIND)
        answered: list[float] = []  # created -> succeed, of the tasks that succeeded
        for task in tasks:
            status, since = self._status(task, now)
            finished = since if status in ("succeed", "failed") else now
            active += self._active(task, now)
            edges += [(task["created_at"] / 1000, 1), (max(finished, task["created_at"] / 1000), -1)]
            if status == "succeed":
                answered.append(since - task["created_at"] / 1000)
        running = peak = 0
        for _, step in sorted(edges):  # an end sorts before a start at the same instant: [created, finished)
            running += step
            peak = max(peak, running)
        # A task succeeds once its latency has passed and its clip is rendered: on a busy machine the
        # render can outlast the latency, and the sandbox then answers later than its model.
        return {
            "tasks": len(tasks),
            "active_tasks": active,
            "max_task_concurrency": peak,
            "succeeded_task_s_total": round(sum(answered), 3),
            "succeeded_task_s_max": round(max(answered, default=0.0), 3),
        }


# Validation -------------------------------------------------------------------------------------------
def _validate(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise KlingError(1201, "request body must be a JSON object")
    model = body.get("model_name") or "kling-v1"
    if model not in MODELS:
        raise KlingError(1201, f"model_name {model!r} is not supported")
    prompt, negative = str(body.get("prompt") or ""), str(body.get("negative_prompt") or "")
    if len(prompt) > 2500 or len(negative) > 2500:
        raise KlingError(1201, "prompt and negative_prompt must be at most 2500 characters")
    if _UNSAFE_TRIGGER in prompt:
        raise KlingError(1301, "Failure to pass the risk control system")
    mode = body.get("mode") or "std"
    if mode not in ("std", "pro"):
        raise KlingError(1201, "mode must be std or pro")
    duration = str(body.get("duration") or "5")
    if duration not in ("5", "10"):
        raise KlingError(1201, "duration must be '5' or '10'")
    cfg = body.get("cfg_scale", 0.5)
    if not isinstance(cfg, (int, float)) or not 0 <= cfg <= 1:
        raise KlingError(1201, "cfg_scale must be a number within [0, 1]")
    if not body.get("image"):
        raise KlingError(1201, "image is required")
    external = body.get("external_task_id")
    if external is not None and not isinstance(external, str):
        raise KlingError(1201, "external_task_id must be a string")
    callback = body.get("callback_url")
    if callback and (not isinstance(callback, str) or not callback.startswith(("http://", "https://"))):
        raise KlingError(1201, "callback_url must be an http(s) URL")
    return {
        "model_name": model,
        "prompt": prompt,
        "negative_prompt": negative,
        "cfg_scale": float(cfg),
        "mode": mode,
        "duration": duration,
        "external_task_id": external or None,
        "callback_url": callback or None,
    }


def _load_image(value: str, cheap: bool) -> tuple[bytes, str]:
    """The image's bytes and file suffix, from raw base64 or a URL, checked as Kling does."""
    if value.startswith(("http://", "https://")):
        try:
            response = httpx.get(value, timeout=15, follow_redirects=True)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise KlingError(1201, f"image URL could not be downloaded: {exc}") from exc
        data = response.content
    else:
        if value.startswith("data:"):
            raise KlingError(1201, "image must be raw base64 without a data: prefix")
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise KlingError(1201, "image is neither a URL nor valid base64") from exc
    if len(data) > _MAX_IMAGE_BYTES:
        raise KlingError(1201, "image must be at most 10MB")
    try:
        with Image.open(io.BytesIO(data)) as picture:
            kind, (width, height) = picture.format, picture.size
    except (OSError, ValueError) as exc:
        raise KlingError(1201, "image is not a readable JPG or PNG") from exc
    if kind not in ("PNG", "JPEG"):
        raise KlingError(1201, f"image format {kind} is not supported; use JPG or PNG")
    # Cheap-media mode makes tiny pictures upstream, so the minimum size is waived there.
    if not cheap and min(width, height) < 300:
        raise KlingError(1201, "image width and height must be at least 300px")
    if not 1 / 2.5 <= width / height <= 2.5:
        raise KlingError(1201, "image aspect ratio must be within 1:2.5 and 2.5:1")
    return data, ".png" if kind == "PNG" else ".jpg"


def _portrait(path: Path) -> bool:
    """Kling's image-to-video keeps the image's orientation: a taller than wide image makes a 9:16
    clip."""
    with Image.open(path) as picture:
        return picture.height > picture.width


def _frame_format(mode: str, cheap: bool) -> tuple[int, int, int]:
    """Width, height and frame rate: std is 720p, pro 1080p, both 24 fps; cheap media is a thumbnail."""
    if cheap:
        return 64, 36, 8
    return (1920, 1080, 24) if mode == "pro" else (1280, 720, 24)
