"""Turns one frame into a video clip with Kling image-to-video: submit (or resume) one task, wait for
it, download the MP4. Prints {"event":"submitted","job_id":...} as soon as the task exists."""

from __future__ import annotations

import argparse
import base64
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, UnidentifiedImageError

from provider_facts import KLING_PROMPT_LIMIT
from scripts._lib import ffmpeg, kling, pricing
from scripts._lib.audio import SCENE_EDGES_S, spoken_seconds
from scripts._lib.cli import ArgumentParser, Result, positive_float, run
from scripts._lib.crash import crash_point
from scripts._lib.errors import ScriptError, by_http_status, permanent, transient
from scripts._lib.files import atomic_path, require_file
from scripts._lib.http import make_client
from scripts._lib.output import emit

MAX_IMAGE_BYTES = 10 * 1024 * 1024
MIN_SIDE = 300
MAX_ASPECT = 2.5
# Polling is a free GET: a few failed polls in a row are tolerated before giving the run up.
MAX_POLL_FAILURES = 3
# Answers to a lookup by external id that mean the query itself is not supported (no Kling code: None).
LOOKUP_UNSUPPORTED = (1200, 1201, None)


def parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="generate_video.py", description=__doc__)
    p.add_argument("--image", type=Path, help="the frame (PNG or JPEG)")
    p.add_argument("--prompt", help=f"the final motion prompt (at most {KLING_PROMPT_LIMIT} characters)")
    p.add_argument(
        "--duration",
        choices=("5", "10", "auto"),
        help="clip length in seconds; auto: the shortest that covers --narration's scene",
    )
    p.add_argument("--narration", type=Path, help="with --duration auto: the scene's narration (audio)")
    p.add_argument("--external-id", help="unique id of this attempt, sent as external_task_id")
    p.add_argument("--output", required=True, type=Path, help="MP4 file to write")
    p.add_argument("--resume-job", help="a task id or external id of an earlier submit to collect")
    p.add_argument("--model", default="kling-v2-1")
    p.add_argument("--mode", default="std", choices=("std", "pro"))
    p.add_argument("--poll-interval", type=positive_float, default=10.0, help="seconds between polls")
    p.add_argument("--timeout", type=positive_float, default=1800.0, help="seconds to wait for the task")
    return p


def check_args(args: argparse.Namespace) -> None:
    """A new submit needs everything; a resume needs only the job (and the rest in case it never landed)."""
    missing = [
        f"--{n.replace('_', '-')}"
        for n in ("image", "prompt", "duration", "external_id")
        if getattr(args, n) is None
    ]
    if not args.resume_job and missing:
        raise ScriptError(
            "usage", f"generate_video.py: {', '.join(missing)} required unless --resume-job is given"
        )
    if args.duration == "auto" and args.narration is None:
        raise ScriptError("usage", "generate_video.py: --duration auto needs --narration")
    if args.prompt is not None and len(args.prompt) > KLING_PROMPT_LIMIT:
        raise ScriptError(
            "usage",
            f"generate_video.py: --prompt is {len(args.prompt)} characters, Kling takes {KLING_PROMPT_LIMIT}",
        )


def encode_image(path: Path) -> str:
    """Raw base64 (no data: prefix), after the checks Kling would refuse the image for."""
    require_file(path, "frame")
    data = path.read_bytes()
    if len(data) > MAX_IMAGE_BYTES:
        raise permanent(
            f"The frame {path} is {len(data)} bytes; Kling takes at most 10 MB. Recompose it smaller."
        )
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError) as exc:
        raise permanent(f"The frame {path} is not a readable image ({exc}); recompose it.") from exc
    if min(width, height) < MIN_SIDE or max(width / height, height / width) > MAX_ASPECT:
        raise permanent(
            f"The frame {path} is {width}x{height}; Kling needs sides >= 300 px and an aspect within 1:2.5."
        )
    return base64.b64encode(data).decode("ascii")


# A 5 s clip serves a scene (the words and SCENE_EDGES_S) of up to STRETCH times its length (the
# assembly slows it that little, unseen); longer, 10 s.
STRETCH = 1.15


def clip_seconds(args: argparse.Namespace) -> int:
    """The clip's length: as asked, or (auto) from the measured narration."""
    if args.duration != "auto":
        return int(args.duration)
    spoken = spoken_seconds([args.narration])[0]
    return 5 if spoken + SCENE_EDGES_S <= 5 * STRETCH else 10


def create_body(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "model_name": args.model,
        "image": encode_image(args.image),
        "prompt": args.prompt,
        "mode": args.mode,
        "duration": str(clip_seconds(args)),
        "external_task_id": args.external_id,
    }


def submit(client: httpx.Client, args: argparse.Namespace) -> tuple[kling.Task, bool]:
    """Creates the task unless one with this external id exists; True when it already existed."""
    existing = lookup_before_create(client, args.external_id)
    if existing is not None:
        return existing, True
    try:
        return kling.create(client, create_body(args)), False
    except kling.DuplicateExternalId:
        # An earlier run's submit landed (its answer was lost): collect that task instead of paying again.
        task = kling.find_by_external_id(client, args.external_id)
        if task is None:
            raise transient(
                f"Kling says a task with external id {args.external_id} exists but does not find it; "
                "retry later.",
                kling.DUPLICATE_EXTERNAL_ID,
            ) from None
        return task, True


