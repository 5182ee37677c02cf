"""structlog set-up: JSON events with bound ids, and a processor that redacts every secret."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

_SECRET_NAMES = re.compile(r"(key|token|secret|password|authorization|auth)$", re.IGNORECASE)
REDACTED = "[redacted]"


class Redactor:
    """Removes secret values wherever they appear, and values of fields named like secrets."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self.secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {k: REDACTED if _SECRET_NAMES.search(str(k)) else self.scrub(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.scrub(v) for v in value)
        return value

    def __call__(self, _logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key in list(event):
            event[key] = REDACTED if _SECRET_NAMES.search(key) else self.scrub(event[key])
        return event


class _LibraryHandler(logging.StreamHandler[TextIO]):
    """Writes to sys.stderr as it is at each record (like logging's last resort), and marks the
    handler `configure` installs, so that configuring again replaces it."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


class _StderrLogger:
    """structlog's output: one line to sys.stderr as it is at each event, not as it was when logging
    was configured (a stream replaced since, and closed, would fail every later event)."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = err = error = critical = exception = fatal = msg


def _stderr_logger(*_args: Any) -> _StderrLogger:
    return _StderrLogger()


def configure(secrets: Iterable[str], *, json_lines: bool = True, level: int = logging.INFO) -> None:
    redactor = Redactor(secrets)
    # APScheduler reports every coalesced run at WARNING; skipped overlapping runs are by design here.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    renderer: Any = structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer()
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            stamp,
            structlog.processors.format_exc_info,
            redactor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    # Libraries log through the standard library: notion-client's "request fail" line quotes Notion's
    # error message, which may quote what was refused. Those records pass the same redactor.
    handler = _LibraryHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, structlog.processors.add_log_level, stamp],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redactor,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _LibraryHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


def get_logger(**bound: Any) -> Any:
    return structlog.get_logger().bind(**bound)
