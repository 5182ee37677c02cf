"""The Notion vocabulary: task states and statuses, what the operator may set, what the page shows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import assert_never


class Status(StrEnum):
    DRAFT = "Draft"
    QUEUED = "Queued"
    PLANNING = "Planning"
    STORYBOARD_REVIEW = "Storyboard Review"
    STORYBOARD_APPROVED = "Storyboard Approved"
    GENERATING_ASSETS = "Generating Assets"
    ASSETS_REVIEW = "Assets Review"
    ASSETS_APPROVED = "Assets Approved"
    GENERATING_VIDEO = "Generating Video"
    ASSEMBLING = "Assembling"
    FINAL_REVIEW = "Final Review"
    APPROVED = "Approved"
    UPLOADING = "Uploading"
    PUBLISHED = "Published"
    SCHEDULED = "Scheduled"  # uploaded private, YouTube publishes it at the page's Publish At
    READY = "Ready"
    ERROR = "Error"
    CANCELLED = "Cancelled"
    PAUSED = "Paused"


class Action(StrEnum):
    """What an operator's Status change asks of the daemon."""

    START = "start"  # a new pass (or the first)
    APPROVE_STORYBOARD = "approve_storyboard"
    APPROVE_ASSETS = "approve_assets"
    APPROVE_FINAL = "approve_final"
    CANCEL = "cancel"
    PAUSE = "pause"


# Statuses only the operator sets; everything else is the daemon's to write.
OPERATOR_STATUSES = frozenset(
    {
        Status.DRAFT,
        Status.QUEUED,
        Status.STORYBOARD_APPROVED,
        Status.ASSETS_APPROVED,
        Status.APPROVED,
        Status.CANCELLED,
        Status.PAUSED,
    }
)
# Statuses intake acts on (Draft is ignored).
ACTIONABLE = frozenset(OPERATOR_STATUSES - {Status.DRAFT})
_GATE_OF = {
    Action.APPROVE_STORYBOARD: "storyboard_gate",
    Action.APPROVE_ASSETS: "assets_gate",
    Action.APPROVE_FINAL: "final_gate",
}
_REVIEW_OF = {
    "storyboard_gate": Status.STORYBOARD_REVIEW,
    "assets_gate": Status.ASSETS_REVIEW,
    "final_gate": Status.FINAL_REVIEW,
}
# Where each kind of item puts the task, in pipeline order; the page shows the furthest at work.
STAGE_OF_KIND = {
    "storyboard": Status.PLANNING,
    "asset": Status.GENERATING_ASSETS,
    "composite": Status.GENERATING_ASSETS,
    "clip": Status.GENERATING_VIDEO,
    "narration": Status.GENERATING_VIDEO,
    "sfx": Status.GENERATING_VIDEO,
    "music": Status.GENERATING_VIDEO,
    "assembly": Status.ASSEMBLING,
    "upload": Status.UPLOADING,
}
_ORDER = [
    Status.PLANNING,
    Status.STORYBOARD_REVIEW,
    Status.GENERATING_ASSETS,
    Status.ASSETS_REVIEW,
    Status.GENERATING_VIDEO,
    Status.ASSEMBLING,
    Status.FINAL_REVIEW,
    Status.UPLOADING,
]

# The order a video's page goes through them (a gate's review only where the gate is on).
PIPELINE: tuple[Status, ...] = tuple(_ORDER)

_AFTER_GATE = {
    "storyboard_gate": Status.GENERATING_ASSETS,
    "assets_gate": Status.GENERATING_VIDEO,
    "final_gate": Status.UPLOADING,
}
_UNFINISHED = ("blocked", "ready", "running", "failed")


# The statuses of a video in production: a page showing one of them by hand, or left showing one
# (a page back from the trash), is put right; intake's later polls ask for them and ACTIONABLE.
AT_WORK = frozenset(_ORDER)


def action_for(status: str) -> Action | None:
    """The operator's request behind a Status value, or None for the daemon's own statuses and Draft."""
    mapping = {
        Status.QUEUED: Action.START,
        Status.STORYBOARD_APPROVED: Action.APPROVE_STORYBOARD,
        Status.ASSETS_APPROVED: Action.APPROVE_ASSETS,
        Status.APPROVED: Action.APPROVE_FINAL,
        Status.CANCELLED: Action.CANCEL,
        Status.PAUSED: Action.PAUSE,
    }
    try:
        return mapping.get(Status(status))
    except ValueError:
        return None


def gate_of(action: Action) -> str | None:
    return _GATE_OF.get(action)


def review_of(gate: str) -> Status | None:
    """The Status a page shows while the gate item waits (None for an item that is no gate)."""
    return _REVIEW_OF.get(gate)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


