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
# LOG_LEVEL's names (daemon/settings.py).
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


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
    """Writes to the given stream, or to sys.stderr as it is at each record (like logging's last
    resort), and marks the handler `configure` installs, so that configuring again replaces it."""

    def __init__(self, stream: TextIO | None) -> None:
        super().__init__(stream or sys.stderr)
        self.fixed = stream

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = self.fixed or sys.stderr
        super().emit(record)


class _StreamLogger:
    """structlog's output: one line to the given stream, or to sys.stderr as it is at each event,
    not as it was when logging was configured (a stream replaced since, and closed, would fail
    every later event)."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream

    def msg(self, message: str) -> None:
        print(message, file=self.stream or sys.stderr, flush=True)

    log = debug = info = warn = warning = err = error = critical = exception = fatal = msg


def level_number(level: int | str) -> int:
    """A level as logging numbers it, from its name (debug, info, warning, error) or its number."""
    return level if isinstance(level, int) else LEVELS[level.lower()]


def configure(
    secrets: Iterable[str],
    *,
    json_lines: bool = True,
    level: int | str = logging.INFO,
    stream: TextIO | None = None,
) -> None:
    """Events at `level` and up (libraries' from WARNING up), as JSON lines or a person's console
    lines, every secret redacted; to `stream` (the demo's log file), else to stderr."""
    redactor = Redactor(secrets)
    threshold = level_number(level)
    # APScheduler reports every coalesced run at WARNING; skipped overlapping runs are by design here.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    colours = (stream or sys.stderr).isatty()  # no escape codes in a file or a journal
    renderer: Any = (
        structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer(colors=colours)
    )
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
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=lambda *_args: _StreamLogger(stream),
        cache_logger_on_first_use=False,
    )
    # Libraries log through the standard library: notion-client's "request fail" line quotes Notion's
    # error message, which may quote what was refused. Those records pass the same redactor.
    handler = _LibraryHandler(stream)
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
    # Loggers that set their own level (notion-client's, at WARNING) still pass this handler's.
    handler.setLevel(max(logging.WARNING, threshold))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _LibraryHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(logging.WARNING, threshold))


def get_logger(**bound: Any) -> Any:
    return structlog.get_logger().bind(**bound)
