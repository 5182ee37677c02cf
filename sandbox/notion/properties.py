"""Data source property schemas and page property values: parsing requests, rendering answers.

Pure functions over plain dicts: the handlers validate a whole request first, then write, so a
400 answer never leaves half a change behind.
"""

from __future__ import annotations

import secrets
from typing import Any

from sandbox.notion.errors import body_validation, validation
from sandbox.notion.objects import minute_iso, parse_when, plain_text, rich_text, user_ref

Schema = dict[str, dict[str, Any]]  # property name -> definition in Notion's answer form

COLORS = ("default", "gray", "brown", "orange", "yellow", "green", "blue", "purple", "pink", "red")
# Types whose configuration is an empty object.
PLAIN_TYPES = frozenset(
    {
        "title",
        "rich_text",
        "date",
        "checkbox",
        "url",
        "email",
        "phone_number",
        "people",
        "files",
        "created_time",
        "last_edited_time",
        "created_by",
        "last_edited_by",
    }
)
OPTION_TYPES = frozenset({"select", "multi_select", "status"})
SCHEMA_TYPES = PLAIN_TYPES | OPTION_TYPES | {"number"}
READ_ONLY = frozenset({"created_time", "last_edited_time", "created_by", "last_edited_by"})
NUMBER_FORMATS = frozenset(
    {"number", "number_with_commas", "percent", "dollar", "euro", "pound", "yen", "rupee", "won", "yuan"}
)
STATUS_GROUPS = (("To-do", "gray"), ("In progress", "blue"), ("Complete", "green"))
DEFAULT_STATUS = (("Not started", "default", 0), ("In progress", "blue", 1), ("Done", "green", 2))
TITLE_ID = "title"  # Notion gives every title property the id "title"


def short_id() -> str:
    """Property and option ids look like Notion's short url-safe strings."""
    return secrets.token_urlsafe(3)


# Schemas -----------------------------------------------------------------------------------------
def build_schema(spec: object, *, status_options_allowed: bool, where: str) -> Schema:
    """A new data source's properties; a title property is added when none is given."""
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise body_validation(where, "should be an object", spec)
    schema: Schema = {}
    for name, definition in spec.items():
        schema[name] = parse_definition(name, definition, None, status_options_allowed, f"{where}.{name}")
    titles = [n for n, d in schema.items() if d["type"] == "title"]
    if len(titles) > 1:
        raise validation(f"Only one title property is allowed; found {', '.join(titles)}.")
    if not titles:
        schema = {"Name": _definition("Name", "title", {}, TITLE_ID), **schema}
    return schema


def update_schema(current: Schema, changes: object, *, status_options_allowed: bool, where: str) -> Schema:
    """PATCH /v1/data_sources/{id} properties: add, reconfigure, rename (`name`) or remove (null)."""
    if not isinstance(changes, dict):
        raise body_validation(where, "should be an object", changes)
    schema = dict(current)
    for key, change in changes.items():
        name = find_property_name(schema, key)
        path = f"{where}.{key}"
        if change is None:
            _remove(schema, name, key)
            continue
        if not isinstance(change, dict):
            raise body_validation(path, "should be an object or `null`", change)
        existing = schema.get(name) if name else None
        new_name = change.get("name", name or key)
        if not isinstance(new_name, str) or not new_name:
            raise body_validation(f"{path}.name", "should be a non-empty string", new_name)
        has_type = any(k in SCHEMA_TYPES for k in change)
        if existing is not None and not has_type:
            definition = {**existing, "name": new_name}
        else:
            definition = parse_definition(new_name, change, existing, status_options_allowed, path)
        if name is not None:
            schema = {
                (new_name if n == name else n): (definition if n == name else d) for n, d in schema.items()
            }
        else:
            schema[new_name] = definition
    return schema


def _remove(schema: Schema, name: str | None, key: str) -> None:
    if name is None:
        raise validation(f"{key} is not a property that exists.")
    if schema[name]["type"] == "title":
        raise validation("Cannot delete the title property.")
    del schema[name]


