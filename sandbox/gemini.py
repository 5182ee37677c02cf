"""Gemini `generateContent` for image models (a PNG drawn from the prompt) and text models (JSON
that follows the request's response schema), with Google's error envelope.

Prompt triggers let tests reach the answers a real model gives only sometimes:
`[sandbox:block-prompt]` (prompt blocked), `[sandbox:block-output]` (output blocked),
`[sandbox:text-only]` (a STOP answer without an image) and `[sandbox:quota-day]` (daily quota gone).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import TYPE_CHECKING, Any

from sandbox.app import USAGE_HEADER, Provider
from sandbox.http import Request, Response, json_response
from sandbox.media import image, schema_fill

if TYPE_CHECKING:
    from sandbox.app import Sandbox

IMAGE_TOKENS = 1290  # output tokens the real model bills per image
_TRIGGER_BLOCK_PROMPT = "[sandbox:block-prompt]"
_TRIGGER_BLOCK_OUTPUT = "[sandbox:block-output]"
_TRIGGER_TEXT_ONLY = "[sandbox:text-only]"
_TRIGGER_QUOTA_DAY = "[sandbox:quota-day]"
# Google's RPC status names by HTTP status (the `status` of every Google API's error envelope).
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_MINUTE_QUOTA = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
_DAY_QUOTA = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
_QUOTA_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
_RETRY_TYPE = "type.googleapis.com/google.rpc.RetryInfo"


def register(app: Sandbox) -> None:
    def error(
        status: int, code: str | int | None, message: str | None, retry_after: float | None
    ) -> Response:
        # Google hints the wait in RetryInfo; scaled like every other sandbox delay.
        delay = retry_after if retry_after is not None else app.config.scaled(35.0)
        return error_response(status, code, message, delay)

    def gate(request: Request) -> Response | None:
        key = request.header("x-goog-api-key") or request.arg("key") or ""
        if not key:
            return error_response(
                403,
                None,
                "Method doesn't allow unregistered callers (callers without established identity)."
                " Please use API Key or other form of API consumer identity to call this API.",
                None,
            )
        if key != app.credentials["gemini_api_key"]:
            return error_response(
                400, "API_KEY_INVALID", "API key not valid. Please pass a valid API key.", None
            )
        return None

    def generate(request: Request) -> Response:
        model, _, action = request.params["model_action"].partition(":")
        if action != "generateContent" or not model.startswith("gemini-"):
            return error_response(
                404,
                None,
                f"models/{model} is not found for API version v1beta, or is not supported for {action}.",
                None,
            )
        try:
            body = request.json()
            prompt = _prompt_text(body)
        except ValueError as exc:
            return error_response(400, None, str(exc), None)
        if _TRIGGER_QUOTA_DAY in prompt:
            return error_response(429, _DAY_QUOTA, None, app.config.scaled(35.0))
        config = _pick(body, "generationConfig", "generation_config") or {}
        is_image = "image" in model
        time.sleep(
            app.config.scaled(app.config.gemini_image_seconds if is_image else app.config.gemini_text_seconds)
        )
        if _TRIGGER_BLOCK_PROMPT in prompt:
            return json_response(
                200, _envelope(model, prompt, None, {"promptFeedback": {"blockReason": "SAFETY"}})
            )
        try:
            if is_image:
                return _image_answer(app, model, prompt, config)
            return _text_answer(model, prompt, config)
        except (ValueError, KeyError) as exc:
            return error_response(400, None, str(exc), None)

    app.add_provider(Provider("gemini", "/gemini", error=error, gate=gate))
    app.route("POST", "/gemini/v1beta/models/{model_action}", generate, provider="gemini", billable=True)
    # models.list and models.get: free, read-only (`doctor` checks a key with the list).
    app.route("GET", "/gemini/v1beta/models", _list_models, provider="gemini", name="models.list")
    app.route("GET", "/gemini/v1beta/models/{model_action}", _get_model, provider="gemini", name="models.get")


def _list_models(request: Request) -> Response:
    """models.list: pages of `pageSize` (default 50, at most 1,000) with an opaque nextPageToken."""
    try:
        size = int(request.arg("pageSize", "50") or 50)
    except ValueError:
        return error_response(400, None, "Invalid value at 'page_size' (TYPE_INT32)", None)
    size = min(max(size, 1), 1000) if size > 0 else 50  # Google: 0 or less means its default
    start = _page_start(request.arg("pageToken") or "")
    if start is None:
        return error_response(400, None, "Invalid page token.", None)
    answer: dict[str, Any] = {"models": list(MODELS[start : start + size])}
    if start + size < len(MODELS):
        answer["nextPageToken"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
    return json_response(200, answer)


def _get_model(request: Request) -> Response:
    """models.get: one model by name, 404 NOT_FOUND for one the API does not have."""
    name = request.params["model_action"]
    found = next((m for m in MODELS if m["name"] == f"models/{name}"), None)
    if found is None:
        return error_response(404, None, f"models/{name} is not found for API version v1beta.", None)
    return json_response(200, found)


def _model(name: str, display: str, description: str, output_tokens: int, thinking: bool) -> dict[str, Any]:
    """A model as models.list describes it."""
    return {
        "name": f"models/{name}",
        "version": "001",
        "displayName": display,
        "description": description,
        "inputTokenLimit": 1_048_576 if "image" not in name else 32_768,
        "outputTokenLimit": output_tokens,
        "supportedGenerationMethods": ["generateContent", "countTokens", "batchGenerateContent"],
        "temperature": 1,
        "topP": 0.95,
        "topK": 64,
        "maxTemperature": 2,
        "thinking": thinking,
    }


# What models.list answers: the models the scripts use and their neighbours (generateContent
# answers any gemini-* model; an image model is one whose name says image).
MODELS = (
    _model("gemini-2.5-flash", "Gemini 2.5 Flash", "Stable version of Gemini 2.5 Flash.", 65_536, True),
    _model("gemini-2.5-pro", "Gemini 2.5 Pro", "Stable release of Gemini 2.5 Pro.", 65_536, True),
    _model("gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite", "Stable Gemini 2.5 Flash-Lite.", 65_536, True),
    _model("gemini-2.5-flash-image", "Nano Banana", "Gemini 2.5 Flash Image.", 32_768, False),
    _model("gemini-2.0-flash", "Gemini 2.0 Flash", "Gemini 2.0 Flash.", 8_192, False),
)


def _page_start(token: str) -> int | None:
    """The offset an opaque pageToken stands for (0 without one), or None when it is not ours."""
    if not token:
        return 0
    try:
        start = int(base64.urlsafe_b64decode(token.encode()).decode())
    except (ValueError, UnicodeDecodeError):
        return None
    return start if 0 <= start < len(MODELS) else None


# Answers -------------------------------------------------------------------------------------------
def _image_answer(app: Sandbox, model: str, prompt: str, config: dict[str, Any]) -> Response:
    if _TRIGGER_BLOCK_OUTPUT in prompt:
        return _candidate(model, prompt, None, "IMAGE_SAFETY", 0)
    image_config = _pick(config, "imageConfig", "image_config") or {}
    aspect = _pick(image_config, "aspectRatio", "aspect_ratio") or "1:1"
    if aspect not in image.SIZES:
        raise ValueError(f"Unsupported aspect ratio {aspect!r}; use one of {', '.join(image.SIZES)}.")
    modalities = [str(m).upper() for m in _pick(config, "responseModalities", "response_modalities") or []]
    parts: list[dict[str, Any]] = []
    if _TRIGGER_TEXT_ONLY in prompt:
        parts.append({"text": "I can describe this scene, but I cannot draw it right now."})
        return _candidate(model, prompt, parts, "STOP", 20)
    if not modalities or "TEXT" in modalities:
        # The real model often says a few words before the picture: clients must look for inlineData.
        parts.append({"text": "Here is the image you asked for."})
    width, height = image.size_for(aspect, app.config.cheap_media)
    png = image.png_bytes(image.draw(prompt, width, height))
    parts.append({"inlineData": {"mimeType": "image/png", "data": base64.b64encode(png).decode()}})
    return _candidate(model, prompt, parts, "STOP", IMAGE_TOKENS)


def _text_answer(model: str, prompt: str, config: dict[str, Any]) -> Response:
    if _TRIGGER_BLOCK_OUTPUT in prompt:
        return _candidate(model, prompt, None, "SAFETY", 0)
    schema = _pick(config, "responseJsonSchema", "response_json_schema", "responseSchema", "response_schema")
    mime = _pick(config, "responseMimeType", "response_mime_type") or "text/plain"
    if schema is not None:
        text = json.dumps(schema_fill.fill(schema, prompt), ensure_ascii=False)
    elif mime == "application/json":
        text = json.dumps({"response": schema_fill.sentence(prompt, "$", 10, 20)})
    else:
        text = " ".join(schema_fill.sentence(prompt, f"${i}", 8, 16) for i in range(3))
    return _candidate(model, prompt, [{"text": text}], "STOP", max(1, len(text) // 4))


def _candidate(
    model: str, prompt: str, parts: list[dict[str, Any]] | None, finish: str, out_tokens: int
) -> Response:
    candidate: dict[str, Any] = {"finishReason": finish, "index": 0}
    if parts is not None:
        candidate = {"content": {"role": "model", "parts": parts}, **candidate}
    answer = _envelope(model, prompt, out_tokens, {"candidates": [candidate]})
    usage = answer["usageMetadata"]
    images = sum(1 for p in parts or [] if "inlineData" in p)
    billed = {
        "model": model,
        "prompt_tokens": usage["promptTokenCount"],
        "output_tokens": usage.get("candidatesTokenCount", 0),
        "images": images,
    }
    return json_response(200, answer, {USAGE_HEADER: json.dumps(billed)})


def _envelope(model: str, prompt: str, out_tokens: int | None, answer: dict[str, Any]) -> dict[str, Any]:
    prompt_tokens = max(1, len(prompt) // 4)
    usage: dict[str, Any] = {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens}
    if out_tokens is not None:
        usage.update(candidatesTokenCount=out_tokens, totalTokenCount=prompt_tokens + out_tokens)
    return {
        **answer,
        "usageMetadata": usage,
        "modelVersion": model,
        "responseId": uuid.uuid4().hex[:22],
    }


# Requests ------------------------------------------------------------------------------------------
def _pick(obj: Any, *names: str) -> Any:
    """The first of `names` present in a dict (proto-JSON accepts camelCase and snake_case)."""
    if not isinstance(obj, dict):
        return None
    return next((obj[n] for n in names if n in obj), None)


def _prompt_text(body: Any) -> str:
    if not isinstance(body, dict):
        raise ValueError("Invalid JSON payload received. Expected an object.")
    contents = body.get("contents")
    if isinstance(contents, dict):
        contents = [contents]
    if not contents or not isinstance(contents, list):
        raise ValueError("* GenerateContentRequest.contents: contents is not specified")
    texts: list[str] = []
    for content in contents:
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(parts, list):
            raise ValueError("* GenerateContentRequest.contents.parts: contents.parts must not be empty.")
        texts.extend(str(p["text"]) for p in parts if isinstance(p, dict) and "text" in p)
    if not texts:
        raise ValueError("* GenerateContentRequest.contents: a text part is required.")
    return "\n".join(texts)


# Errors --------------------------------------------------------------------------------------------
def error_response(
    status: int, code: str | int | None, message: str | None, retry_after: float | None
) -> Response:
    """Google's envelope; `code` may name a status (RESOURCE_EXHAUSTED), a quota id or an ErrorInfo reason."""
    code_text = str(code) if code is not None else ""
    name = code_text if code_text in STATUS_NAMES.values() else STATUS_NAMES.get(status, "UNKNOWN")
    details: list[dict[str, Any]] = []
    if status == 429:
        quota_id = code_text if "Per" in code_text else _MINUTE_QUOTA
        delay = retry_after or 0.0
        message = message or (
            "You exceeded your current quota, please check your plan and billing details."
            f" Please retry in {delay:.1f}s."
        )
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": _QUOTA_METRIC,
                        "quotaId": quota_id,
                        "quotaDimensions": {"location": "global", "model": "gemini"},
                    }
                ],
            }
        )
        details.append({"@type": _RETRY_TYPE, "retryDelay": f"{round(delay, 3):g}s"})
    elif code_text and code_text not in STATUS_NAMES.values():
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": code_text,
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        )
    body = {"error": {"code": status, "message": message or name.replace("_", " ").lower(), "status": name}}
    if details:
        body["error"]["details"] = details
    return json_response(status, body)
