"""The sandbox's Notion refusals and failures, as notion-client sees them: auth, missing objects,
size limits, injected faults, the rate limit with Retry-After; and state surviving a restart."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest
from notion_client import Client
from notion_client.client import RetryOptions
from notion_client.errors import APIErrorCode, APIResponseError, HTTPResponseError

from tests.support.sandbox_proc import SandboxProcess

LOG = logging.getLogger("tests.notion")
T = TypeVar("T")


def _creds(proc: SandboxProcess) -> dict[str, str]:
    return dict(json.loads((proc.state_dir / "credentials.json").read_text()))


def _client(proc: SandboxProcess, http: httpx.Client, token: str | None = None, **options: Any) -> Client:
    options.setdefault("retry", False)
    auth = token or _creds(proc)["notion_token"]
    return Client(client=http, auth=auth, base_url=proc.base("notion"), logger=LOG, **options)


@pytest.fixture(scope="module")
def notion(sandbox: SandboxProcess) -> Iterator[Client]:
    with httpx.Client() as http:
        yield _client(sandbox, http)


def text(value: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": {"content": value}}]


def make_source(notion: Client, proc: SandboxProcess) -> str:
    db = notion.databases.create(
        parent={"type": "page_id", "page_id": _creds(proc)["notion_root_page_id"]},
        title=text("Errors"),
        initial_data_source={"properties": {"Title": {"title": {}}, "Progress": {"rich_text": {}}}},
    )
    return str(db["data_sources"][0]["id"])


@pytest.fixture(scope="module")
def source(notion: Client, sandbox: SandboxProcess) -> str:
    return make_source(notion, sandbox)


def refusal(call: Callable[[], object]) -> APIResponseError:
    with pytest.raises(APIResponseError) as err:
        call()
    return err.value


# Auth and missing objects ------------------------------------------------------------------------
def test_a_bad_token_is_401_unauthorized(sandbox: SandboxProcess) -> None:
    with httpx.Client() as http:
        err = refusal(_client(sandbox, http, token="ntn_wrong").users.me)
    assert (err.status, err.code, str(err)) == (401, APIErrorCode.Unauthorized, "API token is invalid.")


def test_an_unknown_page_is_404_with_notions_message(notion: Client) -> None:
    missing = "0b9f2c3a-1111-4222-8333-444455556666"
    err = refusal(lambda: notion.pages.retrieve(missing))
    assert (err.status, err.code) == (404, APIErrorCode.ObjectNotFound)
    assert str(err) == (
        f"Could not find page with ID: {missing}. "
        "Make sure the relevant pages and databases are shared with your integration."
    )
    assert refusal(lambda: notion.pages.update(missing, properties={})).status == 404
    assert refusal(lambda: notion.blocks.children.list(missing)).code == APIErrorCode.ObjectNotFound


def test_an_id_that_is_not_a_uuid_is_a_validation_error(notion: Client) -> None:
    err = refusal(lambda: notion.pages.retrieve("not-an-id"))
    assert (err.status, err.code) == (400, APIErrorCode.ValidationError)
    assert "path.page_id should be a valid uuid" in str(err)


def test_unknown_url_and_broken_json(sandbox: SandboxProcess, notion: Client) -> None:
    err = refusal(lambda: notion.request(path="nothing/here", method="GET"))
    assert (err.status, err.code, str(err)) == (400, APIErrorCode.InvalidRequestURL, "Invalid request URL.")
    r = httpx.post(
        sandbox.base("notion") + "/v1/pages",
        content=b"{not json",
        headers={
            "Authorization": f"Bearer {_creds(sandbox)['notion_token']}",
            "Notion-Version": "2025-09-03",
        },
    )
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_json" and r.json()["object"] == "error" and r.json()["request_id"]


# Size limits -------------------------------------------------------------------------------------
def test_rich_text_over_2000_characters_is_refused(notion: Client, source: str) -> None:
    err = refusal(
        lambda: notion.pages.create(
            parent={"data_source_id": source},
            properties={"Title": {"title": text("t")}, "Progress": {"rich_text": text("x" * 2001)}},
        )
    )
    assert (err.status, err.code) == (400, APIErrorCode.ValidationError)
    assert str(err) == (
        "body failed validation: body.properties.Progress.rich_text[0].text.content.length "
        "should be ≤ `2000`, instead was `2001`."
    )
    page = notion.pages.create(parent={"data_source_id": source}, properties={"Title": {"title": text("t")}})
    err = refusal(
        lambda: notion.blocks.children.append(
            page["id"],
            children=[
                {"paragraph": {"rich_text": text("ok")}},
                {"paragraph": {"rich_text": text("y" * 2500)}},
            ],
        )
    )
    assert (
        "body.children[1].paragraph.rich_text[0].text.content.length should be ≤ `2000`, instead was `2500`"
        in str(err)
    )
    assert notion.blocks.children.list(page["id"])["results"] == []  # nothing half-written
    notion.pages.update(
        page["id"], properties={"Progress": {"rich_text": text("x" * 2000)}}
    )  # the limit itself is fine


def test_more_than_100_children_is_refused(notion: Client, source: str) -> None:
    page = notion.pages.create(parent={"data_source_id": source}, properties={"Title": {"title": text("t")}})
    children = [{"paragraph": {"rich_text": text(str(i))}} for i in range(101)]
    err = refusal(lambda: notion.blocks.children.append(page["id"], children=children))
    assert (err.status, err.code) == (400, APIErrorCode.ValidationError)
    assert str(err) == "body failed validation: body.children.length should be ≤ `100`, instead was `101`."
    assert len(notion.blocks.children.append(page["id"], children=children[:100])["results"]) == 100


# Injected faults ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "code"),
    [
        (409, APIErrorCode.ConflictError),
        (500, APIErrorCode.InternalServerError),
        (503, APIErrorCode.ServiceUnavailable),
        (504, APIErrorCode.GatewayTimeout),
    ],
)
def test_a_fault_answers_in_notions_envelope(
    notion: Client, sandbox: SandboxProcess, status: int, code: APIErrorCode
) -> None:
    sandbox.fault(provider="notion", status=status, count=1)
    err = refusal(notion.users.me)
    assert (err.status, err.code) == (status, code)
    assert json.loads(err.body)["object"] == "error" and err.request_id
    assert notion.users.me()["type"] == "bot"  # count=1: the next call goes through


def test_a_faults_explicit_code_wins_and_429_carries_retry_after(
    notion: Client, sandbox: SandboxProcess
) -> None:
    sandbox.fault(provider="notion", status=400, code="conflict_error", message="Try again.", count=1)
    err = refusal(notion.users.me)
    assert (err.status, err.code, str(err)) == (400, APIErrorCode.ConflictError, "Try again.")
    sandbox.fault(provider="notion", status=429, retry_after=7, count=1)
    err = refusal(notion.users.me)
    assert err.code == APIErrorCode.RateLimited and err.headers["retry-after"] == "7"


def test_apply_then_fail_writes_although_the_answer_is_an_error(
    notion: Client, sandbox: SandboxProcess, source: str
) -> None:
    page = notion.pages.create(parent={"data_source_id": source}, properties={"Title": {"title": text("t")}})
    sandbox.fault(
        provider="notion", kind="apply_then_fail", status=502, endpoint="PATCH /notion/v1/pages/", count=1
    )
    with pytest.raises(HTTPResponseError) as err:
        notion.pages.update(page["id"], properties={"Progress": {"rich_text": text("applied")}})
    assert err.value.status == 502
    assert (
        notion.pages.retrieve(page["id"])["properties"]["Progress"]["rich_text"][0]["plain_text"] == "applied"
    )


# Rate limit --------------------------------------------------------------------------------------
def call_honouring_retry_after(call: Callable[[], T], waits: list[float]) -> T:
    """The simplest well-behaved client: on 429 sleep Retry-After seconds, then try again."""
    while True:
        try:
            return call()
        except APIResponseError as exc:
            if exc.code != APIErrorCode.RateLimited:
                raise
            wait = float(exc.headers["retry-after"])
            waits.append(wait)
            time.sleep(wait)


@pytest.mark.slow
def test_rate_limit_answers_429_with_retry_after_and_honouring_it_succeeds(
    fresh_sandbox: SandboxProcess,
) -> None:
    fresh_sandbox.configure(notion_rate=1, notion_burst=2)
    with httpx.Client() as http:
        notion = _client(fresh_sandbox, http)
        notion.users.me()
        notion.users.me()  # the burst is used up
        err = refusal(notion.users.me)
        assert (err.status, err.code) == (429, APIErrorCode.RateLimited)
        retry_after = err.headers["retry-after"]
        assert retry_after.isdigit() and int(retry_after) >= 1

        waits: list[float] = []
        started = time.monotonic()
        assert call_honouring_retry_after(notion.users.me, waits)["type"] == "bot"
        assert waits and time.monotonic() - started >= waits[0]

        # notion-client's own retry honours Retry-After too.
        patient = _client(fresh_sandbox, http, retry=RetryOptions(max_retries=5))
        assert [patient.users.me()["type"] for _ in range(3)] == ["bot"] * 3

        # The limit is read on every request: raising it takes effect at once.
        fresh_sandbox.configure(notion_rate=1000, notion_burst=50)
        time.sleep(0.05)
        assert all(notion.users.me()["type"] == "bot" for _ in range(30))
    stats = fresh_sandbox.stats()["notion"]
    assert stats["rate_limited"] >= 1
    assert stats["requests_by_endpoint"]["users.me"] >= 33


def test_stats_count_requests_by_endpoint(notion: Client, sandbox: SandboxProcess, source: str) -> None:
    before = sandbox.stats()["notion"]["requests_by_endpoint"]
    notion.data_sources.query(source)
    notion.data_sources.query(source)
    notion.data_sources.retrieve(source)
    after = sandbox.stats()["notion"]["requests_by_endpoint"]
    assert after["data_sources.query"] - before.get("data_sources.query", 0) == 2
    assert after["data_sources.retrieve"] - before.get("data_sources.retrieve", 0) == 1
    # Notion calls are free: only file sends are in the call log (so a file sent twice shows there).
    assert all(c["endpoint"].endswith("/send") for c in sandbox.calls("notion"))


# Persistence -------------------------------------------------------------------------------------
def test_a_restarted_sandbox_keeps_databases_pages_blocks_and_comments(fresh_sandbox: SandboxProcess) -> None:
    with httpx.Client() as http:
        notion = _client(fresh_sandbox, http)
        source = make_source(notion, fresh_sandbox)
        page = notion.pages.create(
            parent={"data_source_id": source},
            properties={"Title": {"title": text("Survivor")}},
            children=[{"code": {"language": "yaml", "rich_text": text("scenes: []")}}],
        )
        notion.comments.create(parent={"page_id": page["id"]}, rich_text=text("hello"))
    fresh_sandbox.restart()
    with httpx.Client() as http:
        notion = _client(fresh_sandbox, http)
        assert (
            notion.pages.retrieve(page["id"])["properties"]["Title"]["title"][0]["plain_text"] == "Survivor"
        )
        assert [p["id"] for p in notion.data_sources.query(source)["results"]] == [page["id"]]
        body = notion.blocks.children.list(page["id"])["results"]
        assert body[0]["code"]["rich_text"][0]["plain_text"] == "scenes: []"
        assert len(notion.comments.list(block_id=page["id"])["results"]) == 1
        # New ids after the restart do not collide with old ones, and the root page is still there.
        again = notion.pages.create(
            parent={"data_source_id": source}, properties={"Title": {"title": text("2")}}
        )
        assert again["id"] != page["id"]
        assert len(notion.data_sources.query(source)["results"]) == 2
