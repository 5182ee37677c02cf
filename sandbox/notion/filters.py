"""Data source query filters and sorts, compiled once per request into plain functions.

The compiled functions read the stored page documents directly (no copies), so one query over
thousands of pages costs one pass. Timestamps compare at minute precision, because Notion rounds
`last_edited_time` and `created_time` down to the minute: an edit at 09:08:45 does NOT match
`on_or_after 09:08:30`, which is exactly the trap a poller has to avoid.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sandbox.notion.errors import body_validation, validation
from sandbox.notion.objects import floor_minute, parse_when, plain_text
from sandbox.notion.properties import Schema, find_property_name

Doc = dict[str, Any]
Predicate = Callable[[Doc], bool]
SortKey = Callable[[Doc], tuple[Any, ...]]

MAX_DEPTH = 2  # compound filters nest at most two levels
TEXT_OPS = ("equals", "does_not_equal", "contains", "does_not_contain", "starts_with", "ends_with")
EMPTY_OPS = ("is_empty", "is_not_empty")
OPTION_OPS = ("equals", "does_not_equal", *EMPTY_OPS)
NUMBER_OPS = (
    "equals",
    "does_not_equal",
    "greater_than",
    "less_than",
    "greater_than_or_equal_to",
    "less_than_or_equal_to",
    *EMPTY_OPS,
)
DATE_OPS = (
    "equals",
    "before",
    "after",
    "on_or_before",
    "on_or_after",
    "past_week",
    "past_month",
    "past_year",
)
TIMESTAMPS = ("created_time", "last_edited_time")
# Which filter keys a property type accepts (Notion lets text filters use either text key).
FILTER_KEYS: dict[str, tuple[str, ...]] = {
    "title": ("title", "rich_text"),
    "rich_text": ("rich_text", "title"),
    "url": ("url", "rich_text"),
    "email": ("email", "rich_text"),
    "phone_number": ("phone_number", "rich_text"),
    "select": ("select",),
    "status": ("status",),
    "multi_select": ("multi_select",),
    "checkbox": ("checkbox",),
    "number": ("number",),
    "date": ("date",),
    "created_time": ("created_time", "date"),
    "last_edited_time": ("last_edited_time", "date"),
}
ALL_FILTER_KEYS = frozenset(k for keys in FILTER_KEYS.values() for k in keys)
_PERIODS = {"past_week": 7 * 86400, "past_month": 30 * 86400, "past_year": 365 * 86400}


def _always(doc: Doc) -> bool:
    return True


# Filters -----------------------------------------------------------------------------------------
def compile_filter(spec: object, schema: Schema, where: str = "body.filter", depth: int = 0) -> Predicate:
    if spec is None or spec == {}:
        return _always
    if not isinstance(spec, dict):
        raise body_validation(where, "should be an object", spec)
    for compound in ("and", "or"):
        if compound in spec:
            return _compound(compound, spec[compound], schema, f"{where}.{compound}", depth)
    if "timestamp" in spec:
        return _timestamp_filter(spec, where)
    if "property" in spec:
        return _property_filter(spec, schema, where)
    raise validation(
        f"body failed validation. Fix one:\n{where}.or should be defined, instead was `undefined`.\n"
        f"{where}.and should be defined, instead was `undefined`.\n"
        f"{where}.property should be defined, instead was `undefined`.\n"
        f"{where}.timestamp should be defined, instead was `undefined`."
    )


def _compound(kind: str, parts: object, schema: Schema, where: str, depth: int) -> Predicate:
    if depth >= MAX_DEPTH:
        raise body_validation(where, f"should be not present (filters nest at most {MAX_DEPTH} levels)", kind)
    if not isinstance(parts, list):
        raise body_validation(where, "should be an array", parts)
    if len(parts) > 100:
        raise body_validation(f"{where}.length", "should be ≤ `100`", len(parts))
    tests = [compile_filter(p, schema, f"{where}[{i}]", depth + 1) for i, p in enumerate(parts)]
    if kind == "and":
        return lambda doc: all(t(doc) for t in tests)
    return lambda doc: any(t(doc) for t in tests)


def _timestamp_filter(spec: Doc, where: str) -> Predicate:
    stamp = spec["timestamp"]
    if stamp not in TIMESTAMPS:
        raise body_validation(f"{where}.timestamp", f"should be one of {', '.join(TIMESTAMPS)}", stamp)
    field = "created_at" if stamp == "created_time" else "edited_at"
    test = _date_test(_condition(spec, stamp, DATE_OPS + EMPTY_OPS, where), f"{where}.{stamp}")
    return lambda doc: test(floor_minute(doc[field]))


def _property_filter(spec: Doc, schema: Schema, where: str) -> Predicate:
    key = spec["property"]
    name = find_property_name(schema, key) if isinstance(key, str) else None
    if name is None:
        raise validation(f"Could not find property with name or id: {key}")
    definition = schema[name]
    ptype = definition["type"]
    ftype = next((k for k in spec if k in ALL_FILTER_KEYS), None)
    accepted = FILTER_KEYS.get(ptype, ())
    if ftype is None:
        raise body_validation(f"{where}.{ptype}", "should be defined", None)
    if ftype not in accepted:
        raise validation(f"database property {ptype} does not match filter {ftype}")
    return _property_test(definition, spec, ftype, where)


def _property_test(definition: Doc, spec: Doc, ftype: str, where: str) -> Predicate:
    ptype = definition["type"]
    pid = definition["id"]
    path = f"{where}.{ftype}"
    if ptype in ("created_time", "last_edited_time"):
        return _timestamp_filter({"timestamp": ptype, ptype: spec[ftype]}, where)
    if ptype in ("title", "rich_text", "url", "email", "phone_number"):
        text = _text_test(_condition(spec, ftype, TEXT_OPS + EMPTY_OPS, where), path)
        if ptype in ("title", "rich_text"):
            return lambda doc: text(plain_text(doc["values"].get(pid)))
        return lambda doc: text(doc["values"].get(pid) or "")
    if ptype in ("select", "status"):
        option = _option_test(_condition(spec, ftype, OPTION_OPS, where), definition, path)
        return lambda doc: option((doc["values"].get(pid) or {}).get("id"))
    if ptype == "multi_select":
        names = _multi_test(
            _condition(spec, ftype, ("contains", "does_not_contain", *EMPTY_OPS), where), path
        )
        return lambda doc: names({o["name"] for o in doc["values"].get(pid) or []})
    if ptype == "checkbox":
        flag = _checkbox_test(_condition(spec, ftype, ("equals", "does_not_equal"), where), path)
        return lambda doc: flag(bool(doc["values"].get(pid)))
    if ptype == "number":
        number = _number_test(_condition(spec, ftype, NUMBER_OPS, where), path)
        return lambda doc: number(doc["values"].get(pid))
    date = _date_test(_condition(spec, ftype, DATE_OPS + EMPTY_OPS, where), path)
    return lambda doc: date(_date_value(doc["values"].get(pid)))


def _condition(spec: Doc, ftype: str, ops: tuple[str, ...], where: str) -> tuple[str, Any]:
    condition = spec.get(ftype)
    if not isinstance(condition, dict) or len(condition) != 1 or next(iter(condition)) not in ops:
        raise body_validation(f"{where}.{ftype}", f"should have exactly one of: {', '.join(ops)}", condition)
    op, arg = next(iter(condition.items()))
    if op in EMPTY_OPS and arg is not True:
        raise body_validation(f"{where}.{ftype}.{op}", "should be `true`", arg)
    return op, arg


def _text_test(condition: tuple[str, Any], where: str) -> Callable[[str], bool]:
    op, arg = condition
    if op == "is_empty":
        return lambda text: text == ""
    if op == "is_not_empty":
        return lambda text: text != ""
    if not isinstance(arg, str):
        raise body_validation(f"{where}.{op}", "should be a string", arg)
    needle = arg.lower()  # Notion's contains/starts_with are case-insensitive
    tests: dict[str, Callable[[str], bool]] = {
        "equals": lambda text: text == arg,
        "does_not_equal": lambda text: text != arg,
        "contains": lambda text: needle in text.lower(),
        "does_not_contain": lambda text: needle not in text.lower(),
        "starts_with": lambda text: text.lower().startswith(needle),
        "ends_with": lambda text: text.lower().endswith(needle),
    }
    return tests[op]


def _option_test(condition: tuple[str, Any], definition: Doc, where: str) -> Callable[[str | None], bool]:
    op, arg = condition
    if op == "is_empty":
        return lambda option: option is None
    if op == "is_not_empty":
        return lambda option: option is not None
    if not isinstance(arg, str):
        raise body_validation(f"{where}.{op}", "should be a string", arg)
    kind = definition["type"]
    # Options are matched by id, so pages keep matching after an option is renamed.
    wanted = next((o["id"] for o in definition[kind]["options"] if arg in (o["name"], o["id"])), None)
    if op == "equals":
        return lambda option: wanted is not None and option == wanted
    return lambda option: option != wanted or wanted is None


def _multi_test(condition: tuple[str, Any], where: str) -> Callable[[set[str]], bool]:
    op, arg = condition
    if op == "is_empty":
        return lambda names: not names
    if op == "is_not_empty":
        return lambda names: bool(names)
    if not isinstance(arg, str):
        raise body_validation(f"{where}.{op}", "should be a string", arg)
    if op == "contains":
        return lambda names: arg in names
    return lambda names: arg not in names


def _checkbox_test(condition: tuple[str, Any], where: str) -> Callable[[bool], bool]:
    op, arg = condition
    if not isinstance(arg, bool):
        raise body_validation(f"{where}.{op}", "should be a boolean", arg)
    return (lambda flag: flag == arg) if op == "equals" else (lambda flag: flag != arg)


def _number_test(condition: tuple[str, Any], where: str) -> Callable[[Any], bool]:
    op, arg = condition
    if op == "is_empty":
        return lambda value: value is None
    if op == "is_not_empty":
        return lambda value: value is not None
    if isinstance(arg, bool) or not isinstance(arg, (int, float)):
        raise body_validation(f"{where}.{op}", "should be a number", arg)
    tests: dict[str, Callable[[float], bool]] = {
        "equals": lambda v: v == arg,
        "does_not_equal": lambda v: v != arg,
        "greater_than": lambda v: v > arg,
        "less_than": lambda v: v < arg,
        "greater_than_or_equal_to": lambda v: v >= arg,
        "less_than_or_equal_to": lambda v: v <= arg,
    }
    test = tests[op]
    if op == "does_not_equal":
        return lambda value: value is None or test(value)
    return lambda value: value is not None and test(value)


def _date_test(condition: tuple[str, Any], where: str) -> Callable[[float | None], bool]:
    """A date-only argument covers its whole day; a date-time is an instant."""
    op, arg = condition
    if op == "is_empty":
        return lambda ts: ts is None
    if op == "is_not_empty":
        return lambda ts: ts is not None
    if op in _PERIODS:
        if arg != {}:
            raise body_validation(f"{where}.{op}", "should be an empty object", arg)
        now = time.time()
        lo, hi = now - _PERIODS[op], now
        return lambda ts: ts is not None and lo <= ts <= hi
    start, end = parse_when(arg, f"{where}.{op}")
    tests: dict[str, Callable[[float], bool]] = {
        "equals": lambda ts: start <= ts <= end,
        "before": lambda ts: ts < start,
        "after": lambda ts: ts > end,
        "on_or_before": lambda ts: ts <= end,
        "on_or_after": lambda ts: ts >= start,
    }
    test = tests[op]
    return lambda ts: ts is not None and test(ts)


def _date_value(value: Any) -> float | None:
    if not isinstance(value, dict) or not value.get("start"):
        return None
    return parse_when(value["start"], "value.start")[0]


# Sorts -------------------------------------------------------------------------------------------
class Descending:
    """Wraps a sort value so that larger values come first inside an ascending tuple sort."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: Descending) -> bool:
        return bool(other.value < self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Descending) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)


