"""Gemini answers: images, text, blocks and text-only answers, through the real scripts' main()."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from scripts import generate_asset, generate_storyboard
from scripts._lib import gemini


def _png(size: tuple[int, int] = (64, 36)) -> str:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 100, 50)).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def _image_answer(data: str, snake: bool = False) -> dict[str, Any]:
    inline = {"mime_type": "image/png", "data": data} if snake else {"mimeType": "image/png", "data": data}
    key = "inline_data" if snake else "inlineData"
    return {
        "candidates": [{"content": {"role": "model", "parts": [{key: inline}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 17, "candidatesTokenCount": 1290, "totalTokenCount": 1307},
    }


def _text_answer(text: str, finish: str = "STOP") -> dict[str, Any]:
    return {
        "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": finish}],
        "usageMetadata": {"promptTokenCount": 300, "candidatesTokenCount": 900, "thoughtsTokenCount": 100},
    }


Requests = list[httpx.Request]


@pytest.fixture
def fake_gemini(monkeypatch: pytest.MonkeyPatch) -> Callable[[int, dict[str, Any]], Requests]:
    """Answers every generateContent with the given status and body; returns the requests seen."""

    def install(status: int, answer: dict[str, Any]) -> Requests:
        seen: Requests = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(status, json=answer)

        monkeypatch.setenv("GEMINI_API_KEY", "AIza-test-key-0123456789")
        real = gemini.client_from_env
        monkeypatch.setattr(gemini, "client_from_env", lambda: real(transport=httpx.MockTransport(handler)))
        return seen

    return install


def _run_asset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], prompt: str = "a heron"
) -> tuple[int, dict[str, Any]]:
    code = generate_asset.main(["--prompt", prompt, "--output", str(tmp_path / "a.png")])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return code, lines[-1]


def test_asset_is_written_as_png_with_its_cost(
    fake_gemini: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = fake_gemini(200, _image_answer(_png()))
    code, line = _run_asset(tmp_path, capsys)
    assert code == 0
    assert line["cost_usd"] == pytest.approx((17 * 0.30 + 1290 * 30) / 1e6, abs=1e-6)
    assert (line["meta"]["width"], line["meta"]["height"]) == (64, 36)
    with Image.open(tmp_path / "a.png") as written:
        assert written.format == "PNG"
    request = seen[0]
    assert request.url.path == "/v1beta/models/gemini-2.5-flash-image:generateContent"
    assert request.headers["x-goog-api-key"] == "AIza-test-key-0123456789"
    config = json.loads(request.content)["generationConfig"]
    assert config == {"responseModalities": ["IMAGE"], "imageConfig": {"aspectRatio": "16:9"}}


def test_snake_case_answers_are_understood(
    fake_gemini: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_gemini(200, _image_answer(_png(), snake=True))
    assert _run_asset(tmp_path, capsys)[0] == 0


@pytest.mark.parametrize(
    ("answer", "exit_code", "code"),
    [
        ({"promptFeedback": {"blockReason": "SAFETY"}}, 1, "SAFETY"),
        ({"candidates": [{"finishReason": "IMAGE_SAFETY"}]}, 1, "IMAGE_SAFETY"),
        ({"candidates": [{"finishReason": "NO_IMAGE"}]}, 1, "NO_IMAGE"),
        (_text_answer("I can't draw that, but here is a poem"), 75, "no_image"),
        ({"candidates": []}, 75, "no_candidates"),
        (_image_answer(base64.b64encode(b"not an image").decode()), 75, "bad_image"),
    ],
)
def test_asset_failures(
    fake_gemini: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    answer: dict[str, Any],
    exit_code: int,
    code: str,
) -> None:
    fake_gemini(200, answer)
    got, line = _run_asset(tmp_path, capsys)
    assert (got, line["event"], line["provider_code"]) == (exit_code, "error", code)
    assert not (tmp_path / "a.png").exists()


def test_blocked_prompt_tells_to_reword(
    fake_gemini: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_gemini(200, {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}})
    assert "reword" in _run_asset(tmp_path, capsys)[1]["message"]


def test_http_errors_map_to_exit_codes(
    fake_gemini: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_gemini(503, {"error": {"code": 503, "status": "UNAVAILABLE", "message": "overloaded"}})
    assert _run_asset(tmp_path, capsys)[0] == 75


def test_missing_key_is_exit_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    code, line = _run_asset(tmp_path, capsys)
    assert code == 2
    assert "GEMINI_API_KEY" in line["message"]


def _scenes(n: int) -> list[dict[str, str]]:
    return [
        {
            "environment": f"place {i}",
            "character": "",
            "motion": "pan",
            "narration": f"line {i}",
            "sfx": "wind",
        }
        for i in range(n)
    ]


def _run_storyboard(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    args = [
        "--title",
        "T",
        "--topic",
        "owls",
        "--direction",
        "calm",
        "--scenes",
        "2",
        "--output",
        str(tmp_path / "s.json"),
    ]
    code = generate_storyboard.main(args)
    return code, json.loads(capsys.readouterr().out.splitlines()[-1])


def test_storyboard_written_from_the_answer(
    fake_gemini: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = fake_gemini(
        200, _text_answer(json.dumps({"title": "Owls", "atmosphere": "night", "scenes": _scenes(2)}))
    )
    code, line = _run_storyboard(tmp_path, capsys)
    assert code == 0
    board = json.loads((tmp_path / "s.json").read_text())
    assert [s["key"] for s in board["scenes"]] == ["s01", "s02"]
    assert line["meta"]["output_tokens"] == 1000  # thinking tokens are billed as output
    config = json.loads(seen[0].content)["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseSchema"]["properties"]["scenes"]["maxItems"] == 2


@pytest.mark.parametrize(
    "answer",
    [
        _text_answer(json.dumps({"title": "Owls", "atmosphere": "night", "scenes": _scenes(3)})),
        _text_answer("not json at all"),
        _text_answer('{"title": "Owls", "scenes": [', finish="MAX_TOKENS"),
    ],
)
def test_unusable_storyboard_answers_are_transient(
    fake_gemini: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], answer: dict[str, Any]
) -> None:
    fake_gemini(200, answer)
    code, line = _run_storyboard(tmp_path, capsys)
    assert (code, line["provider_code"]) == (75, "invalid_answer")
    assert not (tmp_path / "s.json").exists()


def test_blocked_storyboard_prompt_is_permanent(
    fake_gemini: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_gemini(200, {"promptFeedback": {"blockReason": "SAFETY"}})
    assert _run_storyboard(tmp_path, capsys)[0] == 1
