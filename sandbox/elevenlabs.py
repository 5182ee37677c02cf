"""ElevenLabs text-to-speech (real speech from eSpeak NG) and sound generation (synthesized
ambience), with the `{"detail": {"status", "message"}}` error envelope and a per-account limit on
requests in flight."""

from __future__ import annotations

import base64
import calendar
import json
import math
import re
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sandbox.app import USAGE_HEADER, Provider
from sandbox.http import Request, Response, json_response
from sandbox.media import ambience, ffmpeg, music, speech

if TYPE_CHECKING:
    from sandbox.app import Sandbox

_VOICE_ID = re.compile(r"^[A-Za-z0-9]{10,40}$")
_FORMATS = re.compile(r"^(mp3_(22050_32|44100_(32|64|96|128|192))|pcm_(8000|16000|22050|24000|44100))$")
_DEFAULT_FORMAT = "mp3_44100_128"
_LIMITS = {"eleven_flash_v2": 40_000, "eleven_flash_v2_5": 40_000, "eleven_turbo_v2": 40_000,
           "eleven_turbo_v2_5": 40_000, "eleven_v3": 5_000}  # fmt: skip
_DEFAULT_LIMIT = 10_000  # eleven_multilingual_v2 and older models
_STATUS_FOR_HTTP = {
    400: "invalid_request",
    401: "invalid_api_key",
    404: "not_found",
    405: "method_not_allowed",
    422: "validation_error",
    429: "too_many_concurrent_requests",
    500: "internal_server_error",
    503: "service_unavailable",
}
_LEAD_SILENCE, _TAIL_SILENCE = 0.05, 0.3
_SFX_CREDITS_PER_SECOND = 40
_MUSIC_MS = (3_000, 300_000)
_MUSIC_PROMPT_LIMIT = 2_000
# Named artists and songs are refused by the real API (it suggests a prompt without them).
_REFUSED_IN_PROMPTS = re.compile(r"\bin the style of\b[^,.;]*", re.IGNORECASE)


class ElevenLabsError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(
    status: int, code: str | int | None, message: str | None, retry_after: float | None
) -> Response:
    name = str(code) if code is not None else _STATUS_FOR_HTTP.get(status, "error")
    headers: dict[str, str] = {}
    if retry_after is not None:  # the SDK honours both; the real API sends them on some 429s
        headers = {"retry-after-ms": str(int(retry_after * 1000)), "Retry-After": str(math.ceil(retry_after))}
    detail = {"status": name, "message": message or name.replace("_", " ")}
    return json_response(status, {"detail": detail}, headers)


