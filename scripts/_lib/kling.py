"""Kling image-to-video: per-request JWT, create, look up (by task id or external id), errors."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import httpx

from scripts._lib import env
from scripts._lib.errors import KEY_FIX, ScriptError, by_http_status, permanent, transient
from scripts._lib.http import json_body, make_client, send

PROVIDER = "kling"
DEFAULT_BASE_URL = "https://api-singapore.klingai.com"
PATH = "/v1/videos/image2video"
TOKEN_LIFETIME_S = 1800
CLOCK_SKEW_S = 5

# Kling's own codes (the HTTP status alone cannot tell "rate limited" from "out of money": both 429).
AUTH_CODES = frozenset({1000, 1001, 1002})
CLOCK_CODES = frozenset({1003, 1004})  # the JWT is not yet valid or has expired
TRANSIENT_CODES = frozenset({1302, 1303, 5000, 5001, 5002})
NOT_FOUND_CODES = frozenset({1202, 1203})
CONTENT_CODES = frozenset({1300, 1301})
DUPLICATE_EXTERNAL_ID = 1201


def make_token(access_key: str, secret_key: str, now: float | None = None) -> str:
    """The HS256 JWT Kling wants on every request; nbf a little in the past absorbs clock skew.
    Signed here with hmac (RFC 7519 / 7515, compact form): a JWT library would bring the whole of
    `cryptography` into every clip's start-up for one HMAC."""
    issued = int(time.time() if now is None else now)
    claims = {"iss": access_key, "exp": issued + TOKEN_LIFETIME_S, "nbf": issued - CLOCK_SKEW_S}
    signing_input = f"{_b64_json({'alg': 'HS256', 'typ': 'JWT'})}.{_b64_json(claims)}"
    signature = hmac.new(secret_key.encode(), signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _b64_json(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def _b64(data: bytes) -> str:
    """base64url without padding, as JWTs are written."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class JwtAuth(httpx.Auth):
    """A fresh token per request, so a long poll loop never sends an expired one."""

    def __init__(self, access_key: str, secret_key: str, clock: Callable[[], float] = time.time) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.clock = clock

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = "Bearer " + make_token(
            self.access_key, self.secret_key, self.clock()
        )
        yield request


def client_from_env(timeout: float = 60.0, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    access = env.require("KLING_ACCESS_KEY")
    secret = env.require("KLING_SECRET_KEY")
    base = env.base_url("KLING_BASE_URL", DEFAULT_BASE_URL)
    return make_client(base, timeout=timeout, auth=JwtAuth(access, secret), transport=transport)


@dataclass
class Task:
    task_id: str
    status: str  # submitted | processing | succeed | failed
    status_msg: str
    external_id: str | None
    video_url: str | None
    video_duration: str | None
    final_unit_deduction: object

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Task:
        info = data.get("task_info") if isinstance(data.get("task_info"), dict) else {}
        result = data.get("task_result") if isinstance(data.get("task_result"), dict) else {}
        assert isinstance(info, dict)
        assert isinstance(result, dict)
        videos = [v for v in result.get("videos") or [] if isinstance(v, dict)]
        return cls(
            task_id=str(data.get("task_id", "")),
            status=str(data.get("task_status", "")),
            status_msg=str(data.get("task_status_msg") or ""),
            external_id=info.get("external_task_id"),
            video_url=videos[0].get("url") if videos else None,
            video_duration=str(videos[0]["duration"]) if videos and videos[0].get("duration") else None,
            final_unit_deduction=data.get("final_unit_deduction"),
        )


class DuplicateExternalId(Exception):
    """The create was refused because a task with this external id exists: an earlier submit landed."""


def create(client: httpx.Client, body: dict[str, Any]) -> Task:
    response = send(client, "Kling", "POST", PATH, json=body)
    payload = json_body(response)
    code = _code(payload)
    if response.status_code == 200 and code == 0 and isinstance(payload.get("data"), dict):
        return Task.from_data(payload["data"])
    if code == DUPLICATE_EXTERNAL_ID and _mentions_duplicate(str(payload.get("message", ""))):
        raise DuplicateExternalId(str(payload.get("message")))
    raise classify_error(response.status_code, payload)


def get(client: httpx.Client, task_id: str) -> Task | None:
    """The task with this id, or None when Kling does not know it."""
    response = send(client, "Kling", "GET", f"{PATH}/{task_id}")
    payload = json_body(response)
    code = _code(payload)
    if response.status_code == 404 or code in NOT_FOUND_CODES:
        return None
    if response.status_code == 200 and code == 0 and isinstance(payload.get("data"), dict):
        return Task.from_data(payload["data"])
    raise classify_error(response.status_code, payload)


def find_by_external_id(client: httpx.Client, external_id: str) -> Task | None:
    """Looks a task up by the caller's external_task_id; None when none exists."""
    response = send(client, "Kling", "GET", PATH, params={"external_task_id": external_id})
    payload = json_body(response)
    code = _code(payload)
    if response.status_code == 404 or code in NOT_FOUND_CODES:
        return None
    if response.status_code != 200 or code != 0:
        raise classify_error(response.status_code, payload)
    data = payload.get("data")
    # The answer's shape is not documented for sure: accept one task object or a list of them.
    if isinstance(data, dict) and data.get("task_id"):
        task = Task.from_data(data)
        # One task answered to the query: it is the one unless it names another external id.
        return task if task.external_id in (None, "", external_id) else None
    # A list (e.g. if the filter were ignored and recent tasks came back): only an exact match counts.
    for item in data if isinstance(data, list) else []:
        if isinstance(item, dict) and item.get("task_id"):
            task = Task.from_data(item)
            if task.external_id == external_id:
                return task
    return None


def classify_error(status: int, payload: dict[str, Any]) -> ScriptError:
    code = _code(payload)
    message = str(payload.get("message") or "").strip()
    said = f" Kling said: {message}" if message else ""
    if code in CLOCK_CODES:
        return permanent(
            f"Kling refused the token's time (code {code}): this machine's clock is off; set it right (NTP), "
            f"then requeue.{said}",
            code,
        )
    if code in AUTH_CODES:
        return permanent(
            f"Kling refused the credentials (code {code}): "
            f"{KEY_FIX.format('KLING_ACCESS_KEY and KLING_SECRET_KEY (a pair from one account)')}{said}",
            code,
        )
    if code in TRANSIENT_CODES:
        what = "rate or concurrency limit" if code in (1302, 1303) else "server error"
        return transient(f"Kling {what} (code {code}); retry later.{said}", code)
    if code in (1100, 1101, 1102):
        return permanent(
            f"The Kling account cannot pay for this task (code {code}: account issue, arrears or resource "
            f"pack used up): top up the Kling account, then requeue.{said}",
            code,
        )
    if code in CONTENT_CODES:
        return permanent(
            f"Kling's content safety refused the image or prompt (code {code}): change the motion prompt or "
            f"the frame, then requeue.{said}",
            code,
        )
    if code in (1103, 1304):
        return permanent(
            f"Kling refused access (code {code}: permission or IP whitelist); check the account.{said}", code
        )
    if code in (1200, 1201):
        return permanent(
            f"Kling refused the request's parameters (code {code}); check the inputs.{said}", code
        )
    return by_http_status(
        status, f"Kling answered with an error{' code ' + str(code) if code else ''}.{said}", code
    )


def _code(payload: dict[str, Any]) -> int | None:
    try:
        return int(payload["code"])
    except (KeyError, TypeError, ValueError):
        return None


def _mentions_duplicate(message: str) -> bool:
    text = message.lower()
    return "external_task_id" in text and "exist" in text