def lookup_before_create(client: httpx.Client, external_id: str) -> kling.Task | None:
    """Kling does not promise to refuse a second task with the same external_task_id, so one free GET
    before paying guards against an earlier submit whose answer was lost. The lookup by external id is
    not documented for sure: when Kling refuses it outright, submitting is still the right move."""
    try:
        return kling.find_by_external_id(client, external_id)
    except ScriptError as exc:
        # Only "this query is not understood" is let through; money, auth and busy answers stand.
        if exc.kind == "transient" or exc.provider_code not in LOOKUP_UNSUPPORTED:
            raise
        emit("warning", message=f"Looking the task up by external id failed ({exc.message}); submitting it.")
        return None


def obtain(client: httpx.Client, args: argparse.Namespace) -> tuple[kling.Task, bool]:
    """The task to wait for, and whether it already existed (resumed) rather than being created now."""
    if args.resume_job:
        task = kling.get(client, args.resume_job) or kling.find_by_external_id(client, args.resume_job)
        if task is None and args.external_id and args.external_id != args.resume_job:
            task = kling.find_by_external_id(client, args.external_id)
        if task is not None:
            return task, True
        if not args.external_id:
            raise permanent(
                f"Kling knows no task with id or external id {args.resume_job}, and no --external-id was "
                "given to submit it again; requeue the clip to start a new attempt."
            )
        if args.image is None or args.prompt is None or args.duration is None:
            raise permanent(
                f"Kling knows no task {args.resume_job}; submitting it again needs --image, --prompt "
                "and --duration."
            )
    return submit(client, args)


def wait(client: httpx.Client, task: kling.Task, interval: float, timeout: float) -> kling.Task:
    """Polls until the task succeeds; a failed task is permanent, running out of time transient."""
    started = time.monotonic()
    failures = 0
    while True:
        if task.status == "succeed":
            return task
        if task.status == "failed":
            raise permanent(
                f"Kling could not make the clip: {task.status_msg or 'no reason given'}. Change the motion "
                "prompt or the frame, then requeue.",
                "task_failed",
            )
        elapsed = time.monotonic() - started
        emit("progress", status=task.status, job_id=task.task_id, elapsed_s=round(elapsed, 1))
        if elapsed + interval > timeout:
            raise transient(
                f"Kling task {task.task_id} is still {task.status} after {round(elapsed)} s; it keeps "
                f"running at Kling: run again with --resume-job {task.task_id} to collect it without paying "
                "again.",
                "timeout",
            )
        time.sleep(interval)
        try:
            fresh = kling.get(client, task.task_id)
        except ScriptError as exc:
            failures += 1
            if exc.kind != "transient" or failures > MAX_POLL_FAILURES:
                raise
            continue
        if fresh is None:
            raise permanent(
                f"Kling no longer knows task {task.task_id}; requeue the clip to start a new attempt."
            )
        failures = 0
        task = fresh


def download(url: str, output: Path) -> ffmpeg.VideoProbe:
    """Streams the result to a temp file beside `output`, checks it decodes, then renames it."""
    # A plain client: the CDN needs no auth, and Kling's token must not travel to another host.
    with make_client("", timeout=300.0) as cdn, atomic_path(output) as tmp:
        try:
            with cdn.stream("GET", url) as response:
                if response.status_code != 200:
                    raise _download_error(response.status_code)
                with tmp.open("wb") as out:
                    for chunk in response.iter_bytes(1 << 16):
                        out.write(chunk)
                        crash_point("mid_download")
        except httpx.HTTPError as exc:
            raise transient(
                f"Downloading the clip failed ({type(exc).__name__}); run again with --resume-job."
            ) from exc
        try:
            return ffmpeg.probe_video(tmp)
        except ffmpeg.DecodeError as exc:
            raise transient(
                f"The downloaded clip does not decode ({exc}); run again with --resume-job."
            ) from exc


def _download_error(status: int) -> ScriptError:
    if status in (403, 404, 410):
        return permanent(
            f"The clip's download link no longer works (HTTP {status}; Kling keeps results 30 days); "
            "requeue the clip."
        )
    return by_http_status(status, "Downloading the clip failed")


def body(args: argparse.Namespace) -> Result:
    check_args(args)
    with kling.client_from_env() as client:
        task, resumed = obtain(client, args)
        crash_point("after_submit_before_job_id")
        emit(
            "submitted",
            job_id=task.task_id,
            external_id=task.external_id or args.external_id,
            resumed=resumed,
        )
        task = wait(client, task, args.poll_interval, args.timeout)
    if not task.video_url:
        raise transient(
            f"Kling task {task.task_id} succeeded without a video URL; run again with --resume-job."
        )
    probe = download(task.video_url, args.output)
    duration = 10 if probe.duration_s > 7.5 else 5  # what Kling made (resumed: maybe another run's)
    units, reported = pricing.kling_units(task.final_unit_deduction, args.mode, duration)
    meta = {
        "job_id": task.task_id,
        "external_id": task.external_id or args.external_id,
        "resumed": resumed,
        "units": units,
        "units_reported": reported,
        "model": args.model,
        "mode": args.mode,
        "duration_s": round(probe.duration_s, 3),
        "width": probe.width,
        "height": probe.height,
    }
    return Result(str(args.output), pricing.kling_cost(units), kling.PROVIDER, meta)


def main(argv: Sequence[str] | None = None) -> int:
    return run(parser(), body, argv, before=pricing.table)


if __name__ == "__main__":
    sys.exit(main())
