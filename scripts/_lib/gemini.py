"""Gemini generateContent: requests, answers (text, image, blocks) and error classification."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

import httpx

from scripts._lib import env
from scripts._lib.errors import KEY_FIX, ScriptError, by_http_status, permanent, transient
from scripts._lib.http import json_body, make_client, send
from scripts._lib.output import emit_paying

PROVIDER = "gemini"
DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"

# finishReason values that mean the model (or its filters) refused the output: rewording is needed.
BLOCKED_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "RECITATION",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_OTHER",
        "NO_IMAGE",
        "IMAGE_RECITATION",
        "OTHER",
    }
)
TRANSIENT_STATUSES = frozenset(
    {"RESOURCE_EXHAUSTED", "UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "ABORTED"}
)
AUTH_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED"})


@dataclass
class Usage:
    prompt_tokens: int
    output_tokens: int  # candidates + thoughts: both are billed as output

    def as_meta(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "output_tokens": self.output_tokens}


@dataclass
class InlineImage:
    mime_type: str
    data: bytes


def client_from_env(timeout: float = 180.0, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    key = env.require("GEMINI_API_KEY")
    base = env.base_url("GEMINI_BASE_URL", DEFAULT_BASE_URL)
    return make_client(base, {"x-goog-api-key": key}, timeout=timeout, transport=transport)


def generate(client: httpx.Client, model: str, body: dict[str, Any]) -> dict[str, Any]:
    """POSTs generateContent; returns the answer or raises a classified error."""
    emit_paying(PROVIDER)
    response = send(client, "Gemini", "POST", f"/v1beta/models/{model}:generateContent", json=body)
    if response.status_code != 200:
        raise classify_error(response.status_code, json_body(response))
    data = json_body(response)
    if not data:
        raise transient("Gemini answered with something that is not JSON; retry later.", "bad_answer")
    return data


def classify_error(status: int, body: dict[str, Any]) -> ScriptError:
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    assert isinstance(error, dict)
    api_status = str(error.get("status") or "")
    message = str(error.get("message") or "").strip()
    details = [d for d in error.get("details") or [] if isinstance(d, dict)]
    reason = _detail_reason(details)
    code: str | int = reason or api_status or status
    if (
        reason in AUTH_REASONS
        or status in (401, 403)
        or api_status in ("UNAUTHENTICATED", "PERMISSION_DENIED")
    ):
        fix = KEY_FIX.format("GEMINI_API_KEY")
        return permanent(
            f"Gemini refused the API key ({reason or api_status or status}): {fix} {message}".strip(), code
        )
    if api_status == "RESOURCE_EXHAUSTED" or status == 429:
        return _quota_error(message, details, code)
    if api_status in TRANSIENT_STATUSES or status in (408, 500, 502, 503, 504):
        return transient(
            f"Gemini is unavailable for now ({api_status or status}); retry later. {message}".strip(), code
        )
    if api_status or message:
        return permanent(f"Gemini refused the request ({api_status or status}): {message}", code)
    return by_http_status(status, "Gemini refused the request", code)


def _quota_error(message: str, details: list[dict[str, Any]], code: str | int) -> ScriptError:
    quota_ids = [
        str(v.get("quotaId", "")) for d in details for v in d.get("violations") or [] if isinstance(v, dict)
    ]
    per_day = [q for q in quota_ids if "PerDay" in q]
    if per_day:
        # A daily quota does not come back before midnight Pacific: retrying all day only burns attempts.
        return permanent(
            f"Gemini's daily quota is used up ({per_day[0]}); it resets at midnight Pacific time. "
            "Raise the quota or billing tier in Google AI Studio, or requeue tomorrow.",
            per_day[0],
        )
    delay = _retry_delay(details, message)
    hint = f" Gemini suggests waiting {delay}." if delay else ""
    error = transient(
        f"Gemini's rate limit was hit (RESOURCE_EXHAUSTED); retry later.{hint}",
        quota_ids[0] if quota_ids else code,
    )
    error.retry_after_s = _seconds(delay)
    return error


def _seconds(delay: str) -> float | None:
    """'34s' or '35.5s' as seconds (Google's Duration format)."""
    found = re.fullmatch(r"([\d.]+)s", delay.strip())
    return float(found.group(1)) if found else None


def _detail_reason(details: list[dict[str, Any]]) -> str:
    for detail in details:
        if str(detail.get("@type", "")).endswith("google.rpc.ErrorInfo") and detail.get("reason"):
            return str(detail["reason"])
    return ""


def _retry_delay(details: list[dict[str, Any]], message: str) -> str:
    for detail in details:
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo") and detail.get("retryDelay"):
            return str(detail["retryDelay"])
    found = re.search(r"retry in ([\d.]+s)", message)
    return found.group(1) if found else ""


def usage_of(answer: dict[str, Any]) -> Usage:
    meta = _get(answer, "usageMetadata", "usage_metadata")
    meta = meta if isinstance(meta, dict) else {}
    prompt = _int(_get(meta, "promptTokenCount", "prompt_token_count"))
    output = _int(_get(meta, "candidatesTokenCount", "candidates_token_count"))
    thoughts = _int(_get(meta, "thoughtsTokenCount", "thoughts_token_count"))
    return Usage(prompt, output + thoughts)


def check_not_blocked(answer: dict[str, Any], what: str) -> dict[str, Any]:
    """The first candidate; a blocked prompt or a blocked output is permanent (reword the prompt)."""
    candidates = answer.get("candidates") or []
    feedback = _get(answer, "promptFeedback", "prompt_feedback")
    block = _get(feedback, "blockReason", "block_reason") if isinstance(feedback, dict) else None
    if block:
        raise permanent(
            f"Gemini blocked the prompt ({block}); reword the prompt of {what} and requeue.", str(block)
        )
    if not candidates or not isinstance(candidates[0], dict):
        raise transient("Gemini answered without any candidate; retry later.", "no_candidates")
    candidate: dict[str, Any] = candidates[0]
    finish = str(_get(candidate, "finishReason", "finish_reason") or "")
    if finish in BLOCKED_FINISH_REASONS:
        raise permanent(
            f"Gemini refused to produce {what} ({finish}); reword its prompt and requeue.", finish
        )
    return candidate


def parts_of(candidate: dict[str, Any]) -> list[dict[str, Any]]:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p for p in parts or [] if isinstance(p, dict)]


def text_of(candidate: dict[str, Any]) -> str:
    # Thought summaries (thought: true) are not part of the answer.
    return "".join(
        str(p.get("text", "")) for p in parts_of(candidate) if "text" in p and not p.get("thought")
    )


def image_of(candidate: dict[str, Any]) -> InlineImage | None:
    for part in parts_of(candidate):
        inline = _get(part, "inlineData", "inline_data")
        if not isinstance(inline, dict) or not inline.get("data"):
            continue
        try:
            data = base64.b64decode(str(inline["data"]), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise transient("Gemini's image data is not valid base64; retry later.", "bad_image") from exc
        mime = str(_get(inline, "mimeType", "mime_type") or "image/png")
        return InlineImage(mime, data)
    return None


def finish_reason(candidate: dict[str, Any]) -> str:
    return str(_get(candidate, "finishReason", "finish_reason") or "")


def _get(obj: Any, camel: str, snake: str) -> Any:
    """Proto-JSON answers may use either spelling."""
    if not isinstance(obj, dict):
        return None
    return obj.get(camel, obj.get(snake))


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
