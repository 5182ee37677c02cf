"""The daemon's exceptions: the class says what went wrong, the message what to do about it."""

from __future__ import annotations


class DaemonError(Exception):
    """Base of every error the daemon raises on purpose."""


class ConfigError(DaemonError):
    """Settings or a channel file are wrong; start-up stops with the file, field and fix."""


class ServiceUnreachable(DaemonError):
    """The database or Notion cannot be reached at start-up; the message names the address and the
    setting. Trying again later may work (the process exits with 75, so a supervisor restarts it)."""


class SchemaNotMigrated(DaemonError):
    """The database schema is missing or behind the code."""


class PlanError(DaemonError):
    """A task cannot be planned (bad storyboard, unknown channel)."""
