"""What `demo` shows while the video is made: each step's done/total and what runs, the cost, the
Status the page shows and each review approved automatically.

On a terminal, a small table redrawn in place, with those events scrolling above it. Anywhere else
(a pipe, a file, CI) plain lines, one per event, and a line of what is at work when nothing else
was said for a while; no escape codes. The daemon's own log goes to a file (daemon/demo.py).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from services.status import PIPELINE, STAGE_OF_KIND, ItemView, shown_status

# The steps in pipeline order, as the page's Progress line names them.
STEPS = (
    ("storyboard", "storyboard"),
    ("asset", "images"),
    ("composite", "frames"),
    ("narration", "narration"),
    ("sfx", "sound"),
    ("music", "music"),
    ("clip", "video clips"),
    ("assembly", "final cut"),
    ("upload", "YouTube"),
)
REVIEWS = {"storyboard_gate": "storyboard", "assets_gate": "assets", "final_gate": "final"}
# Plain lines: say what is at work after this long without a line (when it is what was said last
# time, after the longer wait: a long step is not repeated every few seconds).
QUIET_S = 10.0
SAME_S = 30.0
BAR = 12


@dataclass(frozen=True)
class Step:
    done: int = 0
    running: int = 0
    total: int = 0


@dataclass(frozen=True)
class Snapshot:
    status: str  # as the page shows it
    steps: Mapping[str, Step]  # by item kind, the steps the plan has
    approved: frozenset[str]  # review gates on for the channel, passed (demo mode approves them)
    cost_usd: float


def snapshot(task_state: str, rows: Iterable[tuple[str, str, int, Any]]) -> Snapshot:
    """From the task's state and its items' (kind, state, cost in micro-dollars, input)."""
    views: list[ItemView] = []
    counts: dict[str, list[int]] = {}
    approved: set[str] = set()
    micros = 0
    for kind, state, cost, data in rows:
        views.append(ItemView(kind, state))
        micros += cost or 0
        if kind in REVIEWS:
            if state == "succeeded" and isinstance(data, dict) and data.get("on", True):
                approved.add(kind)
            continue
        done, running, total = counts.setdefault(kind, [0, 0, 0])
        counts[kind] = [done + (state == "succeeded"), running + (state == "running"), total + 1]
    status = shown_status(task_state, views, has_upload="upload" in counts).value
    steps = {kind: Step(*counts[kind]) for kind, _ in STEPS if kind in counts}
    return Snapshot(status, steps, frozenset(approved), micros / 1_000_000)


def events(before: Snapshot | None, after: Snapshot) -> list[str]:
    """What changed, as a person would say it: steps finished, reviews approved, a new Status."""
    said = []
    old = before.steps if before else {}
    for kind, label in STEPS:
        step = after.steps.get(kind)
        if step and step.total and step.done == step.total and old.get(kind, Step()).done < step.total:
            said.append(f"  {label} {step.done}/{step.total} done · ${after.cost_usd:,.2f} so far")
    for gate in sorted(
        after.approved - (before.approved if before else frozenset()), key=list(REVIEWS).index
    ):
        said.append(f"  {REVIEWS[gate]} review: approved automatically (demo mode)")
    if before is None or after.status != before.status:
        # The stages passed between the looks come first: they were the Status before these steps.
        said = [*passed_between(before, after), *said, f"{after.status}"]
    return said


def passed_between(before: Snapshot | None, after: Snapshot) -> list[str]:
    """The stages the project went through between two looks, in order: a stage faster than the
    time between looks (a storyboard made in under a second) was still the page's Status for a
    while. A stage counts when the plan has steps of its kind."""
    order = [status.value for status in PIPELINE]
    if after.status not in order:
        return []
    start = order.index(before.status) + 1 if before is not None and before.status in order else 0
    stages = {STAGE_OF_KIND[kind].value for kind in after.steps if kind in STAGE_OF_KIND}
    return [status for status in order[start : order.index(after.status)] if status in stages]


def at_work(snap: Snapshot) -> str:
    """`video clips 1/4 (3 running), music 0/1 (1 running)`: the steps with something running."""
    busy = [
        f"{label} {step.done}/{step.total} ({step.running} running)"
        for kind, label in STEPS
        if (step := snap.steps.get(kind)) and step.running
    ]
    return ", ".join(busy)


@dataclass
class PlainView:
    """One line per event, `[ 12.3s] ...`; for pipes, files and logs."""

    out: TextIO
    last: Snapshot | None = None
    said_at: float = 0.0
    busy: str = ""  # the last "at work" line

    def update(self, snap: Snapshot, elapsed: float) -> None:
        lines = events(self.last, snap)
        busy = f"  at work: {at_work(snap)} · ${snap.cost_usd:,.2f} so far" if at_work(snap) else ""
        quiet = elapsed - self.said_at
        if not lines and busy and quiet >= (SAME_S if busy == self.busy else QUIET_S):
            lines = [busy]
            self.busy = busy
        for line in lines:
            self._say(f"[{elapsed:5.1f}s] {line}")
        if lines:
            self.said_at = elapsed
        self.last = snap

    def note(self, text: str) -> None:
        self._say(text)

    def close(self) -> None:
        return None

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)


@dataclass
class LiveView:
    """A table redrawn in place (ANSI cursor moves), events printed above it; for a terminal."""

    out: TextIO
    last: Snapshot | None = None
    drawn: int = 0  # lines of the table on screen
    unicode: bool = True

    def update(self, snap: Snapshot, elapsed: float) -> None:
        self._erase()
        for line in events(self.last, snap):
            self._print(f"[{elapsed:5.1f}s] {line}")
        table = self.table(snap, elapsed)
        for line in table:
            self._print(line)
        self.drawn = len(table)
        self.last = snap
        self.out.flush()

    def note(self, text: str) -> None:
        self._erase()
        self._print(text)
        self.out.flush()

    def close(self) -> None:
        """The table stays on screen as it was last drawn."""
        self.drawn = 0

    def table(self, snap: Snapshot, elapsed: float) -> list[str]:
        full, empty = ("█", "░") if self.unicode else ("#", "-")
        width = max(20, shutil.get_terminal_size((100, 24)).columns - 1)
        lines = [f"  {snap.status} · {elapsed:.0f} s · ${snap.cost_usd:,.2f}"]
        for kind, label in STEPS:
            step = snap.steps.get(kind)
            if step is None:
                continue
            filled = round(BAR * step.done / step.total) if step.total else 0
            state = "done" if step.done == step.total else (f"{step.running} running" if step.running else "")
            bar = full * filled + empty * (BAR - filled)
            lines.append(f"  {label:<12} {bar} {step.done:>2}/{step.total:<2} {state}")
        return [line[:width].rstrip() for line in lines]

    def _erase(self) -> None:
        if self.drawn:
            self.out.write(f"\x1b[{self.drawn}F\x1b[J")  # to the table's first line; clear below
            self.drawn = 0

    def _print(self, text: str) -> None:
        self.out.write(text + "\n")


def view_for(out: TextIO) -> PlainView | LiveView:
    """The live table on a terminal, plain lines anywhere else."""
    if not out.isatty():
        return PlainView(out)
    encoding = (getattr(out, "encoding", "") or "").lower().replace("-", "")
    return LiveView(out, unicode=encoding.startswith("utf"))
