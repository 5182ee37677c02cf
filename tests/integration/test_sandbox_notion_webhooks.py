"""The sandbox's Notion sends webhooks as Notion does: the verification request to a new
subscription, then signed events for page changes made through the API, authored by whoever made
them, sent after the answer and tried again a few times when the target fails."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from notion_client import Client
from notion_client.errors import APIResponseError

from tests.support.notion_kit import seed
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import credentials


class Receiver:
    """A webhook target: keeps every request; answers with `answer(nth request)` after `delay_s`."""

    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.answer: Callable[[int], int] = lambda n: 200
        self.delay_s = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status, delay = receiver.answer(len(receiver.got)), receiver.delay_s
                time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notion/webhook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for headers, body in self.got if "x-notion-signature" in headers]

    def verification(self, timeout: float = 10) -> bytes:
        deadline = time.monotonic() + timeout
        while not (unsigned := [body for headers, body in self.got if "x-notion-signature" not in headers]):
            assert time.monotonic() < deadline, "no verification request came"
            time.sleep(0.02)
        return unsigned[0]

    def wait(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.events()) < count:
            assert time.monotonic() < deadline, (
                f"{len(self.events())} events came, not {count}: {self.events()}"
            )
            time.sleep(0.02)
        return self.events()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    target = Receiver()
    yield target
    target.server.shutdown()
    target.server.server_close()


@pytest.fixture
def subscribed(fresh_sandbox: SandboxProcess, receiver: Receiver) -> dict[str, Any]:
    """A channel database with one page, and the sandbox's webhooks going to the receiver."""
    seeded = seed(fresh_sandbox, "nature", 1)
    fresh_sandbox.configure(notion_webhook_url=receiver.url)
    return seeded


def _client(sandbox: SandboxProcess, http: httpx.Client, who: str) -> Client:
    return Client(client=http, auth=credentials(sandbox)[who], base_url=sandbox.base("notion"), retry=False)


def _status(name: str) -> dict[str, Any]:
    return {"Status": {"select": {"name": name}}}


def test_a_new_subscription_gets_the_verification_request_unsigned(
    fresh_sandbox: SandboxProcess, receiver: Receiver
) -> None:
    fresh_sandbox.configure(notion_webhook_url=receiver.url)
    body = receiver.verification()
    assert json.loads(body) == {"verification_token": credentials(fresh_sandbox)["notion_webhook_token"]}
    fresh_sandbox.configure(latency_scale=0.02)  # another setting changed: no second verification
    time.sleep(0.3)
    assert len(receiver.got) == 1


def test_page_changes_are_signed_events_authored_by_whoever_made_them(
    fresh_sandbox: SandboxProcess, receiver: Receiver, subscribed: dict[str, Any]
) -> None:
    creds = credentials(fresh_sandbox)
    page = subscribed["page_ids"][0]
    with httpx.Client() as bot_http, httpx.Client() as op_http:
        bot, operator = (
            _client(fresh_sandbox, bot_http, "notion_token"),
            _client(fresh_sandbox, op_http, "notion_operator_token"),
        )
        operator.pages.update(page_id=page, properties=_status("Queued"))
        operator.pages.update(page_id=page, properties=_status("Queued"))  # no change: no event
        block = bot.blocks.children.append(
            block_id=page, children=[{"paragraph": {"rich_text": [{"text": {"content": "hi"}}]}}]
        )["results"][0]["id"]
        created = bot.pages.create(
            parent={"data_source_id": subscribed["data_source_id"]},
            properties={"Title": {"title": [{"text": {"content": "Another"}}]}},
        )["id"]
        with pytest.raises(APIResponseError):  # a refused call sends nothing
            operator.pages.update(page_id=page, properties={"Status": {"number": 3}})

    events = receiver.wait(3)
    time.sleep(0.3)
    assert [(e["type"], e["entity"]["id"]) for e in receiver.events()] == [
        ("page.properties_updated", page),
        ("page.content_updated", page),
        ("page.created", created),
    ]
    status_id = bot_status_id(fresh_sandbox, subscribed["data_source_id"])
    changed, appended, _ = events
    assert changed["authors"] == [{"id": creds["notion_operator_id"], "type": "person"}]
    assert changed["data"]["updated_properties"] == [status_id]
    assert appended["authors"] == [{"id": creds["notion_bot_id"], "type": "bot"}]
    assert appended["data"]["updated_blocks"] == [{"id": block, "type": "block"}]
    parent = {
        "id": subscribed["database_id"],
        "type": "database",
        "data_source_id": subscribed["data_source_id"],
    }
    assert all(e["data"]["parent"] == parent and e["attempt_number"] == 1 for e in events)
    for headers, body in receiver.got[1:]:  # each signed with the subscription's token
        expected = (
            "sha256=" + hmac.new(creds["notion_webhook_token"].encode(), body, hashlib.sha256).hexdigest()
        )
        assert headers["x-notion-signature"] == expected


def bot_status_id(sandbox: SandboxProcess, data_source_id: str) -> str:
    with httpx.Client() as http:
        source = _client(sandbox, http, "notion_token").data_sources.retrieve(data_source_id)
    return str(source["properties"]["Status"]["id"])


@pytest.mark.slow  # the retries' own waits: about 5 s
def test_a_failing_target_is_tried_again_then_given_up_and_never_delays_the_api(
    fresh_sandbox: SandboxProcess, receiver: Receiver, subscribed: dict[str, Any]
) -> None:
    page = subscribed["page_ids"][0]
    receiver.verification()
    receiver.got.clear()
    receiver.answer = lambda n: 200 if n >= 3 else 503  # two failures, then taken
    receiver.delay_s = 0.5
    with httpx.Client() as http:
        operator = _client(fresh_sandbox, http, "notion_operator_token")
        started = time.monotonic()
        operator.pages.update(page_id=page, properties=_status("Queued"))
        assert time.monotonic() - started < 0.4  # the answer did not wait for the delivery
        events = receiver.wait(3)
        assert [e["attempt_number"] for e in events] == [1, 2, 3]
        assert len({e["id"] for e in events}) == 1  # one event, delivered three times

        receiver.delay_s = 0.0
        receiver.answer = lambda n: 500  # never taken: dropped after 4 tries
        operator.pages.update(page_id=page, properties=_status("Draft"))
        receiver.wait(7)
    deadline = time.monotonic() + 10
    while fresh_sandbox.stats()["notion"]["webhooks"]["dropped"] < 1:
        assert time.monotonic() < deadline, fresh_sandbox.stats()["notion"]["webhooks"]
        time.sleep(0.05)
    time.sleep(0.5)
    assert len(receiver.events()) == 7
    counts = fresh_sandbox.stats()["notion"]["webhooks"]
    assert (counts["sent"], counts["dropped"]) == (1, 1)
