"""The provider keys, each tried with the cheapest call that reads nothing paid and changes
nothing: Gemini lists its models, Kling lists one task, ElevenLabs reads the subscription."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from daemon.doctor.report import Result, fail, ok, skip, warn
from daemon.settings import Settings


@dataclass(frozen=True)
class Provider:
    name: str  # the line's name
    title: str  # as the operator knows it
    base_url: str
    base_var: str  # the setting that moves it
    keys: tuple[str, ...]  # the settings that hold its key(s)
    key_fix: str  # where a working key comes from

    @property
    def unreachable_fix(self) -> str:
        return f"check the network and the firewall, or {self.base_var} if it is set"

    def refused(self, answer: httpx.Response, said: str) -> Result:
        names = " and ".join(self.keys)
        return fail(self.name, f"{self.title} refused {names} ({answer.status_code} {said})", self.key_fix)

    def trouble(self, answer: httpx.Response, said: str) -> Result:
        return fail(
            self.name,
            f"{self.title} at {self.base_url} answered {answer.status_code} {said}",
            f"the provider has trouble: try again in a few minutes; if it stays, check {self.base_var}",
        )


def gemini(settings: Settings) -> Provider:
    return Provider(
        "gemini",
        "Gemini",
        settings.gemini_base_url,
        "GEMINI_BASE_URL",
        ("GEMINI_API_KEY",),
        "set GEMINI_API_KEY to an API key of the Google Cloud project with the Gemini API "
        "(Google AI Studio, Get API key)",
    )


def kling(settings: Settings) -> Provider:
    return Provider(
        "kling",
        "Kling",
        settings.kling_base_url,
        "KLING_BASE_URL",
        ("KLING_ACCESS_KEY", "KLING_SECRET_KEY"),
        "set KLING_ACCESS_KEY and KLING_SECRET_KEY to one pair from Kling's developer console (API keys)",
    )


def elevenlabs(settings: Settings) -> Provider:
    return Provider(
        "elevenlabs",
        "ElevenLabs",
        settings.elevenlabs_base_url,
        "ELEVENLABS_BASE_URL",
        ("ELEVENLABS_API_KEY",),
        "set ELEVENLABS_API_KEY to a key from ElevenLabs (Settings, API keys) with text to speech, "
        "sound effects and music allowed",
    )


def not_needed(provider: Provider) -> Result:
    return skip(provider.name, "no channel is configured, so no key is needed yet")


def missing_key(provider: Provider, names: list[str], needed_by: list[str]) -> Result:
    who = ", ".join(needed_by)
    return fail(
        provider.name,
        f"{' and '.join(names)} not set; every channel needs {provider.title} ({who})",
        provider.key_fix,
    )


async def get(
    http: httpx.AsyncClient,
    provider: Provider,
    path: str,
    *,
    headers: Mapping[str, str],
    params: Mapping[str, str | int] | None = None,
) -> httpx.Response | Result:
    """The answer, or the failure line when the provider cannot be reached."""
    url = provider.base_url.rstrip("/") + path
    try:
        return await http.get(url, headers=dict(headers), params=dict(params or {}))
    except httpx.TimeoutException:
        return fail(
            provider.name,
            f"no answer from {provider.title} at {provider.base_url} in time",
            provider.unreachable_fix,
        )
    except httpx.HTTPError as exc:
        return fail(
            provider.name,
            f"cannot reach {provider.title} at {provider.base_url} ({type(exc).__name__}: {exc})",
            provider.unreachable_fix,
        )


def _json(answer: httpx.Response) -> dict[str, Any]:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


async def check_gemini(http: httpx.AsyncClient, settings: Settings) -> Result:
    """models.list: free, and refused with the key's own error when the key is wrong."""
    provider = gemini(settings)
    assert settings.gemini_api_key is not None
    answer = await get(
        http,
        provider,
        "/v1beta/models",
        headers={"x-goog-api-key": settings.gemini_api_key.get_secret_value()},
        params={"pageSize": 1000},
    )
    if isinstance(answer, Result):
        return answer
    error = _json(answer).get("error") or {}
    said = f"{error.get('status', '')}: {error.get('message', answer.reason_phrase)}".strip(": ")
    if answer.status_code in (400, 401, 403):
        return provider.refused(answer, said)
    if answer.status_code == 429:
        return warn(
            "gemini",
            f"the key works, but Gemini says its quota is used up for now ({said})",
            "wait for the quota to reset, or raise it (Google Cloud console, quotas)",
        )
    if answer.status_code != 200:
        return provider.trouble(answer, said)
    models = _json(answer).get("models") or []
    return ok("gemini", f"GEMINI_API_KEY accepted by {provider.base_url}; {len(models)} models listed")