def parse_definition(
    name: str, spec: object, existing: dict[str, Any] | None, status_options_allowed: bool, where: str
) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise body_validation(where, "should be an object", spec)
    kind = spec.get("type") or next((k for k in spec if k in SCHEMA_TYPES), None)
    if kind not in SCHEMA_TYPES:
        raise body_validation(f"{where}.type", f"should be one of {', '.join(sorted(SCHEMA_TYPES))}", kind)
    config = spec.get(kind) or {}
    if not isinstance(config, dict):
        raise body_validation(f"{where}.{kind}", "should be an object", config)
    prop_id = TITLE_ID if kind == "title" else (existing["id"] if existing else short_id())
    if kind == "number":
        fmt = config.get("format", "number")
        if fmt not in NUMBER_FORMATS:
            raise body_validation(f"{where}.number.format", "should be a known number format", fmt)
        return _definition(name, kind, {"format": fmt}, prop_id)
    if kind in OPTION_TYPES:
        old = existing.get(kind, {}).get("options", []) if existing and existing["type"] == kind else []
        return _definition(
            name, kind, _option_config(kind, config, old, status_options_allowed, where), prop_id
        )
    return _definition(name, kind, {}, prop_id)


def _definition(name: str, kind: str, config: dict[str, Any], prop_id: str) -> dict[str, Any]:
    return {"id": prop_id, "name": name, "description": None, "type": kind, kind: config}


def _option_config(
    kind: str, config: dict[str, Any], old: list[dict[str, Any]], status_allowed: bool, where: str
) -> dict[str, Any]:
    given = config.get("options")
    if kind == "status" and given is not None and not status_allowed:
        # Notion: status options are made and renamed in the app only, never through the API.
        raise validation(
            "Status options cannot be created or changed through the API; add them in Notion "
            f"(property {where.rsplit('.', 1)[-1]})."
        )
    if given is None:
        options = old or ([_status_option(n, c) for n, c, _ in DEFAULT_STATUS] if kind == "status" else [])
    else:
        options = _parse_options(given, old, f"{where}.{kind}.options")
    if kind != "status":
        return {"options": options}
    return {"options": options, "groups": _status_groups(options, given is None and not old)}


