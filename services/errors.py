"""The one exception family of the services layer; messages are written for the operator."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from pydantic_core import ErrorDetails, PydanticCustomError


class ServiceError(Exception):
    """Base of every error raised by `services/`: bad domain input, never an infrastructure fault."""


class ProblemsError(ServiceError):
    """Carries every problem found, so an operator fixes them in one pass instead of one per run."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: list[str] = list(problems)
        super().__init__("\n".join(self.problems))


class StoryboardError(ProblemsError):
    """A storyboard breaks one or more rules; one problem per line, each naming field and fix."""


class PricingError(ProblemsError):
    """The price table (PRICING_FILE) or a cost request is invalid."""


class PromptError(ServiceError):
    """A prompt cannot be assembled within its provider's limit, or a prompt parameter is invalid."""


class PromptTooLong(PromptError):
    """An item's own text alone is over a provider's limit; only the item's author can shorten it."""


class PathRefused(ServiceError, ValueError):
    """A workspace path component is unsafe or would resolve outside the workspace."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


def field_path(loc: Sequence[int | str]) -> str:
    """Render a validation location as an operator reads it: ('scenes', 2, 'motion') -> scenes[2].motion."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


RULE = "rule"
"""The pydantic error type of this layer's own rules: the message is already written for the operator."""


def rule_error(message: str) -> PydanticCustomError:
    """A validation error whose message is shown verbatim (braces in user text stay as they are)."""
    return PydanticCustomError(RULE, "{message}", {"message": message})


def describe_error(
    error: ErrorDetails,
    *,
    root: str,
    hints: Mapping[str, str],
    fields: Mapping[tuple[str, ...], Sequence[str]],
) -> str:
    """Turn one pydantic error into 'where: what is wrong; what to do'.

    `hints` says, per field name, what a missing or empty field should hold; `fields` lists the
    known fields per section (the string parts of a location), for typos in field names.
    """
    loc = error["loc"]
    where = field_path(loc) or root
    name = next((part for part in reversed(loc) if isinstance(part, str)), root)
    hint = hints.get(name, "add it")
    kind, value, ctx = error["type"], error["input"], error.get("ctx") or {}
    if kind == RULE:
        return f"{where}: {ctx['message']}"
    if kind == "missing" or (value is None and kind.endswith("_type")):
        return f"{where}: is {'missing' if kind == 'missing' else 'empty'}; {hint}"
    if kind == "invalid_key":
        # YAML reads `null:`, `~:`, `: x`, `yes:` and `1:` as values, not names.
        parent = field_path(loc[:-1]) or root
        known = ", ".join(fields.get(tuple(p for p in loc[:-1] if isinstance(p, str)), ()))
        named = "no name (null)" if value is None else f"the name {_shown(value)}, which is not text"
        return f"{parent}: a field has {named}; name each field with a word (known here: {known})"
    if kind == "extra_forbidden":
        known = ", ".join(fields.get(tuple(p for p in loc[:-1] if isinstance(p, str)), ()))
        return f"{where}: is not a known field; check its spelling and indentation (known here: {known})"
    if kind == "string_type":
        return f"{where}: must be text, not {_shown(value)}; put it in quotes"
    if kind in ("list_type", "tuple_type"):
        return f"{where}: must be a list, one '- ' entry per line, not {_shown(value)}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"{where}: must be a mapping of 'name: value' lines, not {_shown(value)}; {hint}"
    if kind in ("enum", "literal_error"):
        return f"{where}: {_shown(value)} is not allowed; use {ctx['expected']}"
    if kind.startswith(("decimal_", "float_", "int_")) or kind == "finite_number":
        return f"{where}: must be a number, not {_shown(value)}; {hint}"
    if kind in ("greater_than_equal", "greater_than"):
        bound = ctx.get("ge", ctx.get("gt"))
        return f"{where}: {value} is too small; it must be {'>=' if 'ge' in ctx else '>'} {bound}: {hint}"
    return f"{where}: {error['msg']}"


def _shown(value: object) -> str:
    """A short rendering of an input value: its type for containers, the value for scalars."""
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, bool):
        return f"the yes/no value {value}"
    if isinstance(value, int | float):
        return f"the number {value}"
    text = str(value)
    return repr(text if len(text) <= 40 else text[:37] + "...")
