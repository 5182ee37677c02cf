"""LOG_LEVEL and LOG_FORMAT: read and checked as settings, and obeyed by the log set-up, with every
secret still redacted in a person's console lines."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from pydantic import ValidationError

from daemon import logs
from daemon.settings import Settings


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    for handler in list(logging.getLogger().handlers):
        if type(handler).__name__ == "_LibraryHandler":
            logging.getLogger().removeHandler(handler)


def test_log_level_and_format_are_read_in_any_case_and_json_is_the_default_off_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    monkeypatch.setenv("LOG_FORMAT", "Console")
    settings = Settings()
    assert (settings.log_level, settings.log_format) == ("warning", "console")
    assert settings.log_json(terminal=False) is False  # console, even into a file
    monkeypatch.setenv("LOG_FORMAT", "json")
    assert Settings().log_json(terminal=True) is True
    monkeypatch.delenv("LOG_LEVEL")
    monkeypatch.delenv("LOG_FORMAT")
    unset = Settings()
    assert unset.log_level == "info"
    assert (unset.log_json(terminal=False), unset.log_json(terminal=True)) == (True, False)


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("LOG_LEVEL", "verbose", "'verbose' is not a log level; use one of debug, info, warning, error"),
        ("LOG_FORMAT", "xml", "'xml' is not a log format; use json or console"),
    ],
)
def test_a_bad_log_setting_is_named_with_what_it_may_be(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, said: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    (error,) = caught.value.errors()
    assert error["loc"] == (variable.lower(),)
    assert said in error["msg"]


def test_warning_hides_info_events_and_console_lines_stay_redacted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure(["sk_live_RecognisableSecret42"], json_lines=False, level="warning")
    log = logs.get_logger(daemon="d1")
    log.info("daemon_started", channels=["nature"])
    log.warning("provider_refused", reason="401 for key sk_live_RecognisableSecret42", api_key="anything")
    logging.getLogger("daemon.notion.client").warning("request fail: token sk_live_RecognisableSecret42")
    err = capsys.readouterr().err
    assert "daemon_started" not in err
    assert "RecognisableSecret42" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 2
    for line in lines:
        assert not line.lstrip().startswith("{")  # a person's line, not JSON
    assert "provider_refused" in lines[0] and "[redacted]" in lines[0] and "warning" in lines[0]
    assert "request fail: token [redacted]" in lines[1]


def test_error_hides_library_warnings_too_and_debug_shows_debug_events(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure([], level="error")
    logs.get_logger().warning("heartbeat_slow")
    logging.getLogger("daemon.notion.client").warning("request fail")  # its own level is WARNING
    logs.get_logger().error("heartbeat_failed")
    err = capsys.readouterr().err
    assert [json.loads(line)["event"] for line in err.splitlines()] == ["heartbeat_failed"]
    logs.configure([], level="debug")
    logs.get_logger().debug("claim_looked")
    assert json.loads(capsys.readouterr().err)["event"] == "claim_looked"


def test_the_log_can_go_to_a_file_instead_of_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    logs.configure(["sk_live_RecognisableSecret42"], stream=out)
    logs.get_logger().info("daemon_started", note="sk_live_RecognisableSecret42")
    logging.getLogger("notion_client").warning("request fail")
    assert capsys.readouterr().err == ""
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["daemon_started", "request fail"]
    assert events[0]["note"] == "[redacted]"