def _parse_options(given: object, old: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    if not isinstance(given, list):
        raise body_validation(where, "should be an array", given)
    by_name = {o["name"]: o for o in old}
    options: list[dict[str, Any]] = []
    for i, option in enumerate(given):
        if not isinstance(option, dict) or not isinstance(option.get("name"), str) or not option["name"]:
            raise body_validation(f"{where}[{i}].name", "should be a non-empty string", option)
        if "," in option["name"]:
            raise validation(f"Select option names cannot contain commas: {option['name']!r}.")
        color = option.get("color") or by_name.get(option["name"], {}).get("color") or _next_color(options)
        if color not in COLORS:
            raise body_validation(f"{where}[{i}].color", f"should be one of {', '.join(COLORS)}", color)
        keep = by_name.get(option["name"])
        options.append(
            {
                "id": keep["id"] if keep else short_id(),
                "name": option["name"],
                "color": color,
                "description": option.get("description"),
            }
        )
    return options


def _status_option(name: str, color: str) -> dict[str, Any]:
    return {"id": short_id(), "name": name, "color": color, "description": None}


def _status_groups(options: list[dict[str, Any]], default_set: bool) -> list[dict[str, Any]]:
    """Notion's three status groups; the first option starts work ("To-do"), Notion's defaults
    keep their own groups, other options are "In progress" until an operator regroups them."""
    members: list[list[str]] = [[], [], []]
    for index, option in enumerate(options):
        if default_set:
            group = next((g for n, _, g in DEFAULT_STATUS if n == option["name"]), 1)
        else:
            group = 0 if index == 0 else 1
        members[group].append(option["id"])
    return [
        {"id": short_id(), "name": name, "color": color, "option_ids": ids}
        for (name, color), ids in zip(STATUS_GROUPS, members, strict=True)
    ]


def _next_color(options: list[dict[str, Any]]) -> str:
    return COLORS[(len(options) + 1) % len(COLORS)]


def find_property_name(schema: Schema, key: str) -> str | None:
    if key in schema:
        return key
    return next((n for n, d in schema.items() if d["id"] == key), None)


def page_schema() -> Schema:
    """A page under a page (not a data source) has just its title, named "title"."""
    return {"title": _definition("title", "title", {}, TITLE_ID)}


def default_values(schema: Schema) -> dict[str, Any]:
    """A new page in a data source starts in the status property's first "To-do" option."""
    values: dict[str, Any] = {}
    for definition in schema.values():
        if definition["type"] == "status":
            first = _default_status(definition)
            if first is not None:
                values[definition["id"]] = first
    return values


def _default_status(definition: dict[str, Any]) -> dict[str, Any] | None:
    config = definition["status"]
    todo = next((g for g in config.get("groups", []) if g["name"] == "To-do"), None)
    ids = todo["option_ids"] if todo else []
    option = next((o for o in config["options"] if o["id"] in ids), None)
    return _option_value(option) if option else None


# Page values ---------------------------------------------------------------------------------------
class ValueChanges:
    """Parsed property writes: values by property id, and select options that must be created."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        self.new_options: dict[str, list[dict[str, Any]]] = {}  # property name -> options to add


def parse_values(schema: Schema, spec: object, where: str = "body.properties") -> ValueChanges:
    if not isinstance(spec, dict):
        raise body_validation(where, "should be an object", spec)
    changes = ValueChanges()
    for key, raw in spec.items():
        name = find_property_name(schema, key)
        if name is None:
            raise validation(f"{key} is not a property that exists.")
        definition = schema[name]
        kind = definition["type"]
        if kind in READ_ONLY:
            raise validation(f"{name} is a {kind} property and cannot be edited.")
        value = _unwrap(name, kind, raw)
        changes.values[definition["id"]] = _parse_value(definition, value, changes, f"{where}.{name}.{kind}")
    return changes


def _unwrap(name: str, kind: str, raw: object) -> object:
    """`{"select": {...}}`, `{"type": "select", "select": ...}` or, for text, a bare array."""
    if isinstance(raw, list) and kind in ("title", "rich_text", "multi_select", "people", "files"):
        return raw
    if isinstance(raw, dict) and kind in raw:
        return raw[kind]
    raise validation(f"{name} is expected to be {kind}.")


def _parse_value(definition: dict[str, Any], value: object, changes: ValueChanges, where: str) -> Any:
    kind = definition["type"]
    if kind in ("title", "rich_text"):
        return rich_text(value, where)
    if kind in ("select", "status"):
        return None if value is None else _choose_option(definition, value, changes, where)
    if kind == "multi_select":
        if not isinstance(value, list):
            raise body_validation(where, "should be an array", value)
        return [_choose_option(definition, v, changes, f"{where}[{i}]") for i, v in enumerate(value)]
    return _parse_scalar(kind, value, where)


def _parse_scalar(kind: str, value: object, where: str) -> Any:
    if value is None:
        if kind == "checkbox":
            raise body_validation(where, "should be a boolean", value)
        return [] if kind in ("people", "files") else None
    if kind == "number" and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise body_validation(where, "should be a number or `null`", value)
    if kind == "checkbox" and not isinstance(value, bool):
        raise body_validation(where, "should be a boolean", value)
    if kind in ("url", "email", "phone_number") and not isinstance(value, str):
        raise body_validation(where, "should be a string or `null`", value)
    if kind == "date":
        return _parse_date(value, where)
    if kind in ("people", "files"):
        if not isinstance(value, list):
            raise body_validation(where, "should be an array", value)
        return value
    return value


def _parse_date(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not isinstance(value.get("start"), str):
        raise body_validation(f"{where}.start", "should be an ISO 8601 date string", value)
    parse_when(value["start"], f"{where}.start")
    end = value.get("end")
    if end is not None:
        parse_when(end, f"{where}.end")
    return {"start": value["start"], "end": end, "time_zone": value.get("time_zone")}


def _choose_option(
    definition: dict[str, Any], value: object, changes: ValueChanges, where: str
) -> dict[str, Any]:
    kind = definition["type"]
    if not isinstance(value, dict) or not (
        isinstance(value.get("name"), str) or isinstance(value.get("id"), str)
    ):
        raise body_validation(f"{where}.name", "should be a string", value)
    options = definition[kind]["options"] + changes.new_options.get(definition["name"], [])
    wanted_id, wanted_name = value.get("id"), value.get("name")
    found = next(
        (o for o in options if o["id"] == wanted_id or (wanted_name and o["name"] == wanted_name)), None
    )
    if found is not None:
        return _option_value(found)
    if kind == "status" or not wanted_name:
        known = ", ".join(o["name"] for o in definition[kind]["options"])
        label = wanted_name or wanted_id
        raise validation(
            f'Invalid {kind} option: "{label}" is not an option of property "{definition["name"]}". '
            f"Existing options: {known}."
        )
    if "," in wanted_name:
        raise validation(f"Select option names cannot contain commas: {wanted_name!r}.")
    # A new select value becomes an option of the data source, with the next colour.
    option = {"id": short_id(), "name": wanted_name, "color": _next_color(options), "description": None}
    changes.new_options.setdefault(definition["name"], []).append(option)
    return _option_value(option)


def _option_value(option: dict[str, Any]) -> dict[str, Any]:
    return {"id": option["id"], "name": option["name"], "color": option["color"]}


def add_options(schema: Schema, new_options: dict[str, list[dict[str, Any]]]) -> Schema:
    """The schema with new select options appended (a copy; the stored one is not mutated)."""
    if not new_options:
        return schema
    updated = dict(schema)
    for name, options in new_options.items():
        definition = updated[name]
        kind = definition["type"]
        config = {**definition[kind], "options": definition[kind]["options"] + options}
        updated[name] = {**definition, kind: config}
    return updated


# Rendering ---------------------------------------------------------------------------------------
def render_values(schema: Schema, page: dict[str, Any], only: set[str] | None = None) -> dict[str, Any]:
    """Every schema property appears on the page; unset ones with Notion's empty value."""
    out: dict[str, Any] = {}
    values = page.get("values", {})
    for name, definition in schema.items():
        prop_id = definition["id"]
        if only is not None and prop_id not in only and name not in only:
            continue
        kind = definition["type"]
        out[name] = {"id": prop_id, "type": kind, kind: render_value(definition, values.get(prop_id), page)}
    return out


def render_value(definition: dict[str, Any], value: Any, page: dict[str, Any]) -> Any:
    kind = definition["type"]
    if kind == "created_time":
        return minute_iso(page["created_at"])
    if kind == "last_edited_time":
        return minute_iso(page["edited_at"])
    if kind == "created_by":
        return user_ref(page["created_by"])
    if kind == "last_edited_by":
        return user_ref(page["edited_by"])
    if kind in ("select", "status"):
        return _current_option(definition, value)
    if kind == "multi_select":
        return [_current_option(definition, v) for v in value or []]
    if value is None:
        return _EMPTY.get(kind)
    return value


_EMPTY: dict[str, Any] = {"title": [], "rich_text": [], "checkbox": False, "people": [], "files": []}


def _current_option(definition: dict[str, Any], value: dict[str, Any] | None) -> dict[str, Any] | None:
    """Options are referenced by id, so a renamed or recoloured option shows its current look."""
    if value is None:
        return None
    kind = definition["type"]
    option = next((o for o in definition[kind]["options"] if o["id"] == value["id"]), None)
    return _option_value(option) if option else value


def title_text(page: dict[str, Any]) -> str:
    return plain_text(page.get("values", {}).get(TITLE_ID))
