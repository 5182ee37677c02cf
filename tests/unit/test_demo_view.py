"""The demo's progress view: plain lines a person reads off a pipe (no escape codes), and on a
terminal a table redrawn in place with the events above it."""

from __future__ import annotations

import io
from typing import Any

from daemon.demo_view import LiveView, PlainView, events, snapshot, view_for

Row = tuple[str, str, int, Any]
GATE_ON: dict[str, Any] = {"on": True}


def _rows(**states: list[str]) -> list[Row]:
    rows: list[Row] = [("storyboard", "succeeded", 2_000, {}), ("storyboard_gate", "succeeded", 0, GATE_ON)]
    for kind, kind_states in states.items():
        rows += [(kind, state, 40_000 if state == "succeeded" else 0, {}) for state in kind_states]
    return rows


def test_a_snapshot_counts_each_step_and_the_reviews_demo_mode_approved() -> None:
    snap = snapshot("active", _rows(asset=["succeeded", "running", "ready"], clip=["blocked"]))
    assert snap.status == "Generating Assets"
    off = snapshot("active", [*_rows(asset=["succeeded"]), ("assets_gate", "succeeded", 0, {"on": False})])
    assert off.approved == {"storyboard_gate"}  # a gate the channel has off is no review
    assert (snap.steps["asset"].done, snap.steps["asset"].running, snap.steps["asset"].total) == (1, 1, 3)
    assert set(snap.steps) == {"storyboard", "asset", "clip"}  # gates are reviews, not steps
    assert snap.approved == {"storyboard_gate"}
    assert snap.cost_usd == 0.042


def test_events_say_steps_done_reviews_approved_and_a_new_status_once_each() -> None:
    first = snapshot("active", _rows(asset=["running", "running"]))
    assert events(None, first) == [
        "Planning",  # the storyboard was made between two looks: its stage is still told
        "  storyboard 1/1 done · $0.00 so far",
        "  storyboard review: approved automatically (demo mode)",
        "Generating Assets",
    ]
    second = snapshot("active", _rows(asset=["succeeded", "succeeded"], clip=["ready"]))
    assert events(first, second) == ["  images 2/2 done · $0.08 so far", "Generating Video"]
    assert events(second, second) == []
    # A stage over between two looks (the clips made while the view did not look) is told in order.
    planning = snapshot("active", [("storyboard", "running", 0, {})])
    assert events(None, planning) == ["Planning"]
    assembling = snapshot("active", _rows(asset=["succeeded"], clip=["succeeded"], assembly=["running"]))
    assert [line for line in events(second, assembling) if not line.startswith("  ")] == ["Assembling"]
    assert [line for line in events(first, assembling) if not line.startswith("  ")] == [
        "Generating Video",
        "Assembling",
    ]


def test_plain_lines_have_no_escape_codes_and_say_what_is_at_work_when_quiet() -> None:
    out = io.StringIO()
    view = PlainView(out)
    busy = snapshot("active", _rows(asset=["succeeded"], clip=["running", "ready"]))
    view.update(busy, 2.0)
    view.update(busy, 5.0)  # nothing new, not quiet for long
    view.update(busy, 12.5)  # quiet for 10 s: what runs
    view.update(busy, 30.0)  # the same again: only after 30 s
    view.update(busy, 43.0)
    lines = out.getvalue().splitlines()
    assert "\x1b" not in out.getvalue()
    assert lines[-2:] == [
        "[ 12.5s]   at work: video clips 0/2 (1 running) · $0.04 so far",
        "[ 43.0s]   at work: video clips 0/2 (1 running) · $0.04 so far",
    ]
    assert "[  2.0s] Generating Video" in lines


def test_the_live_table_is_redrawn_in_place_with_the_events_above_it() -> None:
    out = io.StringIO()
    view = LiveView(out)
    view.update(snapshot("active", _rows(asset=["running"])), 1.0)
    first = out.getvalue()
    table = first.splitlines()[-3:]
    assert table[0] == "  Generating Assets · 1 s · $0.00"
    assert table[1].startswith("  storyboard   ████████████  1/1  done")
    assert table[2].startswith("  images       ░░░░░░░░░░░░  0/1  1 running")
    view.update(snapshot("active", _rows(asset=["succeeded"], clip=["running"])), 2.0)
    again = out.getvalue()[len(first) :]
    # Up to the table's first line and cleared, then the new events, then the table again.
    assert again.startswith("\x1b[3F\x1b[J[  2.0s]   images 1/1 done")
    assert again.rstrip().endswith("video clips  ░░░░░░░░░░░░  0/1  1 running")


def test_a_terminal_gets_the_table_and_anything_else_plain_lines() -> None:
    class Terminal(io.StringIO):
        encoding = "utf-8"

        def isatty(self) -> bool:
            return True

    assert isinstance(view_for(Terminal()), LiveView)
    assert isinstance(view_for(io.StringIO()), PlainView)