def compile_sorts(sorts: object, schema: Schema, where: str = "body.sorts") -> SortKey:
    """A key function; empty values sort last either way; ties go newest-created first."""
    if sorts is None:
        sorts = []
    if not isinstance(sorts, list):
        raise body_validation(where, "should be an array", sorts)
    parts = [_sort_part(s, schema, f"{where}[{i}]") for i, s in enumerate(sorts)]

    def key(doc: Doc) -> tuple[Any, ...]:
        out: list[Any] = []
        for extract, descending in parts:
            value = extract(doc)
            if value is None:
                out.extend((1, 0))
            else:
                out.extend((0, Descending(value) if descending else value))
        out.append(-int(doc.get("seq", 0)))
        return tuple(out)

    return key


def _sort_part(spec: object, schema: Schema, where: str) -> tuple[Callable[[Doc], Any], bool]:
    if not isinstance(spec, dict):
        raise body_validation(where, "should be an object", spec)
    direction = spec.get("direction", "ascending")
    if direction not in ("ascending", "descending"):
        raise body_validation(f"{where}.direction", "should be `ascending` or `descending`", direction)
    descending = direction == "descending"
    if "timestamp" in spec:
        stamp = spec["timestamp"]
        if stamp not in TIMESTAMPS:
            raise body_validation(f"{where}.timestamp", f"should be one of {', '.join(TIMESTAMPS)}", stamp)
        field = "created_at" if stamp == "created_time" else "edited_at"
        return (lambda doc: floor_minute(doc[field])), descending
    key = spec.get("property")
    name = find_property_name(schema, key) if isinstance(key, str) else None
    if name is None:
        raise validation(f"Could not find sort property with name or id: {key}")
    return _sort_value(schema[name], where), descending


def _sort_value(definition: Doc, where: str) -> Callable[[Doc], Any]:
    ptype = definition["type"]
    pid = definition["id"]
    if ptype in ("title", "rich_text"):
        return lambda doc: plain_text(doc["values"].get(pid)).lower() or None
    if ptype in ("url", "email", "phone_number"):
        return lambda doc: (doc["values"].get(pid) or "").lower() or None
    if ptype in ("select", "status"):
        # Notion orders select and status values by the options' order, not alphabetically.
        order = {o["id"]: i for i, o in enumerate(definition[ptype]["options"])}
        return lambda doc: order.get((doc["values"].get(pid) or {}).get("id", ""))
    if ptype == "number":
        return lambda doc: doc["values"].get(pid)
    if ptype == "checkbox":
        return lambda doc: bool(doc["values"].get(pid))
    if ptype == "date":
        return lambda doc: _date_value(doc["values"].get(pid))
    if ptype in TIMESTAMPS:
        field = "created_at" if ptype == "created_time" else "edited_at"
        return lambda doc: floor_minute(doc[field])
    raise validation(f"Sorting by a {ptype} property is not supported.")
