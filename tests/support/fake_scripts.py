"""Stand-in scripts that follow the script contract, driven by a behaviour file, for engine tests.

Each real script name is installed as a copy of one program that looks up what to do for its item
(taken from PIPELINE_TRACE) in `behaviour.json`, by "<project slug>:<item key>", then item key, then
script name, then "*": a list of actions, one per run, the last repeating.
Actions: "ok", "75", "75:S" (with a retry hint of S seconds), "1", "sleep:S" (then ok),
"fail-after:S" (then exit 1), "submit-sleep:S" (prints submitted, sleeps, then ok), "hang" (sleeps
forever), "wait:NAME" (until the test calls release(folder, NAME), then ok). Every run is logged
to `runs.jsonl` with its argv, pid and times.
"""

from __future__ import annotations

import json
from pathlib import Path

SCRIPT_NAMES = (
    "generate_storyboard.py",
    "generate_asset.py",
    "create_composite.py",
    "generate_video.py",
    "generate_audio.py",
    "generate_sound_effects.py",
    "generate_music.py",
    "assemble_video.py",
)

PROGRAM = r"""
import json, os, sys, time, fcntl
from pathlib import Path

here = Path(__file__).resolve().parent
argv = sys.argv[1:]

def arg(flag):
    # An option's value, given as `--flag value` or `--flag=value`.
    for i, a in enumerate(argv):
        if a == flag:
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a[len(flag) + 1:]
    raise SystemExit(f"no {flag}")

out = Path(arg("--output"))
trace = os.environ.get("PIPELINE_TRACE", "").split(":")
item = trace[-1]
project_item = ":".join(trace[-2:])
behaviour = json.loads((here / "behaviour.json").read_text()) if (here / "behaviour.json").exists() else {}
actions = (behaviour.get(project_item) or behaviour.get(item) or behaviour.get(Path(__file__).name)
           or behaviour.get("*") or ["ok"])

with open(here / "counter.lock", "a+") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    counts_path = here / "counts.json"
    counts = json.loads(counts_path.read_text()) if counts_path.exists() else {}
    n = counts.get(item, 0)
    counts[item] = n + 1
    # Replaced, not rewritten: a run killed mid-write (a daemon stopped with no grace) leaves the
    # old counts, not an empty file every later run would fail to read.
    (here / "counts.json.tmp").write_text(json.dumps(counts))
    os.replace(here / "counts.json.tmp", counts_path)
action = actions[min(n, len(actions) - 1)]
start = time.time()

def log(outcome):
    project = trace[-2] if len(trace) > 1 else ""
    line = json.dumps({"item": item, "project": project, "n": n, "action": action, "argv": argv,
                       "pid": os.getpid(), "start": start, "end": time.time(), "outcome": outcome})
    # One unbuffered append per line: runs of other scripts append to the same file.
    with open(here / "runs.jsonl", "ab", buffering=0) as f:
        f.write((line + "\n").encode())

log("started")

def emit(obj):
    print(json.dumps(obj), flush=True)

if action.startswith("submit-sleep:"):
    emit({"event": "submitted", "job_id": f"job-{item}-{n}"})
    log("submitted")
    time.sleep(float(action.split(":")[1]))
elif action.startswith("sleep:"):
    time.sleep(float(action.split(":")[1]))
elif action.startswith("fail-after:"):
    time.sleep(float(action.split(":")[1]))
    action = "1"
elif action == "hang":
    time.sleep(3600)
elif action.startswith("wait:"):
    while not (here / f"release-{action.split(':')[1]}").exists():
        time.sleep(0.05)
if action.startswith("75"):
    hint = float(action.split(":")[1]) if ":" in action else None
    emit({"event": "error", "kind": "transient", "message": "provider busy (429), try later",
          "retry_after_s": hint})
    log("75")
    sys.exit(75)
if action == "1":
    emit({"event": "error", "kind": "permanent", "message": f"{item}: content blocked; reword the prompt"})
    log("1")
    sys.exit(1)
out.parent.mkdir(parents=True, exist_ok=True)
tmp = out.with_name(out.name + ".tmp")
if Path(__file__).name == "generate_storyboard.py":
    scenes = int(arg("--scenes"))
    title = arg("--title")
    board = {
        "title": title or "Untitled", "atmosphere": "Soft morning light",
        "assets": [{"key": "env_s01", "kind": "environment", "prompt": "A quiet river bank"},
                   {"key": "char_s01", "kind": "character", "prompt": "A grey heron"}],
        "scenes": [{"key": f"s{i:02d}", "frame": {"environment": "env_s01", "character": "char_s01"},
                    "motion": "Slow push in", "narration": f"Scene {i} of a patient morning.",
                    "sfx": "River ambience"} for i in range(1, scenes + 1)],
    }
    tmp.write_text(json.dumps(board))
else:
    tmp.write_bytes(f"{item} output {n}".encode())
if Path(__file__).name == "assemble_video.py":  # its thumbnail, beside the cut and before it
    from PIL import Image
    Image.new("RGB", (128, 72), (200, 120, 40)).save(out.with_name(out.name + ".thumbnail.jpg"), "JPEG")
os.replace(tmp, out)
meta = {"n": n}
if Path(__file__).name == "assemble_video.py":  # what the real one measures on its file
    meta |= {"duration_s": 21.25, "width": 1920, "height": 1080, "loudness_lufs": -14.1,
             "true_peak_dbtp": -1.6, "captions": 9}
emit({"event": "result", "output": str(out), "cost_usd": 0.01, "provider": "fake", "meta": meta})
log("ok")
"""


def install(folder: Path, behaviour: dict[str, list[str]] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in SCRIPT_NAMES:
        (folder / name).write_text(PROGRAM)
    set_behaviour(folder, behaviour or {})
    return folder


def set_behaviour(folder: Path, behaviour: dict[str, list[str]]) -> None:
    (folder / "behaviour.json").write_text(json.dumps(behaviour))


def release(folder: Path, name: str) -> None:
    """Lets the scripts waiting on `name` ("wait:NAME") go on."""
    (folder / f"release-{name}").touch()


def runs(folder: Path) -> list[dict[str, object]]:
    path = folder / "runs.jsonl"
    if not path.exists():
        return []
    # A run appends its line in one write, but a read at the same moment can see part of it: only
    # whole lines (ended by their newline) are runs yet.
    lines = path.read_text().split("\n")[:-1]
    return [json.loads(line) for line in lines if line.strip()]
