"""Every provider error class ends in the right kind (and so exit code), with words for the operator."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from scripts._lib import elevenlabs, env, gemini, kling
from scripts._lib.cli import ArgumentParser, Result, run
from scripts._lib.errors import ScriptError, by_http_status, transient
from scripts._lib.http import make_client, send
from scripts._lib.output import redact


def _gemini_error(code: int, status: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "status": status, "message": "m", "details": details or []}}


def _quota(quota_id: str) -> list[dict[str, Any]]:
    return [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaId": quota_id}]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "34s"},
    ]


@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (
            429,
            _gemini_error(429, "RESOURCE_EXHAUSTED", _quota("GenerateRequestsPerMinutePerProjectPerModel")),
            "transient",
            "GenerateRequestsPerMinutePerProjectPerModel",
        ),
        (
            429,
            _gemini_error(
                429, "RESOURCE_EXHAUSTED", _quota("GenerateRequestsPerDayPerProjectPerModel-FreeTier")
            ),
            "permanent",
            "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
        ),
        (429, _gemini_error(429, "RESOURCE_EXHAUSTED"), "transient", "RESOURCE_EXHAUSTED"),
        (
            400,
            _gemini_error(
                400,
                "INVALID_ARGUMENT",
                [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}],
            ),
            "permanent",
            "API_KEY_INVALID",
        ),
        (403, _gemini_error(403, "PERMISSION_DENIED"), "permanent", "PERMISSION_DENIED"),
        (400, _gemini_error(400, "INVALID_ARGUMENT"), "permanent", "INVALID_ARGUMENT"),
        (404, _gemini_error(404, "NOT_FOUND"), "permanent", "NOT_FOUND"),
        (500, _gemini_error(500, "INTERNAL"), "transient", "INTERNAL"),
        (503, _gemini_error(503, "UNAVAILABLE"), "transient", "UNAVAILABLE"),
        (504, _gemini_error(504, "DEADLINE_EXCEEDED"), "transient", "DEADLINE_EXCEEDED"),
        (502, {}, "transient", 502),
    ],
)
def test_gemini_errors(status: int, body: dict[str, Any], kind: str, code: object) -> None:
    error = gemini.classify_error(status, body)
    assert (error.kind, error.provider_code) == (kind, code)


def test_gemini_daily_quota_tells_when_it_comes_back() -> None:
    error = gemini.classify_error(429, _gemini_error(429, "RESOURCE_EXHAUSTED", _quota("X-PerDay-FreeTier")))
    assert "midnight Pacific" in error.message


def test_gemini_rate_limit_passes_on_the_delay_hint() -> None:
    error = gemini.classify_error(429, _gemini_error(429, "RESOURCE_EXHAUSTED", _quota("PerMinute")))
    assert "34s" in error.message


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (401, 1000, "permanent"),
        (401, 1004, "permanent"),
        (429, 1100, "permanent"),
        (429, 1101, "permanent"),
        (429, 1102, "permanent"),
        (403, 1103, "permanent"),
        (400, 1200, "permanent"),
        (400, 1201, "permanent"),
        (400, 1300, "permanent"),
        (400, 1301, "permanent"),
        (429, 1302, "transient"),
        (429, 1303, "transient"),
        (429, 1304, "permanent"),
        (500, 5000, "transient"),
        (503, 5001, "transient"),
        (504, 5002, "transient"),
        (502, None, "transient"),
        (418, None, "permanent"),
    ],
)
def test_kling_errors(status: int, code: int | None, kind: str) -> None:
    body = {} if code is None else {"code": code, "message": "x", "request_id": "r"}
    error = kling.classify_error(status, body)
    assert error.kind == kind
    assert error.provider_code == code


def test_kling_money_errors_say_to_top_up() -> None:
    assert "top up" in kling.classify_error(429, {"code": 1102, "message": "pack depleted"}).message


@pytest.mark.parametrize(
    ("status", "detail", "kind", "code"),
    [
        (401, {"status": "quota_exceeded", "message": "m"}, "permanent", "quota_exceeded"),
        (401, {"status": "invalid_api_key", "message": "m"}, "permanent", "invalid_api_key"),
        (400, {"status": "voice_not_found", "message": "m"}, "permanent", "voice_not_found"),
        (
            400,
            {"status": "max_character_limit_exceeded", "message": "m"},
            "permanent",
            "max_character_limit_exceeded",
        ),
        (
            429,
            {"status": "too_many_concurrent_requests", "message": "m"},
            "transient",
            "too_many_concurrent_requests",
        ),
        (429, {"status": "system_busy", "message": "m"}, "transient", "system_busy"),
        (422, [{"loc": ["body", "text"], "msg": "field required"}], "permanent", "validation_error"),
        (500, "oops", "transient", 500),
        (503, None, "transient", 503),
    ],
)
def test_elevenlabs_errors(status: int, detail: object, kind: str, code: object) -> None:
    body = {} if detail is None else {"detail": detail}
    error = elevenlabs.classify_error(status, body)
    assert (error.kind, error.provider_code) == (kind, code)


def test_unknown_voice_names_the_setting_to_fix() -> None:
    error = elevenlabs.classify_error(400, {"detail": {"status": "voice_not_found", "message": "m"}})
    assert "voice_id" in error.message


@pytest.mark.parametrize(
    ("status", "kind"),
    [(408, "transient"), (429, "transient"), (500, "transient"), (401, "permanent"), (404, "permanent")],
)
def test_http_status_fallback(status: int, kind: str) -> None:
    assert by_http_status(status, "x").kind == kind


@pytest.mark.parametrize(
    "exc", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("eof")]
)
def test_transport_failures_are_transient(exc: Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    with (
        make_client("http://provider", transport=httpx.MockTransport(handler)) as client,
        pytest.raises(ScriptError) as info,
    ):
        send(client, "Kling", "GET", "/x")
    assert info.value.kind == "transient"
    assert info.value.exit_code == 75


def test_trace_is_forwarded_as_a_header(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("X-Pipeline-Trace"))
        return httpx.Response(200)

    monkeypatch.setenv("PIPELINE_TRACE", "daemon/clip_s07")
    with make_client("http://provider", transport=httpx.MockTransport(handler)) as client:
        send(client, "Kling", "GET", "/x")
    assert seen == ["daemon/clip_s07"]


def _script() -> ArgumentParser:
    parser = ArgumentParser(prog="t.py")
    parser.add_argument("--n", type=int, required=True)
    return parser


def _lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def test_run_prints_one_result_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(_script(), lambda a: Result("out.png", 0.0390004, "gemini", {"n": a.n}), ["--n", "3"]) == 0
    (line,) = _lines(capsys.readouterr().out)
    assert line["event"] == "result"
    assert line["output"].endswith("out.png")
    assert line["cost_usd"] == 0.039
    assert line["meta"] == {"n": 3}


@pytest.mark.parametrize(
    ("error", "exit_code"), [(transient("busy", 1303), 75), (ScriptError("permanent", "no"), 1)]
)
def test_run_maps_errors_to_exit_codes(
    error: ScriptError, exit_code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    def body(args: Any) -> Result:
        raise error

    assert run(_script(), body, ["--n", "1"]) == exit_code
    (line,) = _lines(capsys.readouterr().out)
    assert line == {
        "event": "error",
        "kind": error.kind,
        "message": error.message,
        "provider_code": error.provider_code,
    }


def test_argparse_errors_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(_script(), lambda a: Result("x", 0, "local"), ["--n", "many"]) == 2
    (line,) = _lines(capsys.readouterr().out)
    assert line["kind"] == "usage"
    assert "--n" in line["message"]


def test_a_bug_is_permanent_not_a_traceback_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    def body(args: Any) -> Result:
        raise KeyError("boom")

    assert run(_script(), body, ["--n", "1"]) == 1
    captured = capsys.readouterr()
    (line,) = _lines(captured.out)
    assert line["kind"] == "permanent"
    assert "Traceback" in captured.err


def test_missing_key_is_a_usage_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KLING_SECRET_KEY", raising=False)
    with pytest.raises(ScriptError) as info:
        env.require("KLING_SECRET_KEY")
    assert info.value.exit_code == 2
    assert "KLING_SECRET_KEY" in info.value.message


def test_keys_never_reach_stdout() -> None:
    secret = "sk_0123456789abcdef"
    text = redact(f"refused key {secret}", {"ELEVENLABS_API_KEY": secret})
    assert secret not in text
    assert "<ELEVENLABS_API_KEY>" in text


def test_a_refused_key_names_its_setting_and_says_to_restart_and_requeue() -> None:
    """Regression: 'check GEMINI_API_KEY' left out that the daemon reads its settings only at start
    and that the page must be queued again; Kling blamed keys and clock alike for every auth code."""
    restart = "in the daemon's settings, restart the daemon, then requeue."
    key = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]
    assert gemini.classify_error(400, _gemini_error(400, "INVALID_ARGUMENT", key)).message.startswith(
        f"Gemini refused the API key (API_KEY_INVALID): put the right key in GEMINI_API_KEY {restart}"
    )
    detail = {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}
    assert elevenlabs.classify_error(401, detail).message.startswith(
        f"ElevenLabs refused the API key (invalid_api_key): put the right key in ELEVENLABS_API_KEY {restart}"
    )
    refused = kling.classify_error(401, {"code": 1002, "message": "Authorization is invalid"})
    assert refused.message.startswith(
        "Kling refused the credentials (code 1002): put the right key in KLING_ACCESS_KEY and "
        f"KLING_SECRET_KEY (a pair from one account) {restart}"
    )
    expired = kling.classify_error(401, {"code": 1004, "message": "Authorization has expired"})
    assert (expired.kind, expired.provider_code) == ("permanent", 1004)
    assert expired.message.startswith(
        "Kling refused the token's time (code 1004): this machine's clock is off"
    )


def test_geminis_retry_delay_is_passed_on_as_a_hint_for_the_daemons_backoff() -> None:
    from scripts._lib import gemini

    details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "34s"}]
    error = gemini._quota_error("Please retry in 34.2s.", details, 429)
    assert error.kind == "transient"
    assert error.retry_after_s == 34.0