class Slots:
    """Requests in flight for the account; over the plan's concurrency the API answers 429."""

    def __init__(self, limit: Callable[[], int]) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._busy = 0

    def run(self, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def limited(request: Request) -> Response:
            with self._lock:
                if self._busy >= self._limit():
                    return error_response(
                        429,
                        "too_many_concurrent_requests",
                        "Too many concurrent requests for your plan; wait for one to finish.",
                        None,
                    )
                self._busy += 1
            try:
                return handler(request)
            finally:
                with self._lock:
                    self._busy -= 1

        return limited


def register(app: Sandbox) -> None:
    synthesizer = speech.Synthesizer()
    slots = Slots(lambda: app.config.elevenlabs_concurrency)

    def gate(request: Request) -> Response | None:
        if request.header("xi-api-key") != app.credentials["elevenlabs_api_key"]:
            return error_response(401, "invalid_api_key", "Invalid API key", None)
        return None

    def answer(handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def run(request: Request) -> Response:
            try:
                return handler(request)
            except ElevenLabsError as exc:
                return error_response(exc.status, exc.code, exc.message, None)

        return slots.run(run)

    def tts(request: Request) -> Response:
        text, voice_id, speed, fmt, model = _tts_request(request)
        time.sleep(app.config.scaled(app.config.tts_seconds))
        spoken = speech.pad(synthesizer.speak(text, voice_id, speed), _LEAD_SILENCE, _TAIL_SILENCE)
        audio = ffmpeg.encode_pcm(spoken.samples, spoken.rate, fmt)
        return Response(200, audio, {**_audio_headers(fmt), **_tts_cost(text, model)})

    def tts_with_timestamps(request: Request) -> Response:
        text, voice_id, speed, fmt, model = _tts_request(request)
        time.sleep(app.config.scaled(app.config.tts_seconds))
        spoken = speech.pad(synthesizer.speak(text, voice_id, speed), _LEAD_SILENCE, _TAIL_SILENCE)
        audio = ffmpeg.encode_pcm(spoken.samples, spoken.rate, fmt)
        alignment = speech.alignment(text, spoken, spoken.duration - _TAIL_SILENCE, speed)
        body = {
            "audio_base64": base64.b64encode(audio).decode(),
            "alignment": alignment,
            "normalized_alignment": alignment,
        }
        headers = {"request-id": uuid.uuid4().hex, **_tts_cost(text, model)}
        return json_response(200, body, headers)

    def sound_generation(request: Request) -> Response:
        prompt, seconds, influence, loop, fmt = _sfx_request(request)
        time.sleep(app.config.scaled(app.config.sfx_seconds))
        audio = ambience.render(prompt, seconds or ambience.DEFAULT_SECONDS, fmt, loop, influence)
        credits = round(_SFX_CREDITS_PER_SECOND * seconds) if seconds else 200
        usage = json.dumps({"credits": credits, "seconds": seconds})
        return Response(
            200, audio, {**_audio_headers(fmt), "character-cost": str(credits), USAGE_HEADER: usage}
        )

    def compose(request: Request) -> Response:
        prompt, seconds, fmt = _music_request(request)
        time.sleep(app.config.scaled(app.config.music_seconds))
        audio = music.render(prompt, min(seconds, 3.0) if app.config.cheap_media else seconds, fmt)
        usage = json.dumps({"seconds": seconds, "model": "music_v1"})
        return Response(200, audio, {**_audio_headers(fmt), USAGE_HEADER: usage})

    app.add_provider(Provider("elevenlabs", "/elevenlabs", error=error_response, gate=gate))
    base = "/elevenlabs/v1"
    _register_account(app)
    app.route("POST", base + "/text-to-speech/{voice_id}", answer(tts), provider="elevenlabs", billable=True)
    app.route(
        "POST",
        base + "/text-to-speech/{voice_id}/with-timestamps",
        answer(tts_with_timestamps),
        provider="elevenlabs",
        billable=True,
    )
    app.route(
        "POST", base + "/sound-generation", answer(sound_generation), provider="elevenlabs", billable=True
    )
    app.route("POST", base + "/music", answer(compose), provider="elevenlabs", billable=True)


def _register_account(app: Sandbox) -> None:
    """The account: free and read-only (`doctor` checks a key with the subscription)."""

    def subscription_info() -> dict[str, Any]:
        """The plan and this period's characters: the credits every successful call so far used."""
        used = sum(
            float((call.get("usage") or {}).get("credits") or 0)
            for call in app.store.calls("elevenlabs")
            if call.get("status") == 200
        )
        now = time.gmtime()
        year, month = (now.tm_year + 1, 1) if now.tm_mon == 12 else (now.tm_year, now.tm_mon + 1)
        return {
            "tier": "creator",
            "character_count": round(used),
            "character_limit": app.config.elevenlabs_character_limit,
            "can_extend_character_limit": True,
            "allowed_to_extend_character_limit": True,
            "next_character_count_reset_unix": calendar.timegm((year, month, 1, 0, 0, 0)),
            "voice_limit": 30,
            "professional_voice_limit": 1,
            "can_extend_voice_limit": False,
            "can_use_instant_voice_cloning": True,
            "can_use_professional_voice_cloning": True,
            "currency": "usd",
            "status": "active",
            "billing_period": "monthly_period",
            "character_refresh_period": "monthly_period",
        }

    def subscription(request: Request) -> Response:
        return json_response(200, subscription_info())

    def user(request: Request) -> Response:
        return json_response(
            200,
            {
                "user_id": "sandbox-user",
                "subscription": subscription_info(),
                "is_new_user": False,
                "xi_api_key": "[redacted]",  # as the real API answers it
                "can_use_delayed_payment_methods": False,
                "first_name": "Sandbox",
            },
        )

    app.route("GET", "/elevenlabs/v1/user", user, provider="elevenlabs", name="user.get")
    app.route(
        "GET",
        "/elevenlabs/v1/user/subscription",
        subscription,
        provider="elevenlabs",
        name="user.subscription",
    )


def _tts_cost(text: str, model: str) -> dict[str, str]:
    """character-cost as the API reports it, and the credits for the call log (flash/turbo: half)."""
    credits = len(text) * (0.5 if "flash" in model or "turbo" in model else 1.0)
    usage = {"characters": len(text), "credits": credits, "model": model}
    return {"character-cost": str(len(text)), USAGE_HEADER: json.dumps(usage)}


def _audio_headers(fmt: str) -> dict[str, str]:
    content_type = "audio/mpeg" if fmt.startswith("mp3") else "application/octet-stream"
    return {"Content-Type": content_type, "request-id": uuid.uuid4().hex}


# Requests --------------------------------------------------------------------------------------------
def _body(request: Request) -> dict[str, Any]:
    try:
        body = request.json()
    except ValueError as exc:
        raise ElevenLabsError(422, "validation_error", "the body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise ElevenLabsError(422, "validation_error", "the body must be a JSON object")
    return body


def _output_format(request: Request) -> str:
    fmt = request.arg("output_format") or _DEFAULT_FORMAT
    if not _FORMATS.match(fmt):
        raise ElevenLabsError(422, "validation_error", f"output_format {fmt!r} is not supported")
    return fmt


def _tts_request(request: Request) -> tuple[str, str, float, str, str]:
    voice_id = request.params["voice_id"]
    if not _VOICE_ID.match(voice_id):
        raise ElevenLabsError(400, "voice_not_found", f"A voice with the voice_id {voice_id} was not found.")
    body = _body(request)
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ElevenLabsError(422, "validation_error", "text is required and must be a non-empty string")
    model = str(body.get("model_id") or "eleven_multilingual_v2")
    limit = _LIMITS.get(model, _DEFAULT_LIMIT)
    if len(text) > limit:
        raise ElevenLabsError(
            400,
            "max_character_limit_exceeded",
            f"You are sending {len(text)} characters with a single request, but the maximum is {limit}.",
        )
    settings = body.get("voice_settings") or {}
    speed = settings.get("speed", 1.0) if isinstance(settings, dict) else 1.0
    if not isinstance(speed, (int, float)) or not 0.7 <= speed <= 1.2:
        raise ElevenLabsError(422, "validation_error", "voice_settings.speed must be within 0.7..1.2")
    return text, voice_id, float(speed), _output_format(request), model


def _sfx_request(request: Request) -> tuple[str, float | None, float, bool, str]:
    body = _body(request)
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ElevenLabsError(422, "validation_error", "text is required and must be a non-empty string")
    seconds = body.get("duration_seconds")
    if seconds is not None and (not isinstance(seconds, (int, float)) or not 0.5 <= seconds <= 30):
        raise ElevenLabsError(422, "validation_error", "duration_seconds must be within 0.5..30 or null")
    influence = body.get("prompt_influence", 0.3)
    if influence is None:
        influence = 0.3
    if not isinstance(influence, (int, float)) or not 0 <= influence <= 1:
        raise ElevenLabsError(422, "validation_error", "prompt_influence must be within 0..1")
    loop = bool(body.get("loop", False))
    return text, None if seconds is None else float(seconds), float(influence), loop, _output_format(request)


def _music_request(request: Request) -> tuple[str, float, str]:
    """(prompt, seconds, output format) of a /v1/music request; a composition plan is not spoken."""
    body = _body(request)
    if body.get("composition_plan") is not None:
        raise ElevenLabsError(422, "validation_error", "this sandbox composes from a prompt only")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ElevenLabsError(422, "validation_error", "prompt is required and must be a non-empty string")
    if len(prompt) > _MUSIC_PROMPT_LIMIT:
        raise ElevenLabsError(422, "validation_error", f"prompt is over {_MUSIC_PROMPT_LIMIT} characters")
    if _REFUSED_IN_PROMPTS.search(prompt):
        suggestion = _REFUSED_IN_PROMPTS.sub("", prompt).strip(" ,.")
        raise ElevenLabsError(
            400,
            "bad_prompt",
            "The prompt names an artist or a work; describe the music instead. "
            f"prompt_suggestion: {suggestion}",
        )
    length = body.get("music_length_ms")
    low, high = _MUSIC_MS
    if length is not None and (
        isinstance(length, bool) or not isinstance(length, int) or not low <= length <= high
    ):
        raise ElevenLabsError(
            422, "validation_error", f"music_length_ms must be an integer within {low}..{high}"
        )
    seconds = (length or 30_000) / 1000
    return prompt, seconds, _output_format(request)
