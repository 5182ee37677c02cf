"""The Notion webhook receiver over real HTTP (aiohttp's test server), and the wake it gives intake:
a verification handshake's token waits in a 0600 file for the operator (never adopted by itself,
never answered), events are checked with HMAC, refusals say why without the secret, and a woken
intake never runs beside another one nor outlives the daemon's stop."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from daemon.notion import jobs as notion_jobs
from daemon.notion.intake import Source
from daemon.notion.jobs import NotionJobs
from daemon.notion.schema import SourceInfo
from daemon.notion.webhooks import (
    MAX_BODY,
    TOKEN_FILE,
    WEBHOOK_PATH,
    Author,
    WebhookEvent,
    WebhookReceiver,
    event_sources,
    parse_event,
    signature,
)

SECRET = "secret_k4bWcvXf0cTq1Bq0Gn7a4jVx2mZ8pR6sL3dN9hY5uE1"
DS = "1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9"
DB = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
PAGE = "153104cd-477e-809d-8dc4-ff2d96ae3090"
BOT = "1edc05f6-2702-81b5-8408-00279347f034"
PERSON = "c7c11cca-1d73-471d-9b6e-bdef51470190"


def event(
    kind: str = "page.properties_updated", authors: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    return {
        "id": "1782edd6-a853-4d4a-b02c-9c8c16f28e53",
        "timestamp": "2026-12-08T10:00:00.000Z",
        "workspace_id": "13950b26-c203-4f3b-b97d-93ec06319565",
        "subscription_id": "29d75c0d-5546-4414-8459-7b7a92f1fc4b",
        "integration_id": "0ef2e755-4912-8096-91c1-00376a88a5ca",
        "type": kind,
        "authors": authors if authors is not None else [{"id": PERSON, "type": "person"}],
        "attempt_number": 1,
        "entity": {"id": PAGE, "type": "page"},
        "data": {
            "parent": {"id": DB, "type": "database", "data_source_id": DS},
            "updated_properties": ["a%3Db"],
        },
    }


class Served:
    def __init__(
        self, client: TestClient[Any, Any], receiver: WebhookReceiver, taken: list[WebhookEvent]
    ) -> None:
        self.client, self.receiver, self.taken = client, receiver, taken

    async def post(self, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        answer = await self.client.post(WEBHOOK_PATH, data=body, headers=headers or {})
        return answer.status, await answer.json()

    async def signed(self, obj: object, secret: str = SECRET) -> tuple[int, dict[str, Any]]:
        body = json.dumps(obj).encode()
        return await self.post(body, {"X-Notion-Signature": signature(secret, body)})


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    clients: list[TestClient[Any, Any]] = []

    async def start(secret: str | None = None, leading: bool = True, write_every_s: float = 0.0) -> Served:
        taken: list[WebhookEvent] = []

        def sink(e: WebhookEvent) -> bool:
            taken.append(e)
            return leading

        receiver = WebhookReceiver(tmp_path, secret, sink, write_every_s=write_every_s)
        app = web.Application()
        app.router.add_post(WEBHOOK_PATH, receiver.handle)
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return Served(client, receiver, taken)

    yield start
    for client in clients:
        await client.close()


def _handshake(token: str) -> bytes:
    return json.dumps({"verification_token": token}).encode()


async def test_a_handshake_is_never_adopted_its_token_waits_for_the_operator(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    served = await serve()
    with capture_logs() as logs:
        status, answer = await served.post(_handshake(SECRET))
    assert status == 200 and SECRET not in json.dumps(answer)
    assert not (tmp_path / TOKEN_FILE).exists()  # not in use: anyone can post a handshake
    waiting = tmp_path / f"{TOKEN_FILE}.new"
    assert waiting.read_text().strip() == SECRET
    assert stat.S_IMODE(waiting.stat().st_mode) == 0o600
    told = [e for e in logs if e["event"] == "notion_webhook_verification_token_received"]
    assert told and told[0]["file"] == str(waiting) and SECRET not in str(logs)
    assert f"mv {waiting} {tmp_path / TOKEN_FILE}" in told[0]["action"]
    assert "NOTION_WEBHOOK_SECRET" in told[0]["action"]
    # Not yet adopted: events signed with it are refused.
    assert (await served.signed(event()))[0] == 401 and served.taken == []
    # The operator checked it with Notion and adopts it (mv): taken from the next event, no restart.
    waiting.replace(tmp_path / TOKEN_FILE)
    assert (await served.signed(event()))[0] == 200
    assert [e.entity_id for e in served.taken] == [PAGE]


async def test_a_strangers_handshake_owns_nothing_and_notions_later_one_is_kept(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    """The first to post a handshake used to own the secret: its forged events were taken, and
    Notion's own handshake was set aside."""
    served = await serve(write_every_s=0.2)
    intruder = "secret_" + "x" * 40
    assert (await served.post(_handshake(intruder)))[0] == 200
    assert (await served.signed(event(), intruder))[0] == 401  # forged events: refused
    await asyncio.sleep(0.25)
    assert (await served.post(_handshake(SECRET)))[0] == 200  # Notion's, a moment later
    waiting = tmp_path / f"{TOKEN_FILE}.new"
    assert waiting.read_text().strip() == SECRET  # the newest, for the operator to check with Notion
    waiting.replace(tmp_path / TOKEN_FILE)
    assert (await served.signed(event()))[0] == 200
    # With a token in use, a handshake never replaces it either.
    await asyncio.sleep(0.25)
    assert (await served.post(_handshake(intruder)))[0] == 200
    assert (tmp_path / TOKEN_FILE).read_text().strip() == SECRET
    assert waiting.read_text().strip() == intruder
    assert (await served.signed(event(), intruder))[0] == 401
    assert (await served.signed(event()))[0] == 200
    assert [e.entity_id for e in served.taken] == [PAGE, PAGE]


