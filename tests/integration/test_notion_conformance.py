"""Replays every real Notion recording against the sandbox through notion-client and compares.

Each cassette's requests run in order; ids the sandbox hands out replace the recorded ones in later
requests (the recorded root page is the sandbox's root page). An answer must match the recording in
HTTP status, error code, and shape: the same keys at every level and the same value types (ids,
times and request ids differ, so values are not compared); a list's elements must have the shape of
the recorded elements.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import notion_client
import pytest
import yaml
from notion_client.errors import APIResponseError, HTTPResponseError

from tests.support.sandbox_proc import SandboxProcess

RECORDINGS = Path("/work/shared/reference/notion-recordings")
CASSETTES = sorted(RECORDINGS.glob("*.yaml"))
RECORDED_ROOT = "393abc1e-edcd-80f3-813b-e205934558c6"
NOTION_HOST = "api.notion.com"
LOG = logging.getLogger("tests.notion_conformance")  # one logger: notion-client adds a handler per client
_UUID = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$")


@dataclass
class Exchange:
    method: str
    host: str
    path: str  # after /v1/ for Notion; the bare path for other hosts
    query: dict[str, str]
    body: dict[str, Any] | None
    status: int
    answer: Any  # parsed JSON, or the raw text when the body is not JSON


@dataclass
class Outcome:
    status: int
    answer: Any
    error: Exception | None = None


def load(path: Path) -> list[Exchange]:
    data = yaml.safe_load(path.read_text())
    out = []
    for interaction in data["interactions"]:
        request, response = interaction["request"], interaction["response"]
        url = urlsplit(request["uri"])
        raw_answer = response["body"]["string"]
        try:
            answer = json.loads(raw_answer)
        except ValueError:
            answer = raw_answer
        out.append(
            Exchange(
                method=request["method"],
                host=url.hostname or "",
                path=url.path.removeprefix("/v1/") if url.hostname == NOTION_HOST else url.path.lstrip("/"),
                query={k: v[0] for k, v in parse_qs(url.query).items()},
                body=json.loads(request["body"]) if request["body"] else None,
                status=int(response["status"]["code"]),
                answer=answer,
            )
        )
    return out


class IdMap:
    """Recorded id -> sandbox id, in both the dashed and the 32-hex spelling."""

    def __init__(self) -> None:
        self._map: dict[str, str] = {}

    def add(self, recorded: str, actual: str) -> None:
        if recorded == actual:
            return
        self._map[recorded] = actual
        self._map[recorded.replace("-", "")] = actual.replace("-", "")

    def learn(self, recorded: Any, actual: Any) -> None:
        """Walks both answers side by side and pairs up the ids found at the same places."""
        if isinstance(recorded, dict) and isinstance(actual, dict):
            for key in recorded.keys() & actual.keys():
                if key != "request_id":
                    self.learn(recorded[key], actual[key])
        elif isinstance(recorded, list) and isinstance(actual, list):
            for r, a in zip(recorded, actual, strict=False):
                self.learn(r, a)
        elif (
            isinstance(recorded, str)
            and isinstance(actual, str)
            and _UUID.match(recorded)
            and _UUID.match(actual)
        ):
            self.add(recorded, actual)

    def apply(self, text: str) -> str:
        for recorded in sorted(self._map, key=len, reverse=True):
            text = text.replace(recorded, self._map[recorded])
        return text


def shape_mismatches(recorded: Any, actual: Any, where: str = "$") -> list[str]:
    if isinstance(recorded, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected an object, got {type(actual).__name__}"]
        problems = []
        missing, extra = recorded.keys() - actual.keys(), actual.keys() - recorded.keys()
        if missing or extra:
            problems.append(f"{where}: missing keys {sorted(missing)}, extra keys {sorted(extra)}")
        for key in sorted(recorded.keys() & actual.keys()):
            problems += shape_mismatches(recorded[key], actual[key], f"{where}.{key}")
        return problems
    if isinstance(recorded, list):
        if not isinstance(actual, list):
            return [f"{where}: expected a list, got {type(actual).__name__}"]
        if recorded and not actual:
            return [f"{where}: expected {len(recorded)} element(s), got none"]
        problems = []
        for i, element in enumerate(actual):
            model = recorded[i] if i < len(recorded) else recorded[0] if recorded else None
            if model is not None:
                problems += shape_mismatches(model, element, f"{where}[{i}]")
        return problems
    if _kind(recorded) != _kind(actual):
        return [f"{where}: expected {_kind(recorded)}, got {_kind(actual)} ({actual!r})"]
    return []


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


# The sandbox --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def replay_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """A sandbox of its own: search answers depend on what else the workspace holds."""
    proc = SandboxProcess(tmp_path_factory.mktemp("conformance"), "--notion-rate", "1000").start()
    yield proc
    proc.stop()


def _credentials(proc: SandboxProcess) -> dict[str, str]:
    return dict(json.loads((proc.state_dir / "credentials.json").read_text()))


def _send(client: notion_client.Client, exchange: Exchange, path: str, query: Any, body: Any) -> Outcome:
    try:
        result = client.request(path=path, method=exchange.method, query=query or None, body=body)
    except APIResponseError as exc:
        return Outcome(exc.status, json.loads(exc.body), exc)
    except HTTPResponseError as exc:
        return Outcome(exc.status, exc.body, exc)
    return Outcome(200, result)


async def _send_async(base_url: str, token: str, exchange: Exchange, path: str) -> Outcome:
    async with httpx.AsyncClient() as http:
        client = notion_client.AsyncClient(
            client=http, auth=token, base_url=base_url, retry=False, logger=LOG
        )
        try:
            result = await client.request(path=path, method=exchange.method)
        except APIResponseError as exc:
            return Outcome(exc.status, json.loads(exc.body), exc)
        except HTTPResponseError as exc:
            return Outcome(exc.status, exc.body, exc)
    return Outcome(200, result)


def replay(proc: SandboxProcess, cassette: Path, exchange: Exchange, ids: IdMap) -> Outcome:
    creds = _credentials(proc)
    # Where the recording was refused for its token, the replay sends a token the sandbox refuses.
    token = "ntn_not_a_valid_token" if exchange.status == 401 else creds["notion_token"]
    # notion-client's own tests point it at another host that answers with plain-text errors.
    base_url = proc.base("notion") if exchange.host == NOTION_HOST else f"{proc.url}/_sandbox/httpstatus"
    path = ids.apply(exchange.path)
    query = {k: ids.apply(v) for k, v in exchange.query.items()}
    body = json.loads(ids.apply(json.dumps(exchange.body))) if exchange.body is not None else None
    if "async" in cassette.stem:
        return asyncio.run(_send_async(base_url, token, exchange, path))
    with httpx.Client() as http:
        client = notion_client.Client(client=http, auth=token, base_url=base_url, retry=False, logger=LOG)
        return _send(client, exchange, path, query, body)


@pytest.mark.parametrize("cassette", CASSETTES, ids=[c.stem for c in CASSETTES])
def test_sandbox_answers_like_the_recording(replay_sandbox: SandboxProcess, cassette: Path) -> None:
    ids = IdMap()
    ids.add(RECORDED_ROOT, _credentials(replay_sandbox)["notion_root_page_id"])
    for step, exchange in enumerate(load(cassette)):
        label = f"{cassette.stem} step {step}: {exchange.method} {exchange.path}"
        outcome = replay(replay_sandbox, cassette, exchange, ids)
        assert outcome.status == exchange.status, f"{label}: status {outcome.status}, body {outcome.answer}"
        if isinstance(exchange.answer, str):
            # A non-JSON error body: the client must surface it as an unknown HTTP response error.
            assert isinstance(outcome.answer, str), label
            assert not isinstance(outcome.error, APIResponseError), label
            assert outcome.answer == exchange.answer, label
            continue
        problems = shape_mismatches(exchange.answer, outcome.answer)
        assert not problems, f"{label}:\n" + "\n".join(problems)
        if exchange.answer.get("object") == "error":
            assert outcome.answer["code"] == exchange.answer["code"], label
            assert outcome.answer["message"] == exchange.answer["message"], label
        ids.learn(exchange.answer, outcome.answer)


def test_every_recording_is_replayed() -> None:
    """A new cassette in the reference folder is picked up; none is silently skipped."""
    assert len(CASSETTES) >= 25
    endpoints = {(e.method, re.sub(r"[0-9a-f-]{32,36}", "{id}", e.path)) for c in CASSETTES for e in load(c)}
    assert ("POST", "data_sources/{id}/query") in endpoints
    assert ("GET", "blocks/{id}/children") in endpoints
