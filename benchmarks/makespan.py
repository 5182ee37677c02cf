"""makespan: M projects over K channels (and one 18-scene video) with the real daemon against the
sandbox, compared with a lower bound from the latency model.

The daemon is the real one: `App.build` from settings and channel files, `App.run` (reaping,
slots, the Worker), the real scripts as subprocesses, on PostgreSQL (SQLite when it is missing),
gates off, provider limits from the shipped providers.yaml. The sandbox runs in cheap-media mode with
its latency model scaled 1 min = 1 s: images 30 s -> 0.5 s, clips 4 min -> 4 s, narration and
sound effects 10 s -> 0.17 s.

Lower bound = the longest of: the longest dependency chain; for each provider, the shortest chain
before any of its items can start + the least time its limit's slots need for its modelled work
(the work over the limit, or, the items being whole, ceil(n / limit) equal items end to end) + the
shortest chain still needed after any of its items (the assembly after the last clip).
Provider work comes from the latency model; composites and the assembly (local, no latency model)
count with their median measured run time in the same run. `makespan_ratio` = measured / bound.

One adaptation, and why: generate_video.py polls Kling every 10 s of real time (the daemon passes
no --poll-interval). That interval does not shrink with the sandbox's latency scale, so a 4 s clip
would take 10 s. The benchmark runs the real scripts through a shim folder whose generate_video.py
adds `--poll-interval` scaled like the latency (10 s x scale), and whose assemble_video.py makes a
320x180 cut (cheap media: a 1080p encode would measure FFmpeg on this machine, not scheduling);
every other script runs unchanged.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select

from benchmarks.harness import RESULTS, ROOT, Context, database, sandbox, table, target
from daemon.app import App
from daemon.db.models import Attempt, Item, ItemEdge, Task
from daemon.paths import DEFAULT_PROVIDERS_FILE
from services.storyboard import parse_storyboard
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import SMALL_CUT, script_shims, settings_for

NAME = "makespan"
SCALE = 1 / 60
# Real-world seconds per call (the seed's figures), as the sandbox's latency model has them.
MODEL_S = {"asset": 30.0, "clip": 240.0, "narration": 10.0, "sfx": 10.0, "storyboard": 20.0}
LOCAL_KINDS = ("composite", "assembly")
KLING_POLL_S = 10.0  # generate_video.py's default poll interval, in real seconds
NARRATION = (
    "At first light the river wakes, and every creature along its banks begins the patient work of the day."
)


def write_shims(folder: Path, poll_s: float) -> Path:
    """The real scripts, run through their main(); generate_video gets a poll interval at scale,
    assemble_video a small frame (cheap media, like the sandbox's: the benchmark measures
    scheduling, not a 1080p encode on this machine's cores)."""
    return script_shims(
        folder, {"generate_video": ["--poll-interval", f"{poll_s:.4f}"], "assemble_video": SMALL_CUT}
    )


def storyboard(scenes: int, tag: str) -> dict[str, Any]:
    """A video of `scenes` scenes over three assets (two places, one animal), like a real one."""
    return {
        "title": f"Bench {tag}",
        "atmosphere": "Misty river delta at dawn, photoreal nature documentary",
        "assets": [
            {"key": "heron", "kind": "character", "prompt": f"Grey heron wading, {tag}"},
            {"key": "shallows", "kind": "environment", "prompt": f"Reed-lined shallows, mist, {tag}"},
            {"key": "reeds", "kind": "environment", "prompt": f"Golden reeds at the water's edge, {tag}"},
        ],
        "scenes": [
            {
                "key": f"s{i:02d}",
                "frame": {
                    "environment": "shallows" if i % 2 else "reeds",
                    "character": "heron" if i % 3 else None,
                },
                "motion": f"Slow push in, moment {i}",
                "narration": f"{NARRATION} Scene {i}.",
                "sfx": "Dawn river ambience, gentle water",
            }
            for i in range(1, scenes + 1)
        ],
    }


def write_channels(folder: Path, count: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    ids = [f"ch{k + 1}" for k in range(count)]
    for channel in ids:
        config = {
            "id": channel,
            "name": channel.upper(),
            "voice": {"voice_id": "JBFqnCBsd6RMkjVDRZzb"},
            "gates": {"storyboard": False, "assets": False, "final": False},
            "budgets": {"per_video_usd": 1000.0, "per_day_usd": 100000.0},
        }
        (folder / f"{channel}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return ids


async def scenario(
    ctx: Context, box: SandboxProcess, scale: float, label: str, projects: list[tuple[str, int]]
) -> dict[str, Any]:
    """Runs the daemon on `projects` ((channel, scenes) each) until every task is done."""
    work = ctx.folder(f"makespan-{label}")
    channels = sorted({c for c, _ in projects})
    write_channels(work / "channels", max(int(c[2:]) for c in channels))
    shims = write_shims(work / "scripts", KLING_POLL_S * scale)
    kind = "postgres" if ctx.pg_ok else "sqlite"
    async with database(kind, ctx) as url:
        settings = settings_for(
            box,
            work / "ws",
            work / "channels",
            url,
            scripts_dir=shims,
            daemon_id=f"bench-{label}",
            providers_file=DEFAULT_PROVIDERS_FILE,
        )
        app = await App.build(settings)
        try:
            calls_before = max((c["seq"] for c in box.calls()), default=0)
            now = datetime.now(UTC)
            for n, (channel, scenes) in enumerate(projects):
                await app.pipeline.submit(
                    channel,
                    f"{label}-{n}",
                    {"title": f"Bench {n}"},
                    now,
                    storyboard=parse_storyboard(storyboard(scenes, f"{label}-{n}")),
                )
            stop = asyncio.Event()
            started = time.time()
            runner = asyncio.create_task(app.run(stop), name="bench-daemon")
            try:
                while not await _all_done(app):
                    if runner.done():
                        runner.result()
                        raise RuntimeError("the daemon stopped before the videos were made")
                    await asyncio.sleep(0.1)
                measured = time.time() - started
            finally:
                stop.set()
                await runner
            facts = await _facts(app)
        finally:
            await app.close()
    calls = [c for c in box.get("/_sandbox/calls", since=calls_before)["calls"]]
    pictures = ctx.tmp if ctx.quick else RESULTS  # the smoke run leaves the real pictures alone
    return _analyse(
        label, projects, app.limits, scale, measured, started, facts, calls, box.stats(), pictures
    )


async def _all_done(app: App) -> bool:
    async with app.engine.connect() as conn:
        states = [r[0] for r in await conn.execute(select(Task.state))]
    bad = [s for s in states if s not in ("active", "done")]
    if bad:
        raise RuntimeError(f"a benchmark task ended {bad[0]}; see the daemon log in the scratch folder")
    return all(s == "done" for s in states)


async def _facts(app: App) -> dict[str, Any]:
    async with app.engine.connect() as conn:
        items = (await conn.execute(select(Item.id, Item.kind, Item.provider, Item.attempts))).all()
        edges = (await conn.execute(select(ItemEdge.item_id, ItemEdge.depends_on))).all()
        attempts = (
            await conn.execute(
                select(Item.kind, Item.provider, Attempt.started_at, Attempt.finished_at).join(
                    Item, Item.id == Attempt.item_id
                )
            )
        ).all()
    return {"items": items, "edges": edges, "attempts": attempts}


def _analyse(
    label: str,
    projects: list[tuple[str, int]],
    limits: dict[str, int],
    scale: float,
    measured: float,
    started: float,
    facts: dict[str, Any],
    calls: list[dict[str, Any]],
    stats: dict[str, Any],
    pictures: Path,
) -> dict[str, Any]:
    runs: dict[str, list[float]] = defaultdict(list)
    busy: dict[str, float] = defaultdict(float)
    for kind, provider, begin, end in facts["attempts"]:
        if end is not None:
            runs[kind].append((end - begin).total_seconds())
            busy[provider] += (end - begin).total_seconds()
    median = {k: statistics.median(v) for k, v in runs.items()}
    modelled = {k: s * scale for k, s in MODEL_S.items()}
    work_model = {**modelled, **{k: median.get(k, 0.0) for k in LOCAL_KINDS}, "storyboard": 0.0}
    bound = _bound(facts, limits, work_model)
    # The same bound with every kind at its measured median run time: how well the scheduler packs
    # the work it was given, apart from the scripts' own start-up and transfer time.
    bound_measured = _bound(facts, limits, {**median, "storyboard": 0.0})
    retries = sum(max(0, a - 1) for _, _, _, a in facts["items"])
    picture = timeline(label, facts, limits, started, measured, bound["bound"], pictures)
    return {
        "timeline": str(picture.relative_to(ROOT) if picture.is_relative_to(ROOT) else picture),
        "projects": len(projects),
        "channels": len({c for c, _ in projects}),
        "scenes": [s for _, s in projects],
        "items": sum(1 for _, k, _, _ in facts["items"] if k not in ("storyboard",) and "gate" not in k),
        "retries": retries,
        "latency_scale": round(scale, 5),
        "measured_s": round(measured, 2),
        "bound_s": round(bound["bound"], 2),
        "bound_by": bound["by"],
        "bound_parts_s": {k: round(v, 2) for k, v in bound["parts"].items()},
        "makespan_ratio": round(measured / bound["bound"], 3),
        "bound_measured_work_s": round(bound_measured["bound"], 2),
        "makespan_ratio_measured_work": round(measured / bound_measured["bound"], 3),
        "median_run_s": {k: round(v, 3) for k, v in sorted(median.items())},
        "modelled_s": {k: round(v, 3) for k, v in modelled.items() if k != "storyboard"},
        "slot_utilisation": {
            p: round(busy[p] / (limits[p] * measured), 3) for p in sorted(limits) if p in busy
        },
        "provider_utilisation": _provider_utilisation(calls, limits, measured, scale),
        "max_concurrency": _concurrency(stats),
        # How long the sandbox took per clip (create -> succeed), against its model: a clip's render
        # on this machine can outlast the modelled latency.
        "kling_task_s_mean": round(
            stats.get("kling", {}).get("succeeded_task_s_total", 0.0) / max(1, len(runs.get("clip", []))), 3
        ),
        "kling_model_s": round(modelled["clip"], 3),
        "kling_task_s_max": stats.get("kling", {}).get("succeeded_task_s_max"),
        "limits": dict(limits),
        "limits_held": all(
            _concurrency(stats).get(p, 0) <= limits[p] for p in ("gemini", "kling", "elevenlabs")
        ),
    }


def _bound(facts: dict[str, Any], limits: dict[str, int], work: dict[str, float]) -> dict[str, Any]:
    """A lower bound on the makespan: the longest dependency chain, and for each provider the time
    before any of its items can start (the shortest chain into them), its work over its limit, and
    the time any of its items needs after it (the shortest chain out: the assembly after the last
    clip), whichever is largest."""
    cost = {i: work.get(k, 0.0) for i, k, _, _ in facts["items"]}
    deps: dict[int, list[int]] = defaultdict(list)
    dependents: dict[int, list[int]] = defaultdict(list)
    for item, on in facts["edges"]:
        deps[item].append(on)
        dependents[on].append(item)
    start: dict[int, float] = {}  # the earliest an item can start: the longest chain into it
    after: dict[int, float] = {}  # the least time still needed once it is done: the longest chain out

    def earliest_start(i: int) -> float:
        if i not in start:
            start[i] = max((earliest_start(d) + cost[d] for d in deps[i]), default=0.0)
        return start[i]

    def still_needed(i: int) -> float:
        if i not in after:
            after[i] = max((cost[d] + still_needed(d) for d in dependents[i]), default=0.0)
        return after[i]

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    by_provider: dict[str, list[int]] = defaultdict(list)
    for i, _, provider, _ in facts["items"]:
        if provider in limits:
            by_provider[provider].append(i)
    parts: dict[str, float] = {}
    for provider, items in by_provider.items():
        head = min(earliest_start(i) for i in items)
        tail = min(still_needed(i) for i in items)
        parts[provider] = head + _on_slots([cost[i] for i in items], limits[provider]) + tail
    parts["chain"] = max(earliest_start(i) + cost[i] + still_needed(i) for i in cost)
    by = max(parts, key=lambda k: parts[k])
    return {"bound": parts[by], "by": by, "parts": parts}


def _on_slots(costs: list[float], slots: int) -> float:
    """The least time `slots` parallel slots need for these items: their work over the slots, and,
    by pigeonhole, for each k, k + 1 times the (k * slots + 1)-th longest item (of the k * slots + 1
    longest items, some slot runs k + 1). For n equal items: ceil(n / slots) of them end to end."""
    longest = sorted(costs, reverse=True)
    rounds = max(((k // slots + 1) * longest[k] for k in range(0, len(longest), slots)), default=0.0)
    return max(sum(longest) / slots, rounds)


KIND_COLOURS = {
    "storyboard": (120, 120, 120),
    "asset": (76, 153, 230),
    "composite": (150, 110, 210),
    "clip": (230, 120, 50),
    "narration": (60, 170, 100),
    "sfx": (170, 200, 60),
    "assembly": (200, 60, 80),
}


def timeline(
    label: str,
    facts: dict[str, Any],
    limits: dict[str, int],
    started: float,
    measured: float,
    bound: float,
    folder: Path,
) -> Path:
    """The run as a picture: a lane per provider slot, each attempt a bar coloured by its kind, the
    bound as a line; where the slots sat idle shows at a glance. Written to benchmarks/results/."""
    from PIL import Image, ImageDraw

    origin = datetime.fromtimestamp(started, UTC)
    spans: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for kind, provider, begin, end in facts["attempts"]:
        if end is not None:
            spans[provider].append(((begin - origin).total_seconds(), (end - origin).total_seconds(), kind))
    lanes: list[tuple[str, list[tuple[float, float, str]]]] = []
    for provider in sorted(spans, key=lambda p: ("gemini", "local", "kling", "elevenlabs").index(p)
                           if p in ("gemini", "local", "kling", "elevenlabs") else 9):  # fmt: skip
        free: list[float] = []  # when each of the provider's lanes is free again
        mine: list[list[tuple[float, float, str]]] = []
        for span in sorted(spans[provider]):
            lane = next((n for n, at in enumerate(free) if at <= span[0] + 1e-3), None)
            if lane is None:
                free.append(0.0)
                mine.append([])
                lane = len(free) - 1
            free[lane] = span[1]
            mine[lane].append(span)
        lanes += [(f"{provider} {n + 1}/{limits.get(provider, '?')}", bars) for n, bars in enumerate(mine)]
    width, left, lane_h, top = 1400, 120, 16, 30
    height = top + lane_h * len(lanes) + 44
    end = max(measured, bound) * 1.02 or 1.0
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)

    def x(t: float) -> float:
        return left + (width - left - 10) * max(0.0, t) / end

    draw.text((10, 8), f"makespan {label}: {measured:.1f} s, bound {bound:.1f} s (red line)", fill="black")
    for n, (name, bars) in enumerate(lanes):
        y = top + n * lane_h
        draw.text((10, y + 2), name, fill="black")
        draw.line([(left, y + lane_h - 1), (width - 10, y + lane_h - 1)], fill=(235, 235, 235))
        for begin, finish, kind in bars:
            colour = KIND_COLOURS.get(kind, (0, 0, 0))
            draw.rectangle(
                [x(begin), y + 2, max(x(begin) + 2, x(finish)), y + lane_h - 3], fill=colour, outline="white"
            )
    bottom = top + lane_h * len(lanes)
    step = next(s for s in (1, 2, 5, 10, 20, 30, 60, 120, 300, 600) if end / s <= 15)
    for tick in range(0, int(end) + 1, step):
        draw.line([(x(tick), bottom), (x(tick), bottom + 4)], fill="black")
        draw.text((x(tick) + 2, bottom + 1), f"{tick} s" if tick else "0", fill=(90, 90, 90))
    draw.line([(x(bound), top), (x(bound), bottom)], fill=(220, 0, 0), width=2)
    draw.line([(x(measured), top), (x(measured), bottom)], fill="black", width=1)
    legend_x = left
    for kind, colour in KIND_COLOURS.items():
        draw.rectangle([legend_x, bottom + 20, legend_x + 12, bottom + 32], fill=colour)
        draw.text((legend_x + 16, bottom + 20), kind, fill="black")
        legend_x += 110
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"makespan-{label}.png"
    image.save(path)
    return path


def _provider_utilisation(
    calls: list[dict[str, Any]], limits: dict[str, int], measured: float, scale: float
) -> dict[str, float]:
    """Provider-side busy time from the sandbox's call log over limit x makespan. Gemini and
    ElevenLabs answer when done (a call's start to finish); a Kling create returns at once, so a
    Kling task counts its modelled latency from the create's start."""
    busy: dict[str, float] = defaultdict(float)
    for call in calls:
        if call.get("status") != 200:
            continue
        if call["provider"] == "kling":
            busy["kling"] += MODEL_S["clip"] * scale
        elif call.get("finished"):
            busy[call["provider"]] += call["finished"] - call["started"]
    return {p: round(busy[p] / (limits[p] * measured), 3) for p in sorted(busy) if p in limits}


def _concurrency(stats: dict[str, Any]) -> dict[str, int]:
    return {
        "gemini": int(stats.get("gemini", {}).get("max_concurrency", 0)),
        "kling": int(stats.get("kling", {}).get("max_task_concurrency", 0)),
        "elevenlabs": int(stats.get("elevenlabs", {}).get("max_concurrency", 0)),
    }


async def run(ctx: Context) -> dict[str, Any]:
    if ctx.quick:
        scale = 1 / 240
        many = [("ch1", 1), ("ch2", 1)]
        single = [("ch1", 2)]
    else:
        scale = SCALE
        many = [(f"ch{n % 3 + 1}", 6 + n % 3) for n in range(6)]  # 6 projects, 3 channels, 6-8 scenes
        single = [("ch1", 18)]
    out: dict[str, Any] = {"database": "postgres" if ctx.pg_ok else "sqlite", "target_ratio": 1.10}
    for label, projects in (("portfolio", many), ("single", single)):
        with sandbox(ctx.folder(f"sandbox-{label}"), "--latency-scale", str(scale)) as box:
            out[label] = await scenario(ctx, box, scale, label, projects)
    out["makespan_ratio"] = out["portfolio"]["makespan_ratio"]
    out["makespan_ratio_single"] = out["single"]["makespan_ratio"]
    return out


def render(result: dict[str, Any]) -> str:
    rows: list[list[object]] = []
    for label in ("portfolio", "single"):
        r = result[label]
        rows.append(
            [
                f"{r['projects']} projects / {r['channels']} channels / {sum(r['scenes'])} scenes",
                r["measured_s"],
                f"{r['bound_s']} ({r['bound_by']})",
                r["makespan_ratio"],
                r["makespan_ratio_measured_work"],
                r["limits_held"],
            ]
        )
    text = table(
        f"makespan ({result['database']}, latency x{result['portfolio']['latency_scale']})",
        ["run", "measured s", "bound s", "ratio", "ratio vs measured work", "limits held"],
        rows,
    )
    lines = [text]
    for label in ("portfolio", "single"):
        r = result[label]
        lines.append(
            f"{label}: median run s {r['median_run_s']}; slot use {r['slot_utilisation']}; "
            f"provider use {r['provider_utilisation']}; max concurrency {r['max_concurrency']}"
        )
    met = result["makespan_ratio"] <= result["target_ratio"]
    lines.append(f"makespan_ratio = {result['makespan_ratio']} (target <= 1.10: {target(met)})")
    return "\n".join(lines)
