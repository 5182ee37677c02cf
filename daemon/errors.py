"""The daemon's exceptions: the class says what went wrong, the message what to do about it."""

from __future__ import annotations


class DaemonError(Exception):
    """Base of every error the daemon raises on purpose."""


class ConfigError(DaemonError):
    """Settings or a channel file are wrong; start-up stops with the file, field and fix."""


class TryLater(DaemonError):
    """Start-up cannot go on now but may later with nothing changed; the message names the setting
    and the fix. The process exits with 75 (EX_TEMPFAIL), so a supervisor restarts it."""


class ServiceUnreachable(TryLater):
    """The database or Notion cannot be reached at start-up; the message names the address and the
    setting."""


class PortInUse(TryLater):
    """The HTTP listener's port is taken by another program, which may let it go (a previous daemon
    still stopping); another daemon on the host keeps it, and then the setting is the fix."""


class SchemaNotMigrated(DaemonError):
    """The database schema is missing or behind the code."""


class PlanError(DaemonError):
    """A task cannot be planned (bad storyboard, unknown channel)."""
