"""What a check found, and how `doctor` prints it: one line per check, a fix under each failure,
every secret redacted, each check held to its time limit."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TextIO

from daemon.errors import DaemonError
from daemon.logs import Redactor

NAME_WIDTH = 18


class Outcome(StrEnum):
    OK = "OK"
    WARN = "WARN"  # works, with something the operator should know
    FAIL = "FAIL"  # will not work: the line under it says what to do
    SKIP = "SKIP"  # not needed by this configuration, or not checkable until an earlier failure is fixed


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    name: str
    detail: str
    fix: str = ""


def ok(name: str, detail: str) -> Result:
    return Result(Outcome.OK, name, detail)


def warn(name: str, detail: str, fix: str = "") -> Result:
    return Result(Outcome.WARN, name, detail, fix)


def fail(name: str, detail: str, fix: str) -> Result:
    return Result(Outcome.FAIL, name, detail, fix)


def skip(name: str, detail: str) -> Result:
    return Result(Outcome.SKIP, name, detail)


def failed(name: str, error: DaemonError, fix: str = "") -> Result:
    """A failure from one of the daemon's own errors, whose message says the problem, then the fix
    (after "; " or on the lines below); `fix` when the message has none."""
    detail, said = split_fix(str(error))
    return fail(name, detail, said or fix or "correct what the message names, then run doctor again")


def split_fix(message: str) -> tuple[str, str]:
    """(problem, fix) of a message written as "problem; what to do" or "problem:\\n  item\\n  item";
    the fix is empty when the message does not give one."""
    first, _, rest = message.partition("\n")
    if rest.strip():
        return first.rstrip(":"), "; ".join(line.strip() for line in rest.splitlines() if line.strip())
    depth = 0
    for i, char in enumerate(message):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and message.startswith("; ", i):
            return message[:i], message[i + 2 :]
    return message, ""


async def limited(
    name: str, check: Awaitable[list[Result]], timeout: float, where: str, fix: str
) -> list[Result]:
    """The check's lines, or one failure when it takes longer than `timeout` seconds (`where` names
    what did not answer). A check that breaks fails its own line, never the others."""
    try:
        return await asyncio.wait_for(check, timeout)
    except TimeoutError:
        return [fail(name, f"no answer within {timeout:g} s from {where}", fix)]
    except DaemonError as exc:
        return [failed(name, exc, fix)]
    except Exception as exc:  # one broken check must not hide the others' lines
        return [fail(name, f"the check itself failed ({type(exc).__name__}: {exc})", fix)]


class Printer:
    """Writes the lines as they come, secrets redacted; counts what failed."""

    def __init__(self, out: TextIO, secrets: Iterable[str] = ()) -> None:
        self.out = out
        self.redactor = Redactor(secrets)
        self.results: list[Result] = []
        colour = out.isatty() and not os.environ.get("NO_COLOR")
        self.colours = {Outcome.OK: 32, Outcome.WARN: 33, Outcome.FAIL: 31, Outcome.SKIP: 2} if colour else {}

    def secrets(self, values: Sequence[str]) -> None:
        """More values never to print (a refresh token once it is decrypted)."""
        self.redactor = Redactor([*self.redactor.secrets, *values])

    def show(self, results: Iterable[Result]) -> None:
        for result in results:
            self.results.append(result)
            word = result.outcome.value.ljust(4)
            if result.outcome in self.colours:
                word = f"\033[{self.colours[result.outcome]}m{word}\033[0m"
            name = result.name.ljust(NAME_WIDTH)
            self._line(f"{word}  {name} {self.redactor.scrub(result.detail)}")
            if result.fix:
                self._line(f"{'':4}  {'fix:'.ljust(NAME_WIDTH)} {self.redactor.scrub(result.fix)}")

    def summary(self) -> int:
        """The closing line; the exit status (1 when any check failed)."""
        failures = sum(r.outcome is Outcome.FAIL for r in self.results)
        warnings = sum(r.outcome is Outcome.WARN for r in self.results)
        checked = sum(r.outcome is not Outcome.SKIP for r in self.results)
        noted = f", {warnings} warning{'s' * (warnings != 1)}" if warnings else ""
        if failures:
            self._line(f"doctor: {failures} of {checked} checks failed{noted}; each fix is under its line")
            return 1
        self._line(f"doctor: all {checked} checks passed{noted}")
        return 0

    def _line(self, text: str) -> None:
        print(text, file=self.out, flush=True)
