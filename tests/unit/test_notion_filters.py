"""The sandbox's Notion filter, sort and cursor logic on plain documents (no server)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.notion.errors import NotionError
from sandbox.notion.filters import compile_filter, compile_sorts
from sandbox.notion.objects import text_item
from sandbox.notion.properties import Schema, build_schema
from sandbox.notion.query import window

SCHEMA: Schema = build_schema(
    {
        "Title": {"title": {}},
        "Status": {"select": {"options": [{"name": "Draft"}, {"name": "Queued"}, {"name": "Ready"}]}},
        "Count": {"number": {}},
        "Updated": {"date": {}},
    },
    status_options_allowed=False,
    where="body.properties",
)


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def option(name: str) -> dict[str, Any]:
    found = next(o for o in SCHEMA["Status"]["select"]["options"] if o["name"] == name)
    return {"id": found["id"], "name": name, "color": found["color"]}


def doc(
    seq: int, title: str = "", status: str | None = None, count: float | None = None, **extra: Any
) -> dict[str, Any]:
    values: dict[str, Any] = {"title": [text_item(title)]}
    if status:
        values[SCHEMA["Status"]["id"]] = option(status)
    if count is not None:
        values[SCHEMA["Count"]["id"]] = count
    if "updated" in extra:
        values[SCHEMA["Updated"]["id"]] = {"start": extra["updated"], "end": None, "time_zone": None}
    edited = extra.get("edited", "2026-07-04T09:08:45")
    return {
        "id": f"00000000-0000-4000-8000-{seq:012d}",
        "seq": seq,
        "created_at": ts(edited),
        "edited_at": ts(edited),
        "values": values,
    }


def matches(condition: dict[str, Any], docs: list[dict[str, Any]]) -> list[int]:
    test = compile_filter(condition, SCHEMA)
    return [d["seq"] for d in docs if test(d)]


def test_timestamps_compare_rounded_down_to_the_minute() -> None:
    page = [doc(1, edited="2026-07-04T09:08:45")]

    def edited(op: str, value: str) -> list[int]:
        return matches({"timestamp": "last_edited_time", "last_edited_time": {op: value}}, page)

    assert edited("on_or_after", "2026-07-04T09:08:00Z") == [1]
    assert edited("on_or_after", "2026-07-04T09:08:30Z") == []  # the edit at :45 reads as 09:08:00
    assert edited("after", "2026-07-04T09:07:59Z") == [1]
    assert edited("before", "2026-07-04T09:08:00Z") == []
    assert edited("equals", "2026-07-04") == [1]  # a date covers its whole day
    assert edited("after", "2026-07-04") == []
    assert edited("on_or_before", "2026-07-04") == [1]


def test_date_property_and_empty_checks() -> None:
    docs = [doc(1, updated="2026-07-03"), doc(2, updated="2026-07-05T10:00:00Z"), doc(3)]
    assert matches({"property": "Updated", "date": {"before": "2026-07-04"}}, docs) == [1]
    assert matches({"property": "Updated", "date": {"on_or_after": "2026-07-04"}}, docs) == [2]
    assert matches({"property": "Updated", "date": {"is_empty": True}}, docs) == [3]


def test_select_and_number_operators_treat_empty_values_like_notion() -> None:
    docs = [doc(1, status="Queued", count=2), doc(2, status="Draft"), doc(3, count=5)]
    assert matches({"property": "Status", "select": {"equals": "Queued"}}, docs) == [1]
    assert matches({"property": "Status", "select": {"does_not_equal": "Queued"}}, docs) == [2, 3]
    assert matches({"property": "Status", "select": {"equals": "Nonexistent"}}, docs) == []
    assert matches({"property": "Count", "number": {"does_not_equal": 2}}, docs) == [2, 3]
    assert matches({"property": "Count", "number": {"less_than_or_equal_to": 5}}, docs) == [1, 3]


def test_compound_filters_nest_two_levels_and_no_more() -> None:
    leaf = {"property": "Count", "number": {"is_not_empty": True}}
    docs = [doc(1, count=1), doc(2)]
    assert matches({"or": [{"and": [leaf]}]}, docs) == [1]
    with pytest.raises(NotionError) as err:
        compile_filter({"or": [{"and": [{"or": [leaf]}]}]}, SCHEMA)
    assert err.value.code == "validation_error" and "body.filter.or[0].and[0].or" in err.value.message


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ({"property": "Nope", "select": {"equals": "x"}}, "Could not find property with name or id: Nope"),
        ({"property": "Status", "select": {"equals": "x", "is_empty": True}}, "should have exactly one of"),
        ({"property": "Status", "select": {"is_empty": False}}, "should be `true`"),
        ({"property": "Count", "number": {"equals": "3"}}, "should be a number"),
        ({"timestamp": "updated_time", "updated_time": {"after": "2026-01-01"}}, "body.filter.timestamp"),
        ({"and": {"property": "Count"}}, "body.filter.and should be an array"),
    ],
)
def test_bad_filters_name_what_is_wrong(condition: dict[str, Any], message: str) -> None:
    with pytest.raises(NotionError) as err:
        compile_filter(condition, SCHEMA)
    assert err.value.status == 400 and message in err.value.message


def test_sorts_keep_empty_values_last_and_follow_option_order() -> None:
    docs = [doc(1, count=3), doc(2), doc(3, count=9), doc(4, count=3)]
    for direction, expected in (("ascending", [4, 1, 3, 2]), ("descending", [3, 4, 1, 2])):
        key = compile_sorts([{"property": "Count", "direction": direction}], SCHEMA)
        assert [d["seq"] for d in sorted(docs, key=key)] == expected  # ties: newest first
    statuses = [doc(1, status="Ready"), doc(2, status="Draft"), doc(3, status="Queued")]
    key = compile_sorts([{"property": "Status", "direction": "ascending"}], SCHEMA)
    assert [d["seq"] for d in sorted(statuses, key=key)] == [2, 3, 1]


@given(
    counts=st.lists(st.one_of(st.none(), st.integers(0, 5)), max_size=60),
    size=st.integers(1, 100),
    descending=st.booleans(),
)
def test_cursor_windows_cover_the_ordered_results_exactly_once(
    counts: list[int | None], size: int, descending: bool
) -> None:
    docs = [doc(i, count=c) for i, c in enumerate(counts)]
    key = compile_sorts(
        [{"property": "Count", "direction": "descending" if descending else "ascending"}], SCHEMA
    )
    ordered = sorted(docs, key=key)
    by_id = {d["id"]: d for d in docs}
    seen: list[str] = []
    cursor: str | None = None
    while True:
        chunk, cursor = window(ordered, key, cursor, size, by_id.get)
        seen += [d["id"] for d in chunk]
        if cursor is None:
            break
    assert seen == [d["id"] for d in ordered]
