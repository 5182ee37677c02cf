"""The sandbox's Notion pieces in process: rate limiter, error envelope, property parsing, and the
cost of a query over 5,000 pages (dispatch without HTTP)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import sandbox.notion
from sandbox.app import Sandbox
from sandbox.config import SandboxConfig
from sandbox.http import Request
from sandbox.notion.errors import NotionError, error_response
from sandbox.notion.properties import build_schema, parse_values, update_schema
from sandbox.notion.ratelimit import TokenBuckets


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_the_burst_then_asks_to_wait_whole_seconds() -> None:
    settings = {"rate": 0.5, "burst": 3}
    clock = FakeClock()
    buckets = TokenBuckets(lambda: (settings["rate"], settings["burst"]), clock)
    assert [buckets.take("a") for _ in range(3)] == [None, None, None]
    assert buckets.take("a") == 2.0  # one token at 0.5/s takes 2 s
    assert buckets.take("b") is None  # each token has its own bucket
    clock.now += 1.2
    assert buckets.take("a") == 1.0  # 0.6 of a token: wait rounds up to a whole second, at least 1
    clock.now += 1.0
    assert buckets.take("a") is None
    settings["rate"] = 1000  # read on every call
    clock.now += 0.01
    assert buckets.take("a") is None


def test_a_fast_rate_allows_a_seconds_worth_of_requests_at_once() -> None:
    buckets = TokenBuckets(lambda: (1000.0, 10), FakeClock())
    assert all(buckets.take("a") is None for _ in range(1000))
    assert buckets.take("a") == 1.0


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (409, None, "conflict_error"),
        (429, None, "rate_limited"),
        (500, None, "internal_server_error"),
        (503, None, "service_unavailable"),
        (404, None, "object_not_found"),
        (401, None, "unauthorized"),
        (400, None, "validation_error"),
        (500, "service_unavailable", "service_unavailable"),  # an explicit code wins
    ],
)
def test_error_envelope_maps_status_to_code(status: int, code: str | None, expected: str) -> None:
    response = error_response(status, code, None, None)
    body = json.loads(response.body)
    assert response.status == status
    assert (body["object"], body["status"], body["code"]) == ("error", status, expected)
    assert body["message"] and body["request_id"]


def test_rate_limited_answers_carry_an_integer_retry_after_of_at_least_one() -> None:
    assert error_response(429, None, None, None).headers["Retry-After"] == "1"
    assert error_response(429, None, None, 0.2).headers["Retry-After"] == "1"
    assert error_response(429, None, None, 2.5).headers["Retry-After"] == "3"
    assert "Retry-After" not in error_response(500, None, None, None).headers


SCHEMA = build_schema(
    {
        "Title": {"title": {}},
        "Status": {"select": {"options": [{"name": "Draft"}]}},
        "Stage": {"status": {}},
        "Progress": {"rich_text": {}},
    },
    status_options_allowed=False,
    where="body.properties",
)


def test_new_select_values_are_collected_as_new_options_once() -> None:
    changes = parse_values(SCHEMA, {"Status": {"select": {"name": "Queued"}}})
    assert [o["name"] for o in changes.new_options["Status"]] == ["Queued"]
    assert changes.values[SCHEMA["Status"]["id"]]["name"] == "Queued"
    assert parse_values(SCHEMA, {"Status": {"select": {"name": "Draft"}}}).new_options == {}


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ({"Stage": {"status": {"name": "Shipping"}}}, '"Shipping" is not an option of property "Stage"'),
        ({"Missing": {"rich_text": []}}, "Missing is not a property that exists."),
        ({"Status": {"rich_text": []}}, "Status is expected to be select."),
        (
            {"Progress": {"rich_text": [{"text": {"content": "x" * 2001}}]}},
            "body.properties.Progress.rich_text[0].text.content.length should be ≤ `2000`, "
            "instead was `2001`.",
        ),
    ],
)
def test_property_writes_are_refused_like_notion(properties: dict[str, Any], message: str) -> None:
    with pytest.raises(NotionError) as err:
        parse_values(SCHEMA, properties)
    assert err.value.code == "validation_error" and message in err.value.message


def test_schema_updates_keep_ids_through_a_rename() -> None:
    renamed = update_schema(SCHEMA, {"Progress": {"name": "Notes"}}, status_options_allowed=False, where="b")
    assert renamed["Notes"]["id"] == SCHEMA["Progress"]["id"] and "Progress" not in renamed
    with pytest.raises(NotionError):
        update_schema(SCHEMA, {"Title": None}, status_options_allowed=False, where="b")


# 5,000 pages ------------------------------------------------------------------------------------------
def test_a_filtered_query_over_5000_pages_renders_only_the_page_it_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = Sandbox(tmp_path, SandboxConfig(notion_rate=1e9, notion_burst=10**9))
    sandbox.notion.register(app)
    token = app.credentials["notion_token"]

    def call(method: str, path: str, body: Any = None) -> Any:
        headers = {"authorization": f"Bearer {token}"}
        raw = json.dumps(body).encode() if body is not None else b""
        response = app.dispatch(Request(method, f"/notion/v1/{path}", {}, headers, raw))
        assert response.status == 200, response.body
        return json.loads(response.body)

    db = call(
        "POST",
        "databases",
        {
            "parent": {"page_id": app.credentials["notion_root_page_id"]},
            "title": [{"text": {"content": "Big"}}],
            "initial_data_source": {"properties": {"Title": {"title": {}}, "Status": {"select": {}}}},
        },
    )
    ds = db["data_sources"][0]["id"]
    for i in range(5000):
        status = "Queued" if i % 40 == 0 else "Draft"
        properties = {
            "Title": {"title": [{"text": {"content": f"p{i}"}}]},
            "Status": {"select": {"name": status}},
        }
        call("POST", "pages", {"parent": {"data_source_id": ds}, "properties": properties})
    query = {
        "filter": {
            "and": [
                {"property": "Status", "select": {"equals": "Queued"}},
                {
                    "timestamp": "last_edited_time",
                    "last_edited_time": {"on_or_after": "2020-01-01T00:00:00Z"},
                },
            ]
        },
        "sorts": [{"timestamp": "last_edited_time", "direction": "ascending"}],
    }
    # A query reads the stored pages as they are and renders (copies) only those it returns: one
    # that copied every page made the daemon's poll slow at 5,000 pages. Its speed is benchmarked
    # (benchmarks/notion_efficiency.py); here, what it touches is counted.
    rendered: list[str] = []
    render = sandbox.notion.query.render_page

    def counted(n: Any, doc: Any, *args: Any) -> Any:
        rendered.append(doc["id"])
        return render(n, doc, *args)

    monkeypatch.setattr(sandbox.notion.query, "render_page", counted)
    result = call("POST", f"data_sources/{ds}/query", query)
    assert len(result["results"]) == 100 and result["has_more"] is True
    assert rendered == [page["id"] for page in result["results"]]
    follow = call("POST", f"data_sources/{ds}/query", {**query, "start_cursor": result["next_cursor"]})
    assert len(follow["results"]) == 25 and follow["has_more"] is False
    assert len(rendered) == 125
    titles = [
        p["properties"]["Title"]["title"][0]["plain_text"] for p in result["results"] + follow["results"]
    ]
    assert sorted(titles) == sorted(f"p{i}" for i in range(0, 5000, 40))  # the Queued ones, each once
    app.store.close()
