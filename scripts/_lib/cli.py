"""The frame every script runs in: parse arguments, run, print the result or the error, exit."""

from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from scripts._lib.errors import EXIT_OK, EXIT_PERMANENT, EXIT_TRANSIENT, ScriptError, usage
from scripts._lib.output import emit_error, emit_result
from scripts._lib.parent import die_with_parent


@dataclass
class Result:
    output: str
    cost_usd: float
    provider: str
    meta: dict[str, Any] = field(default_factory=dict)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports its errors as a usage error line too (exit 2), for the daemon's parser."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        raise usage(f"{self.prog}: {message}")


def run(
    parser: argparse.ArgumentParser,
    body: Callable[[argparse.Namespace], Result],
    argv: Sequence[str] | None,
    *,
    before: Callable[[], object] | None = None,
) -> int:
    """Runs one script; every failure ends as one error line and its exit code, never a traceback.
    `before` runs once the arguments are read and before the body (the price table, for the scripts
    that pay: a broken one stops them before their call, not after)."""
    die_with_parent()
    try:
        args = parser.parse_args(argv)
        if before is not None:
            before()
        result = body(args)
    except ScriptError as exc:
        emit_error(exc)
        return exc.exit_code
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            # A full disk frees up; outputs are written atomically, so nothing half-written stays.
            emit_error(
                ScriptError("transient", "The disk is full; free some space and it goes on by itself.")
            )
            return EXIT_TRANSIENT
        # A bug or an unexpected local failure: retrying will not fix it.
        traceback.print_exc(file=sys.stderr)
        emit_error(ScriptError("permanent", f"Unexpected failure: {type(exc).__name__}: {exc}"))
        return EXIT_PERMANENT
    emit_result(os.path.abspath(result.output), result.cost_usd, result.provider, result.meta)
    return EXIT_OK


def positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def bounded_float(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}, got {text}")
        return value

    parse.__name__ = "number"
    return parse
