"""The Notion vocabulary: what the operator may ask, what the page shows, the progress line."""

from __future__ import annotations

import pytest

from services.status import Action, ItemView, Status, action_for, decide, progress_line, shown_status


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


def test_the_furthest_stage_at_work_is_shown() -> None:
    items = _items(asset1="running", narration1="running", clip1="blocked", assembly="blocked")
    assert shown_status("active", items) is Status.GENERATING_VIDEO
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
