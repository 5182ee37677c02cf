"""The sandbox's Gemini: real PNGs drawn from the prompt, schema-following JSON, Google's errors."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import httpx
import pytest
from PIL import Image, ImageChops, ImageStat

from tests.support.sandbox_proc import SandboxProcess

IMAGE_MODEL = "gemini-2.5-flash-image"
TEXT_MODEL = "gemini-2.5-flash"


def _key(sandbox: SandboxProcess) -> str:
    return str(json.loads((sandbox.state_dir / "credentials.json").read_text())["gemini_api_key"])


def _generate(
    sandbox: SandboxProcess, model: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    url = f"{sandbox.base('gemini')}/v1beta/models/{model}:generateContent"
    sent = {"x-goog-api-key": _key(sandbox), **(headers or {})}
    return httpx.post(url, json=body, headers=sent, timeout=60)


def _image_request(prompt: str, aspect: str = "16:9") -> dict[str, Any]:
    return {
        "contents": [{"role": "user", "parts": [{"text": prompt}]}],
        "generationConfig": {"responseModalities": ["IMAGE"], "imageConfig": {"aspectRatio": aspect}},
    }


def _png(answer: dict[str, Any]) -> Image.Image:
    parts = answer["candidates"][0]["content"]["parts"]
    data = next(p["inlineData"]["data"] for p in parts if "inlineData" in p)
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    assert image.format == "PNG"
    return image.convert("RGB")


def test_image_answer_is_a_png_of_the_asked_ratio_with_usage(sandbox: SandboxProcess) -> None:
    r = _generate(sandbox, IMAGE_MODEL, _image_request("Misty river delta at dawn, a heron wading"))
    assert r.status_code == 200
    answer = r.json()
    assert _png(answer).size == (1344, 768)
    candidate = answer["candidates"][0]
    assert candidate["finishReason"] == "STOP"
    assert answer["usageMetadata"]["candidatesTokenCount"] == 1290
    assert answer["modelVersion"] == IMAGE_MODEL
    assert answer["responseId"]


def test_snake_case_config_and_query_key_are_accepted(sandbox: SandboxProcess) -> None:
    body = {
        "contents": [{"parts": [{"text": "A fox in the snow"}]}],
        "generation_config": {"response_modalities": ["IMAGE"], "image_config": {"aspect_ratio": "9:16"}},
    }
    url = f"{sandbox.base('gemini')}/v1beta/models/{IMAGE_MODEL}:generateContent"
    r = httpx.post(url, params={"key": _key(sandbox)}, json=body, timeout=60)
    assert r.status_code == 200
    assert _png(r.json()).size == (768, 1344)


def test_prompts_draw_different_pictures_and_one_prompt_the_same(sandbox: SandboxProcess) -> None:
    prompts = ["Reed-lined shallows, still water, mist at dawn", "A pine forest at night under the stars"]
    first, second = (_png(_generate(sandbox, IMAGE_MODEL, _image_request(p)).json()) for p in prompts)
    difference = ImageStat.Stat(ImageChops.difference(first, second)).mean
    assert sum(difference) / 3 > 25, difference
    again = _png(_generate(sandbox, IMAGE_MODEL, _image_request(prompts[0])).json())
    assert ImageChops.difference(first, again).getbbox() is None


def test_key_colour_request_draws_the_subject_on_exactly_that_colour(sandbox: SandboxProcess) -> None:
    prompt = "Grey heron wading, neck coiled, isolated on a solid flat #00FF00 background"
    image = _png(_generate(sandbox, IMAGE_MODEL, _image_request(prompt)).json())
    w, h = image.size
    corners = [(0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1), (w // 2, 2)]
    assert {image.getpixel(c) for c in corners} == {(0, 255, 0)}
    colours = image.getcolors(w * h) or []
    key_share = sum(n for n, c in colours if c == (0, 255, 0)) / (w * h)
    assert 0.5 < key_share < 0.99  # a subject stands on the key colour
    assert all(c[1] < 200 or c == (0, 255, 0) for _, c in colours)  # nothing near-green to key out by mistake


def test_text_answer_follows_an_openapi_schema_with_the_prompts_words(sandbox: SandboxProcess) -> None:
    schema = {
        "type": "OBJECT",
        "properties": {
            "title": {"type": "STRING", "maxLength": 40},
            "mood": {"type": "STRING", "enum": ["calm", "tense"]},
            "scenes": {
                "type": "ARRAY",
                "minItems": 2,
                "maxItems": 6,
                "items": {
                    "type": "OBJECT",
                    "properties": {
                        "narration": {"type": "STRING"},
                        "seconds": {"type": "INTEGER", "minimum": 5, "maximum": 10},
                        "note": {"type": "STRING", "nullable": True},
                    },
                    "required": ["narration", "seconds"],
                    "propertyOrdering": ["seconds", "narration", "note"],
                },
            },
        },
        "required": ["title", "mood", "scenes"],
        "propertyOrdering": ["title", "mood", "scenes"],
    }
    prompt = "Write 3 scenes about the patient heron hunting fish in the misty river delta"
    body = {
        "contents": [{"parts": [{"text": prompt}]}],
        "generationConfig": {"responseMimeType": "application/json", "responseSchema": schema},
    }
    r = _generate(sandbox, TEXT_MODEL, body)
    assert r.status_code == 200
    candidate = r.json()["candidates"][0]
    assert candidate["finishReason"] == "STOP"
    document = json.loads(candidate["content"]["parts"][0]["text"])
    assert list(document) == ["title", "mood", "scenes"]
    assert len(document["title"]) <= 40
    assert document["mood"] in ("calm", "tense")
    assert len(document["scenes"]) == 3  # the count the prompt asked for
    prompt_words = {w.lower() for w in prompt.split()}
    for scene in document["scenes"]:
        assert list(scene)[:2] == ["seconds", "narration"]
        assert 5 <= scene["seconds"] <= 10
        words = scene["narration"].rstrip(".").lower().split()
        assert 10 <= len(words) <= 20
        assert sum(w in prompt_words for w in words) >= len(words) // 2


def test_text_answer_follows_a_json_schema_with_refs(sandbox: SandboxProcess) -> None:
    schema = {
        "type": "object",
        "$defs": {
            "Asset": {
                "type": "object",
                "properties": {
                    "key": {"type": "string", "pattern": "^[a-z0-9_]+$"},
                    "kind": {"type": "string", "enum": ["character", "environment"]},
                },
                "required": ["key", "kind"],
            }
        },
        "properties": {
            "assets": {"type": "array", "items": {"$ref": "#/$defs/Asset"}, "minItems": 2},
            "frame": {
                "type": "object",
                "properties": {"environment": {"type": "string"}, "character": {"type": ["string", "null"]}},
            },
            "ratio": {"type": "number", "minimum": 0, "maximum": 1},
            "draft": {"type": "boolean"},
        },
        "required": ["assets", "frame"],
    }
    body = {
        "contents": [{"parts": [{"text": "An otter family on a frozen lake"}]}],
        "generation_config": {"response_mime_type": "application/json", "response_json_schema": schema},
    }
    answer = _generate(sandbox, TEXT_MODEL, body).json()
    document = json.loads(answer["candidates"][0]["content"]["parts"][0]["text"])
    keys: dict[str, list[str]] = {}
    for asset in document["assets"]:
        keys.setdefault(asset["kind"], []).append(asset["key"])
    assert all(a["key"].replace("_", "").isalnum() and a["key"].islower() for a in document["assets"])
    assert set(keys) == {"character", "environment"}
    # Fields named after a kind of keyed item point at such an item.
    assert document["frame"] == {"environment": keys["environment"][0], "character": keys["character"][0]}
    assert 0 <= document["ratio"] <= 1
    assert isinstance(document["draft"], bool)


def test_bad_missing_and_quota_errors_use_googles_envelope(sandbox: SandboxProcess) -> None:
    url = f"{sandbox.base('gemini')}/v1beta/models/{TEXT_MODEL}:generateContent"
    body = {"contents": [{"parts": [{"text": "hello"}]}]}
    bad = httpx.post(url, json=body, headers={"x-goog-api-key": "AIza-wrong"}).json()["error"]
    assert (bad["code"], bad["status"]) == (400, "INVALID_ARGUMENT")
    assert bad["details"][0]["reason"] == "API_KEY_INVALID"
    missing = httpx.post(url, json=body)
    assert (missing.status_code, missing.json()["error"]["status"]) == (403, "PERMISSION_DENIED")

    sandbox.fault(provider="gemini", status=429, count=1)
    r = _generate(sandbox, TEXT_MODEL, body)
    assert r.status_code == 429
    error = r.json()["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED"
    types = {d["@type"].rsplit(".", 1)[1]: d for d in error["details"]}
    assert "PerMinute" in types["QuotaFailure"]["violations"][0]["quotaId"]
    assert types["RetryInfo"]["retryDelay"].endswith("s")
    assert "retry-after" not in r.headers

    r = _generate(sandbox, TEXT_MODEL, {"contents": [{"parts": [{"text": "hello [sandbox:quota-day]"}]}]})
    assert r.status_code == 429
    assert "PerDay" in r.json()["error"]["details"][0]["violations"][0]["quotaId"]


@pytest.mark.parametrize(
    "body",
    [
        {"contents": []},
        {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"imageConfig": {"aspectRatio": "7"}}},
    ],
)
def test_invalid_requests_are_400_invalid_argument(sandbox: SandboxProcess, body: dict[str, Any]) -> None:
    r = _generate(sandbox, IMAGE_MODEL, body)
    assert r.status_code == 400
    assert r.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_unknown_model_is_404_not_found(sandbox: SandboxProcess) -> None:
    r = _generate(sandbox, "imagen-9", {"contents": [{"parts": [{"text": "x"}]}]})
    assert (r.status_code, r.json()["error"]["status"]) == (404, "NOT_FOUND")


def test_blocked_prompt_blocked_output_and_text_only_answers(sandbox: SandboxProcess) -> None:
    blocked = _generate(sandbox, IMAGE_MODEL, _image_request("a heron [sandbox:block-prompt]")).json()
    assert "candidates" not in blocked
    assert blocked["promptFeedback"]["blockReason"] == "SAFETY"

    unsafe = _generate(sandbox, IMAGE_MODEL, _image_request("a heron [sandbox:block-output]")).json()
    assert unsafe["candidates"][0]["finishReason"] == "IMAGE_SAFETY"
    assert "content" not in unsafe["candidates"][0]

    text_only = _generate(sandbox, IMAGE_MODEL, _image_request("a heron [sandbox:text-only]")).json()
    candidate = text_only["candidates"][0]
    assert candidate["finishReason"] == "STOP"
    assert all("inlineData" not in p for p in candidate["content"]["parts"])


def test_calls_are_logged_as_billable_with_the_trace(sandbox: SandboxProcess) -> None:
    before = len(sandbox.calls("gemini"))
    trace = {"X-Pipeline-Trace": "generate_asset/asset_heron"}
    assert _generate(sandbox, IMAGE_MODEL, _image_request("a heron in reeds"), trace).status_code == 200
    calls = sandbox.calls("gemini")[before:]
    assert len(calls) == 1
    call = calls[0]
    assert (call["client"], call["item"], call["status"]) == ("generate_asset", "asset_heron", 200)
    assert call["identity"]
    assert call["finished"] >= call["started"]
    assert call["usage"] == {**call["usage"], "model": IMAGE_MODEL, "images": 1, "output_tokens": 1290}


def test_cheap_media_mode_draws_tiny_pictures(fresh_sandbox: SandboxProcess) -> None:
    fresh_sandbox.configure(cheap_media=True, gemini_image_seconds=0)
    r = _generate(fresh_sandbox, IMAGE_MODEL, _image_request("A heron at dawn"))
    assert _png(r.json()).size == (160, 90)
    assert r.json()["usageMetadata"]["candidatesTokenCount"] == 1290  # billed as a full image
