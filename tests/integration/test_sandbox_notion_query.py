"""The sandbox's Notion data source queries through notion-client: pagination, every filter
operator the daemon relies on, sorts, minute-rounded timestamps, and Notion-style refusals."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from notion_client import Client
from notion_client.errors import APIResponseError
from notion_client.helpers import collect_paginated_api

from tests.support.sandbox_proc import SandboxProcess

LOG = logging.getLogger("tests.notion")


def _creds(proc: SandboxProcess) -> dict[str, str]:
    return dict(json.loads((proc.state_dir / "credentials.json").read_text()))


@pytest.fixture(scope="module")
def notion(sandbox: SandboxProcess) -> Iterator[Client]:
    with httpx.Client() as http:
        yield Client(
            client=http,
            auth=_creds(sandbox)["notion_token"],
            base_url=sandbox.base("notion"),
            retry=False,
            logger=LOG,
        )


def new_source(notion: Client, proc: SandboxProcess, properties: dict[str, Any], title: str = "Q") -> str:
    db = notion.databases.create(
        parent={"type": "page_id", "page_id": _creds(proc)["notion_root_page_id"]},
        title=[{"type": "text", "text": {"content": title}}],
        initial_data_source={"properties": properties},
    )
    return str(db["data_sources"][0]["id"])


def text(value: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": {"content": value}}]


def titles(result: dict[str, Any]) -> list[str]:
    return [p["properties"]["Title"]["title"][0]["plain_text"] for p in result["results"]]


# Pagination --------------------------------------------------------------------------------------
def test_cursor_pagination_walks_230_pages_exactly_once(notion: Client, sandbox: SandboxProcess) -> None:
    ds = new_source(notion, sandbox, {"Title": {"title": {}}})
    created = {
        notion.pages.create(parent={"data_source_id": ds}, properties={"Title": {"title": text(f"p{i:03}")}})[
            "id"
        ]
        for i in range(230)
    }
    first = notion.data_sources.query(ds, page_size=100)
    assert (len(first["results"]), first["has_more"]) == (100, True)
    second = notion.data_sources.query(ds, page_size=100, start_cursor=first["next_cursor"])
    assert (len(second["results"]), second["has_more"]) == (100, True)
    third = notion.data_sources.query(ds, page_size=100, start_cursor=second["next_cursor"])
    assert (len(third["results"]), third["has_more"], third["next_cursor"]) == (30, False, None)
    seen = [p["id"] for r in (first, second, third) for p in r["results"]]
    assert len(seen) == len(set(seen)) == 230
    assert set(seen) == created

    default = notion.data_sources.query(ds)  # page_size defaults to 100
    assert len(default["results"]) == 100 and default["has_more"] is True
    assert {p["id"] for p in collect_paginated_api(notion.data_sources.query, data_source_id=ds)} == created


def test_a_cursor_survives_its_page_leaving_the_result_set(notion: Client, sandbox: SandboxProcess) -> None:
    ds = new_source(
        notion, sandbox, {"Title": {"title": {}}, "Status": {"select": {"options": [{"name": "Queued"}]}}}
    )
    for i in range(5):
        notion.pages.create(
            parent={"data_source_id": ds},
            properties={"Title": {"title": text(f"t{i}")}, "Status": {"select": {"name": "Queued"}}},
        )
    queued = {"property": "Status", "select": {"equals": "Queued"}}
    sort = [{"property": "Title", "direction": "ascending"}]
    first = notion.data_sources.query(ds, filter=queued, sorts=sort, page_size=2)
    assert titles(first) == ["t0", "t1"]
    # The page the cursor names (t2) is taken off the queue before the next request.
    notion.pages.update(first["next_cursor"], properties={"Status": {"select": {"name": "Planning"}}})
    rest = notion.data_sources.query(
        ds, filter=queued, sorts=sort, page_size=2, start_cursor=first["next_cursor"]
    )
    assert titles(rest) == ["t3", "t4"]


@pytest.mark.parametrize("size", [0, 101])
def test_page_size_out_of_range_is_a_validation_error(
    notion: Client, sandbox: SandboxProcess, size: int
) -> None:
    ds = new_source(notion, sandbox, {"Title": {"title": {}}})
    with pytest.raises(APIResponseError) as err:
        notion.data_sources.query(ds, page_size=size)
    assert err.value.status == 400 and err.value.code == "validation_error"
    assert "body.page_size" in str(err.value)


# Filters -----------------------------------------------------------------------------------------
PAGES = [
    # title, notes, select Status, status Stage, checkbox Flag, number Count
    ("Heron", "Patient hunter of the delta", "Queued", "In progress", True, 3),
    ("Otter", "Playful river dweller", "Draft", "Done", False, 1),
    ("Kingfisher", "A blue flash over water", None, "Not started", True, None),
    ("Beaver", "Builder of dams", "Queued", None, False, 7),
]


@pytest.fixture(scope="module")
def zoo(notion: Client, sandbox: SandboxProcess) -> str:
    ds = new_source(
        notion,
        sandbox,
        {
            "Title": {"title": {}},
            "Notes": {"rich_text": {}},
            "Status": {"select": {"options": [{"name": "Draft"}, {"name": "Queued"}]}},
            "Stage": {"status": {}},  # Notion's default options: Not started, In progress, Done
            "Flag": {"checkbox": {}},
            "Count": {"number": {"format": "number"}},
        },
        title="Zoo",
    )
    for name, notes, status, stage, flag, count in PAGES:
        properties: dict[str, Any] = {
            "Title": {"title": text(name)},
            "Notes": {"rich_text": text(notes)},
            "Flag": {"checkbox": flag},
            "Count": {"number": count},
            "Stage": {"status": {"name": stage} if stage else None},
        }
        if status:
            properties["Status"] = {"select": {"name": status}}
        notion.pages.create(parent={"data_source_id": ds}, properties=properties)
    return ds


FILTERS: list[tuple[str, dict[str, Any], set[str]]] = [
    ("select equals", {"property": "Status", "select": {"equals": "Queued"}}, {"Heron", "Beaver"}),
    (
        "select does_not_equal",
        {"property": "Status", "select": {"does_not_equal": "Queued"}},
        {"Otter", "Kingfisher"},
    ),
    ("select is_empty", {"property": "Status", "select": {"is_empty": True}}, {"Kingfisher"}),
    (
        "select is_not_empty",
        {"property": "Status", "select": {"is_not_empty": True}},
        {"Heron", "Otter", "Beaver"},
    ),
    ("status equals", {"property": "Stage", "status": {"equals": "In progress"}}, {"Heron"}),
    (
        "status does_not_equal",
        {"property": "Stage", "status": {"does_not_equal": "Done"}},
        {"Heron", "Kingfisher", "Beaver"},
    ),
    ("status is_empty", {"property": "Stage", "status": {"is_empty": True}}, {"Beaver"}),
    (
        "status is_not_empty",
        {"property": "Stage", "status": {"is_not_empty": True}},
        {"Heron", "Otter", "Kingfisher"},
    ),
    ("rich_text equals", {"property": "Notes", "rich_text": {"equals": "Builder of dams"}}, {"Beaver"}),
    ("rich_text contains ignores case", {"property": "Notes", "rich_text": {"contains": "RIVER"}}, {"Otter"}),
    ("title equals", {"property": "Title", "title": {"equals": "Otter"}}, {"Otter"}),
    (
        "title contains",
        {"property": "Title", "title": {"contains": "er"}},
        {"Heron", "Otter", "Kingfisher", "Beaver"},
    ),
    ("checkbox true", {"property": "Flag", "checkbox": {"equals": True}}, {"Heron", "Kingfisher"}),
    ("checkbox false", {"property": "Flag", "checkbox": {"equals": False}}, {"Otter", "Beaver"}),
    ("number greater_than", {"property": "Count", "number": {"greater_than": 2}}, {"Heron", "Beaver"}),
    (
        "and",
        {
            "and": [
                {"property": "Status", "select": {"equals": "Queued"}},
                {"property": "Flag", "checkbox": {"equals": True}},
            ]
        },
        {"Heron"},
    ),
    (
        "or",
        {
            "or": [
                {"property": "Title", "title": {"equals": "Otter"}},
                {"property": "Count", "number": {"is_empty": True}},
            ]
        },
        {"Otter", "Kingfisher"},
    ),
    (
        "or nested in and (two levels)",
        {
            "and": [
                {"property": "Flag", "checkbox": {"equals": False}},
                {
                    "or": [
                        {"property": "Status", "select": {"equals": "Draft"}},
                        {"property": "Stage", "status": {"is_empty": True}},
                    ]
                },
            ]
        },
        {"Otter", "Beaver"},
    ),
]


@pytest.mark.parametrize(("label", "condition", "expected"), FILTERS, ids=[f[0] for f in FILTERS])
def test_filter_operator(
    notion: Client, zoo: str, label: str, condition: dict[str, Any], expected: set[str]
) -> None:
    assert set(titles(notion.data_sources.query(zoo, filter=condition))) == expected


def test_sorts_by_property_and_timestamp(notion: Client, zoo: str) -> None:
    by_count = notion.data_sources.query(zoo, sorts=[{"property": "Count", "direction": "descending"}])
    assert titles(by_count) == ["Beaver", "Heron", "Otter", "Kingfisher"]  # empty values sort last
    by_title = notion.data_sources.query(zoo, sorts=[{"property": "Title", "direction": "ascending"}])
    assert titles(by_title) == ["Beaver", "Heron", "Kingfisher", "Otter"]
    # Select values sort in the options' order (Draft before Queued), not alphabetically.
    by_status = notion.data_sources.query(
        zoo,
        sorts=[
            {"property": "Status", "direction": "ascending"},
            {"property": "Title", "direction": "ascending"},
        ],
    )
    assert titles(by_status) == ["Otter", "Beaver", "Heron", "Kingfisher"]
    created = notion.data_sources.query(zoo, sorts=[{"timestamp": "created_time", "direction": "ascending"}])
    assert sorted(titles(created)) == sorted(p[0] for p in PAGES)


BAD_FILTERS: list[tuple[str, dict[str, Any], str]] = [
    (
        "unknown property",
        {"property": "Colour", "select": {"equals": "Red"}},
        "Could not find property with name or id: Colour",
    ),
    ("type mismatch", {"property": "Status", "status": {"equals": "Queued"}}, "does not match filter status"),
    ("unknown operator", {"property": "Status", "select": {"resembles": "Q"}}, "body.filter.select"),
    ("wrong value type", {"property": "Flag", "checkbox": {"equals": "yes"}}, "should be a boolean"),
    ("no condition", {"nothing": True}, "body.filter.property should be defined"),
    (
        "three levels of nesting",
        {"and": [{"or": [{"and": [{"property": "Flag", "checkbox": {"equals": True}}]}]}]},
        "body.filter.and[0].or[0].and",
    ),
    (
        "bad timestamp",
        {"timestamp": "last_edited_time", "last_edited_time": {"on_or_after": "yesterday"}},
        "ISO 8601",
    ),
]


@pytest.mark.parametrize(("label", "condition", "message"), BAD_FILTERS, ids=[f[0] for f in BAD_FILTERS])
def test_bad_filter_is_a_notion_style_validation_error(
    notion: Client, zoo: str, label: str, condition: dict[str, Any], message: str
) -> None:
    with pytest.raises(APIResponseError) as err:
        notion.data_sources.query(zoo, filter=condition)
    assert err.value.status == 400
    assert err.value.code == "validation_error"
    assert message in str(err.value)


def test_filter_properties_limits_the_returned_properties(notion: Client, zoo: str) -> None:
    result = notion.data_sources.query(zoo, filter_properties=["title"], page_size=1)
    assert list(result["results"][0]["properties"]) == ["Title"]


# Timestamps --------------------------------------------------------------------------------------
def _at(text_value: str) -> datetime:
    return datetime.fromisoformat(text_value.replace("Z", "+00:00"))


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_last_edited_time_is_rounded_down_and_filters_see_the_rounded_value(
    notion: Client, sandbox: SandboxProcess
) -> None:
    ds = new_source(notion, sandbox, {"Title": {"title": {}}, "Progress": {"rich_text": {}}})
    page = notion.pages.create(parent={"data_source_id": ds}, properties={"Title": {"title": text("tick")}})
    before_edit = datetime.now(UTC)
    edited = notion.pages.update(page["id"], properties={"Progress": {"rich_text": text("50 %")}})
    after_edit = datetime.now(UTC)
    stamp = edited["last_edited_time"]
    assert stamp.endswith(":00.000Z"), stamp
    minute = _at(stamp)
    assert before_edit.replace(second=0, microsecond=0) <= minute <= after_edit
    assert edited["created_time"].endswith(":00.000Z")

    def matching(op: str, moment: datetime, timestamp: str = "last_edited_time") -> bool:
        condition = {"timestamp": timestamp, timestamp: {op: _iso(moment)}}
        return page["id"] in {p["id"] for p in notion.data_sources.query(ds, filter=condition)["results"]}

    assert matching("on_or_after", minute)
    assert not matching("after", minute)
    # The trap: 30 s into that minute the page looks older than it is, so a poller must overlap.
    assert not matching("on_or_after", minute + timedelta(seconds=30))
    assert matching("before", minute + timedelta(seconds=60))
    assert not matching("before", minute)
    assert matching("on_or_after", _at(edited["created_time"]), "created_time")
    assert matching("on_or_after", minute - timedelta(minutes=1))


def test_query_leaves_out_trashed_pages(notion: Client, sandbox: SandboxProcess) -> None:
    ds = new_source(notion, sandbox, {"Title": {"title": {}}})
    keep = notion.pages.create(parent={"data_source_id": ds}, properties={"Title": {"title": text("keep")}})
    gone = notion.pages.create(parent={"data_source_id": ds}, properties={"Title": {"title": text("gone")}})
    notion.pages.update(gone["id"], in_trash=True)
    assert [p["id"] for p in notion.data_sources.query(ds)["results"]] == [keep["id"]]
