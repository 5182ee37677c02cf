"""The Notion vocabulary: what the operator may ask, what the page shows, the progress line."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.plan import PlanOptions, build_plan
from services.status import (
    AT_WORK,
    Action,
    ItemView,
    Status,
    action_for,
    asked_on,
    decide,
    progress_line,
    shown_status,
)
from tests.support.engine_kit import storyboard


def _items(**states: str) -> list[ItemView]:
    return [ItemView(kind.rstrip("0123456789"), state) for kind, state in states.items()]


@pytest.mark.parametrize(
    ("status", "action"),
    [
        ("Queued", Action.START),
        ("Storyboard Approved", Action.APPROVE_STORYBOARD),
        ("Approved", Action.APPROVE_FINAL),
        ("Cancelled", Action.CANCEL),
        ("Paused", Action.PAUSE),
        ("Draft", None),
        ("Generating Video", None),
        ("Something else", None),
    ],
)
def test_operator_statuses_map_to_actions_and_the_daemons_own_to_none(
    status: str, action: Action | None
) -> None:
    assert action_for(status) is action


def test_queued_starts_a_new_pass_only_when_nothing_is_in_production() -> None:
    assert decide(Action.START, None, None).allowed
    for state in ("error", "cancelled", "done", "paused"):
        assert decide(Action.START, state, None).allowed
    refused = decide(Action.START, "active", None)
    assert not refused.allowed
    assert "set Cancelled first" in refused.reason


def test_an_approval_must_match_the_gate_that_waits() -> None:
    assert decide(Action.APPROVE_STORYBOARD, "active", "storyboard_gate").allowed
    refused = decide(Action.APPROVE_FINAL, "active", "storyboard_gate")
    assert not refused.allowed
    assert refused.reason == (
        "there is nothing to approve for Final Review: the video is waiting at Storyboard Review"
    )


def test_cancel_and_pause_are_refused_when_they_mean_nothing() -> None:
    assert decide(Action.CANCEL, "active", None).allowed
    assert not decide(Action.CANCEL, "done", None).allowed
    assert not decide(Action.PAUSE, "error", None).allowed


def test_a_waiting_gate_is_shown_before_work_further_on() -> None:
    items = _items(asset1="succeeded", assets_gate="ready", narration1="running", clip1="blocked")
    assert shown_status("active", items) is Status.ASSETS_REVIEW


def test_the_earliest_stage_with_work_left_is_shown() -> None:
    items = _items(asset1="running", narration1="running", clip1="blocked", assembly="blocked")
    assert shown_status("active", items) is Status.GENERATING_ASSETS
    # One scene's clip at work while another scene's frame is still made: the frames come first.
    items = _items(composite1="succeeded", clip1="running", composite2="running", clip2="blocked")
    assert shown_status("active", items) is Status.GENERATING_ASSETS
    assert shown_status("active", _items(storyboard="running")) is Status.PLANNING
    assert shown_status("active", _items(clip1="succeeded", assembly="running")) is Status.ASSEMBLING


def test_terminal_task_states_have_their_own_status() -> None:
    assert shown_status("done", []) is Status.READY
    assert shown_status("done", [], has_upload=True) is Status.PUBLISHED
    assert shown_status("error", []) is Status.ERROR
    assert shown_status("paused", _items(clip1="running")) is Status.PAUSED


def test_progress_line_counts_each_kind_and_the_money() -> None:
    line = progress_line({"clip": (7, 18), "narration": (18, 18), "sfx": (0, 0)}, 4.214)
    assert line == "Video clips 7/18 · narration 18/18 · $4.21"


@given(
    gates=st.fixed_dictionaries({g: st.booleans() for g in ("storyboard", "assets", "final")}), data=st.data()
)
def test_the_shown_stage_only_moves_forward_within_a_pass(
    gates: dict[str, bool], data: st.DataObject
) -> None:
    """A real plan run in any order its dependencies allow (and gates approved whenever they wait):
    the page's Status never goes back to an earlier stage."""
    plan = build_plan({"scenes": 3}, storyboard(3), PlanOptions(gates=gates), given=True)
    deps = {p.key: p.deps for p in plan}
    kinds = {p.key: p.kind for p in plan}
    gate_on = {p.key: bool(p.input.get("on")) for p in plan if p.is_gate}
    states = dict.fromkeys(deps, "blocked")
    shown: list[Status] = []
    while True:
        for key, state in states.items():  # the refresh: ready when every dependency succeeded
            if state == "blocked" and all(states[d] == "succeeded" for d in deps[key]):
                states[key] = "succeeded" if key in gate_on and not gate_on[key] else "ready"
        if any(s == "blocked" and all(states[d] == "succeeded" for d in deps[k]) for k, s in states.items()):
            continue
        status = shown_status("active", [ItemView(kinds[k], s) for k, s in states.items()])
        shown.append(status)
        movable = sorted(k for k, s in states.items() if s in ("ready", "running"))
        if not movable:
            break
        key = data.draw(st.sampled_from(movable))
        states[key] = "succeeded" if states[key] == "running" or key in gate_on else "running"
    order = [s for s in Status if s in AT_WORK]  # declaration order is pipeline order
    positions = [order.index(s) for s in shown]
    assert positions == sorted(positions), " -> ".join(
        s.value for n, s in enumerate(shown) if n == 0 or shown[n - 1] is not s
    )
    assert shown[0] is Status.PLANNING


@pytest.mark.parametrize(
    ("action", "shown", "asked"),
    [
        (Action.START, "Ready", True),  # a finished video queued again
        (Action.START, "Error", True),
        (Action.START, "Planning", False),  # refused on a video in production
        (Action.APPROVE_STORYBOARD, "Storyboard Review", True),
        (Action.APPROVE_STORYBOARD, "Assets Review", False),
        (Action.CANCEL, "Generating Video", True),
        (Action.CANCEL, "Cancelled", False),
        (Action.START, "Not a status", False),
    ],
)
def test_what_an_operator_can_ask_of_a_page_showing_a_status(action: Action, shown: str, asked: bool) -> None:
    assert asked_on(action, shown) is asked
