"""The one exception the scripts raise, and the exit code each kind of failure maps to."""

from __future__ import annotations

from typing import Literal

Kind = Literal["transient", "permanent", "usage"]

# The script contract: 75 (EX_TEMPFAIL) asks the daemon to retry later, 1 fails the item for good,
# 2 is a caller's mistake (the same as argparse's own exit code).
EXIT_OK = 0
EXIT_PERMANENT = 1
EXIT_USAGE = 2
EXIT_TRANSIENT = 75

EXIT_CODES: dict[Kind, int] = {"transient": EXIT_TRANSIENT, "permanent": EXIT_PERMANENT, "usage": EXIT_USAGE}

ProviderCode = str | int | None

# What an operator does about a refused key: the daemon reads its settings once, at start.
KEY_FIX = "put the right key in {} in the daemon's settings, restart the daemon, then requeue."


class ScriptError(Exception):
    """A failure with its kind, an operator-facing message (what happened + what to do) and the
    provider's own error code when there is one."""

    def __init__(
        self, kind: Kind, message: str, provider_code: ProviderCode = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.kind: Kind = kind
        self.message = message
        self.provider_code = provider_code
        # The provider's own hint of when to try again, passed on to the daemon's backoff.
        self.retry_after_s = retry_after_s

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.kind]


def transient(message: str, provider_code: ProviderCode = None) -> ScriptError:
    return ScriptError("transient", message, provider_code)


def permanent(message: str, provider_code: ProviderCode = None) -> ScriptError:
    return ScriptError("permanent", message, provider_code)


def usage(message: str) -> ScriptError:
    return ScriptError("usage", message)


def by_http_status(status: int, what: str, provider_code: ProviderCode = None) -> ScriptError:
    """Fallback when a provider's own code says nothing we know: rate limits, timeouts and server
    faults pass with time; any other 4xx will fail the same way again."""
    if status in (408, 409, 425, 429) or status >= 500:
        return transient(f"{what} (HTTP {status}); it usually passes, retry later.", provider_code)
    if status in (401, 403):
        return permanent(f"{what} (HTTP {status}): the key was refused; check it.", provider_code)
    if status in (404, 405):
        return permanent(
            f"{what} (HTTP {status}): no such endpoint or resource; check the provider's base URL setting "
            "and the inputs.",
            provider_code,
        )
    return permanent(f"{what} (HTTP {status}): the request was refused; check the inputs.", provider_code)
