"""ElevenLabs text-to-speech, sound generation and music: requests and error classification."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import httpx

from scripts._lib import env
from scripts._lib.errors import KEY_FIX, ScriptError, by_http_status, permanent, transient
from scripts._lib.http import json_body, make_client, send
from scripts._lib.output import emit_paying

PROVIDER = "elevenlabs"
DEFAULT_BASE_URL = "https://api.elevenlabs.io"
OUTPUT_FORMAT = "mp3_44100_128"

TRANSIENT_STATUSES = frozenset({"too_many_concurrent_requests", "system_busy", "rate_limit_exceeded"})
AUTH_STATUSES = frozenset({"invalid_api_key", "missing_api_key", "unauthorized"})
MONEY_STATUSES = frozenset({"quota_exceeded", "payment_required", "insufficient_credits"})


def client_from_env(timeout: float = 180.0, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    key = env.require("ELEVENLABS_API_KEY")
    base = env.base_url("ELEVENLABS_BASE_URL", DEFAULT_BASE_URL)
    return make_client(base, {"xi-api-key": key}, timeout=timeout, transport=transport)


def _post(client: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    """POSTs a generation request for MP3 audio; returns a 200 answer or raises a classified error."""
    emit_paying(PROVIDER)
    response = send(client, "ElevenLabs", "POST", path, params={"output_format": OUTPUT_FORMAT}, json=body)
    if response.status_code != 200:
        raise classify_error(response.status_code, json_body(response))
    return response


def post_audio(client: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    """POSTs a generation request; returns the audio response or raises a classified error."""
    response = _post(client, path, body)
    if not response.content:
        raise transient("ElevenLabs answered with no audio; retry later.", "empty_audio")
    return response


def post_speech_with_timestamps(
    client: httpx.Client, voice_id: str, body: dict[str, Any]
) -> tuple[bytes, httpx.Response, dict[str, Any]]:
    """Text-to-speech with its character alignment: (audio bytes, the response, the alignment)."""
    response = _post(client, f"/v1/text-to-speech/{voice_id}/with-timestamps", body)
    answer = json_body(response)
    try:
        audio = base64.b64decode(str(answer["audio_base64"]), validate=True)
        alignment = answer.get("alignment") or answer["normalized_alignment"]
    except (KeyError, ValueError, binascii.Error) as exc:
        raise transient(
            f"ElevenLabs' answer has no readable audio or alignment ({type(exc).__name__}); retry later.",
            "bad_answer",
        ) from exc
    if not audio:
        raise transient("ElevenLabs answered with no audio; retry later.", "empty_audio")
    return audio, response, dict(alignment)


def classify_error(status: int, body: dict[str, Any]) -> ScriptError:
    detail = body.get("detail")
    code, message = _detail(detail)
    said = f" ElevenLabs said: {message}" if message else ""
    if code in TRANSIENT_STATUSES or status == 429:
        return transient(
            f"ElevenLabs is busy ({code or status}: too many requests at once); retry later.{said}",
            code or status,
        )
    if code in MONEY_STATUSES:
        return permanent(
            f"The ElevenLabs account is out of credits ({code}): top up or upgrade the plan, then requeue."
            f"{said}",
            code,
        )
    if code in AUTH_STATUSES or status == 401:
        fix = KEY_FIX.format("ELEVENLABS_API_KEY")
        return permanent(f"ElevenLabs refused the API key ({code or status}): {fix}{said}", code or status)
    if code == "voice_not_found":
        return permanent(
            f"ElevenLabs does not know this voice ({code}): fix voice.voice_id in the channel config.{said}",
            code,
        )
    if code == "bad_prompt":
        return permanent(
            f"ElevenLabs refused the music prompt ({code}): describe the music without naming artists or "
            f"works (music.style in the channel config), then requeue.{said}",
            code,
        )
    if code == "max_character_limit_exceeded":
        return permanent(f"The text is too long for this ElevenLabs model ({code}): shorten it.{said}", code)
    if status == 422:
        return permanent(
            f"ElevenLabs refused the request's parameters (422): check the inputs.{said}", code or 422
        )
    return by_http_status(status, f"ElevenLabs answered with an error{said}", code or status)


def _detail(detail: Any) -> tuple[str, str]:
    """(status code, message) from the `detail` field, which is an object, a string or (422) a list."""
    if isinstance(detail, dict):
        return str(detail.get("status") or detail.get("code") or ""), str(detail.get("message") or "")
    if isinstance(detail, list):
        messages = [str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail]
        return "validation_error", "; ".join(messages)
    if isinstance(detail, str):
        return "", detail
    return "", ""