def kling_token(access_key: str, secret_key: str) -> str:
    """Kling's per-request JWT, as the clip script makes it (iss = access key, 30 minutes)."""
    now = int(time.time())
    claims = {"iss": access_key, "exp": now + 1800, "nbf": now - 5}
    return jwt.encode(claims, secret_key, algorithm="HS256", headers={"typ": "JWT"})


# Kling's answers that say the account, not the key, is the problem (the key itself works).
_KLING_ACCOUNT = {
    1100: "the account has a problem",
    1101: "the account is in arrears",
    1102: "the resource pack is used up or expired",
    1103: "the key has no permission for this",
}


async def check_kling(http: httpx.AsyncClient, settings: Settings) -> Result:
    """The task list, one task long: the JWT signed with the secret key is checked, nothing is made."""
    provider = kling(settings)
    assert settings.kling_access_key is not None and settings.kling_secret_key is not None
    token = kling_token(
        settings.kling_access_key.get_secret_value(), settings.kling_secret_key.get_secret_value()
    )
    answer = await get(
        http,
        provider,
        "/v1/videos/image2video",
        headers={"Authorization": f"Bearer {token}"},
        params={"pageNum": 1, "pageSize": 1},
    )
    if isinstance(answer, Result):
        return answer
    body = _json(answer)
    code = body.get("code")
    said = f"code {code}: {body.get('message', answer.reason_phrase)}"
    if answer.status_code == 401 or code in (1000, 1001, 1002, 1003, 1004):
        return provider.refused(answer, said)
    if isinstance(code, int) and code in _KLING_ACCOUNT:
        return fail(
            "kling",
            f"the keys work, but {_KLING_ACCOUNT[code]} ({said})",
            "top up or renew the account's resource packs in Kling's developer console",
        )
    if answer.status_code == 429:
        return warn("kling", f"the keys work, but Kling asks to slow down ({said})", "")
    if answer.status_code != 200 or code != 0:
        return provider.trouble(answer, said)
    return ok("kling", f"KLING_ACCESS_KEY and KLING_SECRET_KEY accepted by {provider.base_url}")


async def check_elevenlabs(http: httpx.AsyncClient, settings: Settings) -> Result:
    """The subscription: the key, and how many characters are left this period."""
    provider = elevenlabs(settings)
    assert settings.elevenlabs_api_key is not None
    answer = await get(
        http,
        provider,
        "/v1/user/subscription",
        headers={"xi-api-key": settings.elevenlabs_api_key.get_secret_value()},
    )
    if isinstance(answer, Result):
        return answer
    body = _json(answer)
    found = body.get("detail")
    detail: dict[str, Any] = found if isinstance(found, dict) else {}
    status = str(detail.get("status", ""))
    said = f"{status}: {detail.get('message', answer.reason_phrase)}".strip(": ")
    if status == "missing_permissions":
        return warn(
            "elevenlabs",
            f"the key works, but may not read the subscription, so the characters left are unknown ({said})",
            "allow the key User: read in ElevenLabs (Settings, API keys) to see them here",
        )
    if status == "quota_exceeded":
        return fail(
            "elevenlabs",
            f"the key works, but its characters are used up ({said})",
            "wait for the period to reset, or upgrade the plan",
        )
    if answer.status_code in (401, 403):
        return provider.refused(answer, said)
    if answer.status_code != 200:
        return provider.trouble(answer, said)
    return _subscription(provider, body)


def _subscription(provider: Provider, body: dict[str, Any]) -> Result:
    used, limit = int(body.get("character_count") or 0), int(body.get("character_limit") or 0)
    tier = body.get("tier", "?")
    reset = body.get("next_character_count_reset_unix")
    when = time.strftime(" (resets %Y-%m-%d)", time.gmtime(int(reset))) if reset else ""
    detail = f"ELEVENLABS_API_KEY accepted; plan {tier}, {used:,} of {limit:,} characters used{when}"
    if limit and used >= limit:
        return fail("elevenlabs", detail, "wait for the period to reset, or upgrade the plan")
    if limit and used >= 0.9 * limit:
        return warn("elevenlabs", detail, "narration stops when they are used up: upgrade the plan")
    return ok("elevenlabs", detail)