async def test_a_flood_of_handshakes_writes_one_small_file_rarely_and_logs_little(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    served = await serve(write_every_s=60.0)
    with capture_logs() as logs:
        for n in range(300):
            assert (await served.post(_handshake(f"secret_flood{n:04d}")))[0] == 200
    assert [p.name for p in tmp_path.iterdir()] == [f"{TOKEN_FILE}.new"]
    assert (tmp_path / f"{TOKEN_FILE}.new").read_text().strip() == "secret_flood0000"
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [e["event"] for e in warnings] == [
        "notion_webhook_verification_token_received",
        "notion_webhook_verification_not_written",
    ]


async def test_notion_webhook_secret_overrides_the_stored_token(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    (tmp_path / TOKEN_FILE).write_text("secret_stale\n")
    served = await serve(secret=SECRET)
    assert (await served.signed(event(), "secret_stale"))[0] == 401
    assert (await served.signed(event()))[0] == 200
    # The subscription's verification repeated with the token set: nothing is written.
    assert (await served.post(_handshake(SECRET)))[0] == 200
    assert not (tmp_path / f"{TOKEN_FILE}.new").exists()


async def test_missing_or_bad_signatures_are_refused_with_401_and_wake_nothing(
    serve: Callable[..., Any],
) -> None:
    served = await serve(secret=SECRET)
    body = json.dumps(event()).encode()
    for headers in ({}, {"X-Notion-Signature": "sha256=" + "0" * 64}, {"X-Notion-Signature": "garbage"},
                    {"X-Notion-Signature": signature("secret_other", body)}):  # fmt: skip
        status, answer = await served.post(body, headers)
        assert status == 401, headers
        assert "X-Notion-Signature" in answer["error"] and SECRET not in json.dumps(answer)
    # A body changed after signing (one byte) is refused too.
    tampered = body.replace(b"properties_updated", b"properties_updatee")
    assert (await served.post(tampered, {"X-Notion-Signature": signature(SECRET, body)}))[0] == 401
    assert served.taken == []


async def test_without_a_secret_events_are_refused_saying_how_to_get_one(serve: Callable[..., Any]) -> None:
    served = await serve()
    status, answer = await served.signed(event())
    assert status == 401
    assert "NOTION_WEBHOOK_SECRET" in answer["error"] and served.taken == []


async def test_malformed_bodies_are_400_and_oversized_ones_413(serve: Callable[..., Any]) -> None:
    served = await serve(secret=SECRET)
    not_json = b"{not json"
    status, answer = await served.post(not_json, {"X-Notion-Signature": signature(SECRET, not_json)})
    assert (status, answer["error"]) == (400, "the body is not JSON")
    status, answer = await served.signed({"entity": {"id": PAGE}})
    assert status == 400 and answer["error"].startswith("type:")
    status, answer = await served.signed({"type": "page.created"})
    assert status == 400 and answer["error"].startswith("entity.id:")
    huge = b"x" * (MAX_BODY + 1)
    assert (await served.post(huge, {"X-Notion-Signature": signature(SECRET, huge)}))[0] == 413
    bad_token = json.dumps({"verification_token": "two words"}).encode()
    assert (await served.post(bad_token))[0] == 400
    assert served.taken == []


async def test_only_page_events_that_can_change_intake_are_passed_on(serve: Callable[..., Any]) -> None:
    served = await serve(secret=SECRET)
    for kind in ("comment.created", "data_source.schema_updated", "page.locked"):
        assert (await served.signed(event(kind)))[0] == 200
    for kind in ("page.properties_updated", "page.content_updated", "page.created"):
        assert (await served.signed(event(kind)))[0] == 200
    assert [e.type for e in served.taken] == [
        "page.properties_updated",
        "page.content_updated",
        "page.created",
    ]
    # Not the leader: answered all the same (Notion would only send it again), the leader's poll sees it.
    follower = await serve(secret=SECRET, leading=False)
    assert (await follower.signed(event()))[0] == 200


def _source(ds: str = DS, db: str | None = DB) -> Source:
    return Source(SourceInfo(ds, "select", frozenset(), True, True, (), db), ())


def test_an_event_wakes_the_data_source_its_parent_names() -> None:
    ours, other = (
        _source(),
        _source("9e9e9e9e-5b6a-4978-8695-a4b3c2d1e0f9", "8e8e8e8e-4e5f-4a6b-8c7d-9e0f1a2b3c4d"),
    )
    sources = [ours, other]

    def parented(parent: dict[str, Any] | None) -> WebhookEvent:
        body = event()
        body["data"] = {"parent": parent} if parent is not None else {}
        return parse_event(body)

    # 2025-09-03: the data source named beside the database (also without a type, with or without dashes).
    assert event_sources(parented({"id": DB, "type": "database", "data_source_id": DS}), sources) == [ours]
    assert event_sources(parented({"id": DB, "data_source_id": DS.replace("-", "")}), sources) == [ours]
    assert event_sources(parented({"id": DS, "type": "data_source"}), sources) == [ours]
    # An older subscription names the database only.
    assert event_sources(parented({"id": DB.replace("-", "").upper(), "type": "database"}), sources) == [ours]
    # A page under a page, or in a data source the daemon does not watch: nothing to wake.
    assert event_sources(parented({"id": PAGE, "type": "page"}), sources) == []
    assert event_sources(parented({"id": DB, "data_source_id": PAGE}), sources) == []
    # No parent given: any of them.
    assert event_sources(parented(None), sources) == sources


def test_an_event_is_ours_only_when_our_bot_alone_made_it() -> None:
    def by(*authors: tuple[str, str]) -> WebhookEvent:
        return parse_event(event(authors=[{"id": i, "type": t} for i, t in authors]))

    assert by((BOT, "bot")).only_by(BOT)
    assert not by((BOT, "bot"), (PERSON, "person")).only_by(BOT)  # aggregated: someone else too
    assert not by(("another-bot", "bot")).only_by(BOT)  # another integration, an automation
    assert not by().only_by(BOT)  # no author named: taken as someone else's
    assert by((BOT, "bot")).authors == (Author(BOT, "bot"),)


# The wake --------------------------------------------------------------------------------------------
class StubIntake:
    """Intake's surface for NotionJobs: counts intakes and how many ran at once."""

    def __init__(self, sources: list[Source]) -> None:
        self.sources = sources
        self.write_lock = asyncio.Lock()
        self.leading: Callable[[], bool] = lambda: True
        self.notion = self
        self.running = 0
        self.most = 0
        self.polled: list[str] = []  # "all" for a poll, a data source id for a woken intake
        self.me_calls = 0
        self.seconds = 0.05  # how long an intake takes

    async def call(self, method: str, path: str, **_: Any) -> dict[str, Any]:
        assert (method, path) == ("GET", "users/me")
        self.me_calls += 1
        return {"id": BOT}

    async def _run(self, what: str) -> int:
        self.running += 1
        self.most = max(self.most, self.running)
        await asyncio.sleep(self.seconds)
        self.polled.append(what)
        self.running -= 1
        return 0

    async def poll(self, now: datetime) -> int:
        return await self._run("all")

    async def poll_source(self, source: Source, now: datetime) -> int:
        return await self._run(source.info.data_source_id)


class StubWriter:
    bot_id: str | None = None
    leading: Callable[[], bool] = staticmethod(lambda: True)


class FixedClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def _jobs(tmp_path: Path, intake: StubIntake, *, leading: bool = True) -> NotionJobs:
    jobs = NotionJobs(None, intake, StubWriter(), tmp_path, FixedClock(), "test", poll_s=60.0)  # type: ignore[arg-type]
    if leading:
        jobs.token, jobs.valid_until = "token", datetime.now(UTC) + timedelta(minutes=5)

    async def no_outbox() -> None:
        return None

    jobs.outbox = no_outbox  # type: ignore[method-assign]
    return jobs


async def _settle(jobs: NotionJobs) -> None:
    for _ in range(100):
        if jobs.wake_task is None or jobs.wake_task.done():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the woken intake did not finish")


async def test_a_wake_runs_intake_now_and_never_beside_a_poll(tmp_path: Path) -> None:
    intake = StubIntake([_source()])
    jobs = _jobs(tmp_path, intake)
    poll = asyncio.create_task(jobs.poll())  # a poll in progress ...
    await asyncio.sleep(0.01)
    assert jobs.wake(parse_event(event()))  # ... an event meanwhile: waits for it, then runs
    assert jobs.wake(parse_event(event("page.content_updated")))  # taken with the one before
    await poll
    await _settle(jobs)
    assert intake.polled == ["all", DS] and intake.most == 1


async def test_our_own_writes_and_other_data_sources_wake_nothing(tmp_path: Path) -> None:
    intake = StubIntake([_source()])
    jobs = _jobs(tmp_path, intake)
    assert jobs.wake(parse_event(event(authors=[{"id": BOT, "type": "bot"}])))
    await _settle(jobs)
    elsewhere = event()
    elsewhere["data"]["parent"] = {"id": PAGE, "type": "page"}
    assert jobs.wake(parse_event(elsewhere))
    await _settle(jobs)
    assert intake.polled == [] and intake.me_calls == 1  # users/me asked once, then kept
    assert jobs.wake(
        parse_event(event(authors=[{"id": BOT, "type": "bot"}, {"id": PERSON, "type": "person"}]))
    )
    await _settle(jobs)
    assert intake.polled == [DS]


async def test_a_daemon_that_does_not_lead_or_is_stopping_takes_no_wake(tmp_path: Path) -> None:
    intake = StubIntake([_source()])
    follower = _jobs(tmp_path, intake, leading=False)
    assert not follower.wake(parse_event(event()))
    leader = _jobs(tmp_path, intake)
    leader.stopping = True
    assert not leader.wake(parse_event(event()))
    await asyncio.sleep(0.1)
    assert intake.polled == []


async def test_a_stop_ends_a_woken_intake_and_the_leadership_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A woken intake slower than the stop's wait was left running, and leading() stayed true until
    the lease's end: it could act beside the next leader, after the engine was disposed."""
    monkeypatch.setattr(notion_jobs, "DRAIN_S", 0.3)
    intake = StubIntake([_source()])
    intake.seconds = 30.0  # a Notion that answers slowly
    jobs = _jobs(tmp_path, intake)  # engine None: taking and handing back the lease fail, as with the DB away
    stop = asyncio.Event()
    running = asyncio.create_task(jobs.run(stop))
    await asyncio.sleep(0.05)
    assert jobs.wake(parse_event(event()))
    await asyncio.sleep(0.1)
    assert intake.running == 1  # the woken intake is under way
    stop.set()
    await asyncio.wait_for(running, 5)
    assert jobs.wake_task is not None and jobs.wake_task.done()
    assert intake.polled == []  # it never finished: nothing acted after the stop
    assert not jobs.leading() and jobs.token is None