def decide(action: Action, task_state: str | None, waiting_gate: str | None) -> Decision:
    """Whether an operator action is legal for the task as it is; the reason is said to the operator."""
    if task_state is None:
        if action is Action.START:
            return Decision(True)
        return Decision(False, "this page has no production yet; set Status to Queued to start one")
    match action:
        case Action.START:
            if task_state in ("error", "cancelled", "done", "paused", "budget"):
                return Decision(True)
            return Decision(False, "this video is already in production; set Cancelled first to start over")
        case Action.APPROVE_STORYBOARD | Action.APPROVE_ASSETS | Action.APPROVE_FINAL:
            gate = _GATE_OF[action]
            if task_state == "active" and waiting_gate == gate:
                return Decision(True)
            asked = _REVIEW_OF[gate].value
            now = _REVIEW_OF[waiting_gate].value if waiting_gate else "no review"
            return Decision(False, f"there is nothing to approve for {asked}: the video is waiting at {now}")
        case Action.CANCEL:
            if task_state in ("active", "paused", "error", "budget"):
                return Decision(True)
            return Decision(False, f"a {task_state} video cannot be cancelled")
        case Action.PAUSE:
            if task_state == "active":
                return Decision(True)
            return Decision(False, f"only a video in production can be paused; this one is {task_state}")
        case _:
            assert_never(action)


def asked_on(action: Action, shown: str) -> bool:
    """Whether the operator could ask for this action on a page showing the daemon's `shown`: what a
    page shown Ready allows (a new pass), a review (its approval), and so on. False for a value the
    daemon does not write."""
    review = {status: gate for gate, status in _REVIEW_OF.items()}
    state = {
        Status.READY: "done",
        Status.PUBLISHED: "done",
        Status.SCHEDULED: "done",
        Status.ERROR: "error",
        Status.CANCELLED: "cancelled",
        Status.PAUSED: "paused",
    }
    if shown in state:
        return decide(action, state[Status(shown)], None).allowed
    if shown in review or shown in AT_WORK:
        return decide(action, "active", review.get(Status(shown))).allowed
    return False


@dataclass(frozen=True)
class ItemView:
    kind: str
    state: str


def shown_status(task_state: str, items: Iterable[ItemView], *, has_upload: bool = False) -> Status:
    """The Status the page shows for a task: a waiting gate first (the operator must act), else the
    earliest stage with work left. Within a pass items only move towards done, so the shown stage only
    moves forward: showing the furthest stage at work would go back (a clip of one scene running, then
    done while another scene's image is still made)."""
    match task_state:
        case "error":
            return Status.ERROR
        case "cancelled":
            return Status.CANCELLED
        case "paused" | "budget":
            return Status.PAUSED  # "budget": waiting for money; the Error Log has the numbers
        case "done":
            return Status.PUBLISHED if has_upload else Status.READY
    items = list(items)
    waiting = waiting_gate(items)
    if waiting is not None:
        return _REVIEW_OF[waiting]
    # A gate passed puts the page past its review for good: the images' composites may still be
    # made after the assets were approved, yet the page moved on to the clips.
    passed = [_AFTER_GATE[i.kind] for i in items if i.kind in _AFTER_GATE and i.state == "succeeded"]
    floor = max(passed, key=_ORDER.index, default=Status.PLANNING)
    staged = [(STAGE_OF_KIND[i.kind], i.state) for i in items if i.kind in STAGE_OF_KIND]
    left = [stage for stage, state in staged if state in _UNFINISHED]
    if left:
        stage = min(left, key=_ORDER.index)
    else:  # all done: the task is about to finish
        stage = max((stage for stage, _ in staged), key=_ORDER.index, default=Status.PLANNING)
    return max(stage, floor, key=_ORDER.index)


def waiting_gate(items: Iterable[ItemView]) -> str | None:
    waiting = [i.kind for i in items if i.kind in _REVIEW_OF and i.state == "ready"]
    return min(waiting, key=lambda k: _ORDER.index(_REVIEW_OF[k])) if waiting else None


def progress_line(counts: Mapping[str, tuple[int, int]], cost_usd: float) -> str:
    """`Images 3/3 · video clips 7/18 · narration 18/18 · $4.21`: done/total per kind that has any."""
    labels = [
        ("asset", "images"),
        ("composite", "frames"),
        ("clip", "video clips"),
        ("narration", "narration"),
        ("sfx", "sound"),
        ("music", "music"),
        ("assembly", "final cut"),
        ("upload", "YouTube"),
    ]
    parts = [
        f"{label} {counts[kind][0]}/{counts[kind][1]}"
        for kind, label in labels
        if counts.get(kind, (0, 0))[1]
    ]
    parts.append(f"${cost_usd:,.2f}")
    text = " · ".join(parts)
    return text[0].upper() + text[1:]
