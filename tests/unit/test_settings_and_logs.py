"""Settings read from the environment, database URLs as hosts hand them out, secrets never logged."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from daemon import logs
from daemon.envfile import load_env_file
from daemon.settings import Settings, normalise_database_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            "postgres://u:p@db.railway.internal:5432/railway",
            "postgresql+asyncpg://u:p@db.railway.internal:5432/railway",
        ),
        ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("sqlite:////data/daemon.db", "sqlite+aiosqlite:////data/daemon.db"),
    ],
)
def test_database_urls_as_hosts_hand_them_out_are_accepted(given: str, expected: str) -> None:
    assert normalise_database_url(given, Path("/ws")) == expected


def test_sqlite_in_the_workspace_is_the_default(tmp_path: Path) -> None:
    assert normalise_database_url(None, tmp_path) == f"sqlite+aiosqlite:///{tmp_path / 'daemon.db'}"


def test_settings_come_from_the_environment_and_env_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / "daemon.env"
    env_file.write_text("# comment\nKLING_BASE_URL=http://127.0.0.1:9/kling\nLEASE_TTL_S=45\n")
    monkeypatch.setenv("LEASE_TTL_S", "12")  # the environment wins over the file
    monkeypatch.delenv("KLING_BASE_URL", raising=False)
    load_env_file(env_file)
    settings = Settings()
    assert settings.kling_base_url == "http://127.0.0.1:9/kling"
    assert settings.lease_ttl_s == 12


def test_a_bad_timing_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEASE_TTL_S", "0")
    with pytest.raises(ValueError, match="must be a positive number of seconds"):
        Settings()


@pytest.fixture
def _restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()


@pytest.mark.usefixtures("_restore_logging")
def test_secrets_are_redacted_from_every_log_line() -> None:
    out = io.StringIO()
    logs.configure(["sk_live_SECRET_12345", "AIzaRecognisableKey"])
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=out))
    log = logs.get_logger(task=1)
    log.info(
        "script_failed",
        reason="401 for key sk_live_SECRET_12345",
        api_key="anything",
        nested={"headers": {"x-goog-api-key": "AIzaRecognisableKey"}, "url": "?key=AIzaRecognisableKey"},
    )
    try:
        raise RuntimeError("boom with AIzaRecognisableKey inside")
    except RuntimeError:
        log.exception("crashed")
    text = out.getvalue()
    assert "SECRET_12345" not in text
    assert "AIzaRecognisableKey" not in text
    first = json.loads(text.splitlines()[0])
    assert first["reason"] == "401 for key [redacted]"
    assert first["api_key"] == "[redacted]"
    assert first["nested"]["headers"]["x-goog-api-key"] == "[redacted]"
    assert first["task"] == 1


@pytest.mark.usefixtures("_restore_logging")
def test_library_log_lines_are_redacted_too(capsys: pytest.CaptureFixture[str]) -> None:
    """Regression: notion-client logs Notion's error message through the standard library
    ("request fail: ... message=..."), which bypassed the redactor and reached stderr as it was."""
    logs.configure(["ntn_RecognisableToken123"])
    logging.getLogger("daemon.notion.client").warning(
        "request fail: code=%s, message=%s", "unauthorized", "token ntn_RecognisableToken123 is invalid"
    )
    logging.getLogger("some.library").info("chatter below WARNING stays out")
    err = capsys.readouterr().err
    assert "RecognisableToken123" not in err
    line = json.loads(err.strip().splitlines()[-1])
    assert line["event"] == "request fail: code=unauthorized, message=token [redacted] is invalid"
    assert (line["level"], line["logger"]) == ("warning", "daemon.notion.client")
    assert "chatter" not in err
    logs.configure(["ntn_RecognisableToken123"])  # configuring again replaces the handler, not adds one
    logging.getLogger("x").warning("once")
    assert capsys.readouterr().err.count('"once"') == 1


@pytest.mark.usefixtures("_restore_logging")
def test_log_lines_go_to_stderr_as_it_is_at_each_event(monkeypatch: pytest.MonkeyPatch) -> None:
    """Configured while one stream was stderr, then that stream closed and replaced (the CLI run
    in-process by a test, a supervisor reopening its log): lines go to the new one, none is lost."""
    first = io.StringIO()
    monkeypatch.setattr("sys.stderr", first)
    logs.configure([])
    first.close()
    second = io.StringIO()
    monkeypatch.setattr("sys.stderr", second)
    logs.get_logger(daemon="d1").warning("heartbeat_failed", error="db down")
    line = json.loads(second.getvalue().splitlines()[-1])
    assert line["event"] == "heartbeat_failed" and line["daemon"] == "d1"
