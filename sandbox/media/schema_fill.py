"""A JSON document that follows a response schema, written from the prompt's own words.

Both schema dialects a Gemini request may carry are read: JSON Schema (`responseJsonSchema`, lower-case
types, `$ref`/`$defs`, `anyOf`, type lists) and Gemini's OpenAPI subset (`responseSchema`, upper-case
types, `nullable`, `propertyOrdering`). Output is deterministic per prompt and schema. Strings are
phrases cut from the prompt, so the answer reads related to it; their length follows the field's
name (a narration gets a sentence, a title a few words). Two touches make documents usable rather
than merely valid: an array asked for by count in the prompt ("4 scenes") gets that many items,
and a field named after a kind of keyed item ("environment", "character") takes the key of such
an item from elsewhere in the document, so cross-references resolve.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import re
from dataclasses import dataclass, field
from typing import Any

Json = Any  # a JSON value (schema or document)

_STOP_WORDS = (
    "a an the and or but of in on at to for with by from as is are was were be been it its this that "
    "these those into over under than then so such very can will would should must may each per one two "
    "three four five six seven eight nine ten json schema return write give make field fields please "
    "exactly about also your you our their not no yes all any create generate describe include using use "
    "output words title topic scenes scene assets asset storyboard tell"
)
_STOP = frozenset(_STOP_WORDS.split())
_CONNECTORS = ("and", "where", "as", "while", "beneath", "beside", "with", "through", "near")
_LONG_NAMES = (
    "narration",
    "script",
    "voiceover",
    "description",
    "summary",
    "story",
    "text",
    "motion",
    "prompt",
    "atmosphere",
    "caption",
    "paragraph",
    "body",
    "content",
    "sfx",
    "direction",
)
_SHORT_NAMES = ("title", "name", "label", "mood", "tag", "style", "kind", "type", "heading", "slug")
_NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
}
_KEY_NAMES = ("key", "id", "slug")


class SchemaError(ValueError):
    """The schema cannot be followed (an unknown type, a broken $ref)."""


@dataclass
class _Context:
    prompt: str
    words: list[str]
    root: Json
    counts: dict[str, int]
    # (kind, key) of every keyed object made so far, for cross-references.
    keyed: list[tuple[str, str]] = field(default_factory=list)
    used_keys: set[str] = field(default_factory=set)


def fill(schema: Json, prompt: str) -> Json:
    """A document following `schema`, with strings made from `prompt`."""
    words = _content_words(prompt)
    ctx = _Context(prompt, words or ["quiet", "light", "morning"], schema, _counts(prompt))
    document = _value(ctx, schema, "$", "")
    _resolve_references(ctx, document, "")
    return document


def sentence(prompt: str, path: str, low: int, high: int) -> str:
    """A phrase of low..high words cut from the prompt (deterministic per prompt and path)."""
    words = _content_words(prompt) or ["quiet", "light", "morning"]
    return _phrase(_rng(prompt, path), words, low, high)


# Values by type -----------------------------------------------------------------------------------
def _value(ctx: _Context, schema: Json, path: str, name: str) -> Json:
    schema = _resolve(ctx, schema)
    kind = _type_of(schema)
    rng = _rng(ctx.prompt, path)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return _enum_value(schema["enum"], rng, path)
    if kind == "object":
        return _object(ctx, schema, path)
    if kind == "array":
        return _array(ctx, schema, path, name)
    if kind == "string":
        return _string(ctx, schema, rng, path, name)
    if kind in ("integer", "number"):
        return _number(schema, rng, kind == "integer", name)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    raise SchemaError(f"unsupported schema type {kind!r} at {path}")


def _object(ctx: _Context, schema: Json, path: str) -> dict[str, Json]:
    properties: dict[str, Json] = schema.get("properties") or {}
    order = list(schema.get("propertyOrdering") or schema.get("property_ordering") or [])
    names = order + [n for n in properties if n not in order]
    out: dict[str, Json] = {}
    for name in names:
        if name in properties:
            out[name] = _value(ctx, properties[name], f"{path}.{name}", name)
    key = next((out[n] for n in _KEY_NAMES if isinstance(out.get(n), str)), None)
    kind = next((out[n] for n in ("kind", "type", "category", "role") if isinstance(out.get(n), str)), None)
    if key is not None and kind is not None:
        ctx.keyed.append((kind.lower(), key))
    return out


def _array(ctx: _Context, schema: Json, path: str, name: str) -> list[Json]:
    low = int(schema.get("minItems", schema.get("min_items", 1)))
    high = int(schema.get("maxItems", schema.get("max_items", max(low, 4))))
    wanted = ctx.counts.get(name.lower()) or ctx.counts.get(name.lower().rstrip("s"))
    count = wanted if wanted is not None else _rng(ctx.prompt, path).randint(max(low, min(3, high)), high)
    count = max(low, min(high, count))
    items = schema.get("items") or {"type": "string"}
    return [_value(ctx, items, f"{path}[{i}]", name) for i in range(count)]


def _string(ctx: _Context, schema: Json, rng: random.Random, path: str, name: str) -> str:
    lowered = name.lower()
    pattern = schema.get("pattern")
    if lowered in _KEY_NAMES or lowered.endswith(("_key", "_id")) or pattern:
        return _identifier(ctx, rng, pattern)
    fmt = schema.get("format")
    if fmt == "date-time":
        return "2025-01-01T00:00:00Z"
    if fmt == "date":
        return "2025-01-01"
    low, high = _length_for(lowered)
    text = _phrase(rng, ctx.words, low, high)
    if any(s in lowered for s in ("title", "name", "heading")):
        # Each word capitalised, the rest left alone (str.title() made "heron's" "Heron'S").
        text = " ".join(word[:1].upper() + word[1:] for word in text.rstrip(".").split(" "))
    return _fit(text, schema)


def _number(schema: Json, rng: random.Random, integer: bool, name: str) -> int | float:
    low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
    high = schema.get("maximum", schema.get("exclusiveMaximum", low + 10))
    if "exclusiveMinimum" in schema and "minimum" not in schema:
        low = low + (1 if integer else 1e-6)
    if "exclusiveMaximum" in schema and "maximum" not in schema:
        high = high - (1 if integer else 1e-6)
    if integer:
        return rng.randint(int(low), max(int(low), int(high)))
    return round(rng.uniform(float(low), float(high)), 3)


def _enum_value(values: list[Json], rng: random.Random, path: str) -> Json:
    # Items of an array cycle through the values in order, so every kind appears when there is room
    # (a storyboard gets a character and an environment, not three props).
    index = re.search(r"\[(\d+)\][^\[]*$", path)
    if index is not None:
        return values[int(index.group(1)) % len(values)]
    return values[rng.randrange(len(values))]


def _identifier(ctx: _Context, rng: random.Random, pattern: str | None) -> str:
    base = "_".join(re.sub(r"[^a-z0-9]", "", w.lower()) for w in _pick_run(rng, ctx.words, 2))
    candidates = [base, base.replace("_", "-"), base.replace("_", ""), base.upper(), "item_" + base]
    for candidate in candidates:
        unique = _unique(ctx, candidate)
        # JSON Schema patterns are unanchored: a search, not a full match.
        if pattern is None or re.search(pattern, unique):
            ctx.used_keys.add(unique)
            return unique
    ctx.used_keys.add(base)
    return base


def _unique(ctx: _Context, candidate: str) -> str:
    unique, n = candidate, 2
    while unique in ctx.used_keys:
        unique, n = f"{candidate}_{n}", n + 1
    return unique


# Cross-references ---------------------------------------------------------------------------------
def _resolve_references(ctx: _Context, node: Json, name: str) -> None:
    """Points fields named after a keyed item's kind at the keys of such items, in turn."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            _resolve_references(ctx, item, f"{name}#{i}")
        return
    if not isinstance(node, dict):
        return
    turn = int(name.rsplit("#", 1)[1]) if "#" in name else 0
    for field_name, value in node.items():
        lowered = field_name.lower().removesuffix("_key")
        targets = [key for kind, key in ctx.keyed if kind == lowered]
        if isinstance(value, str) and targets and value not in targets:
            node[field_name] = targets[turn % len(targets)]
        else:
            inner = name if isinstance(value, dict) else field_name
            _resolve_references(ctx, value, inner)


# Schema reading -----------------------------------------------------------------------------------
def _resolve(ctx: _Context, schema: Json) -> Json:
    if not isinstance(schema, dict):
        raise SchemaError("a schema must be an object")
    seen = 0
    while "$ref" in schema:
        schema = _follow(ctx.root, schema["$ref"])
        seen += 1
        if seen > 32:
            raise SchemaError("$ref cycle")
    for combinator in ("anyOf", "any_of", "oneOf", "allOf"):
        options = schema.get(combinator)
        if options:
            chosen = next((o for o in options if _type_of(_resolve(ctx, o)) != "null"), options[0])
            merged = {k: v for k, v in schema.items() if k != combinator}
            merged.update(_resolve(ctx, chosen))
            return merged
    return schema


def _follow(root: Json, ref: str) -> Json:
    if not ref.startswith("#/"):
        raise SchemaError(f"only local $ref are supported, not {ref!r}")
    node = root
    for part in ref[2:].split("/"):
        if not isinstance(node, dict) or part not in node:
            raise SchemaError(f"$ref {ref!r} does not resolve")
        node = node[part]
    return node


def _type_of(schema: Json) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).lower() != "null"), "null")
    if kind is None:
        if "properties" in schema:
            return "object"
        if "items" in schema:
            return "array"
        return "string" if "enum" in schema or not schema else "object"
    return str(kind).lower()


# Words --------------------------------------------------------------------------------------------
_LABELLED = re.compile(r"^[ \t]*[A-Z][\w ]{0,30}:[ \t]*(\S.*)$", re.MULTILINE)


def _content_words(prompt: str) -> list[str]:
    """The prompt's meaningful words; from its "Label: value" lines when it has some, since a
    templated prompt carries its subject there and its instructions elsewhere."""
    labelled = " ".join(_LABELLED.findall(prompt))
    words = _words(labelled)
    return words if len(words) >= 4 else _words(prompt)


def _words(text: str) -> list[str]:
    # A word right before a colon is a label ("Topic: ..."), not content.
    found = re.findall(r"([A-Za-z][A-Za-z'-]{2,})(:?)", text)
    return [w for w, colon in found if not colon and w.lower() not in _STOP]


def _counts(prompt: str) -> dict[str, int]:
    """Counts the prompt asks for by name: "4 scenes", "three assets"."""
    tokens = re.findall(r"[a-z_]+|\d{1,2}", prompt.lower())
    out: dict[str, int] = {}
    for number, noun in itertools.pairwise(tokens):
        value = int(number) if number.isdigit() else _NUMBER_WORDS.get(number)
        if value and not noun.isdigit():
            out.setdefault(noun, value)
            out.setdefault(noun.rstrip("s"), value)
    return out


def _length_for(name: str) -> tuple[int, int]:
    if any(n in name for n in _LONG_NAMES):
        return 10, 20
    if any(n in name for n in _SHORT_NAMES):
        return 2, 5
    return 5, 10


def _pick_run(rng: random.Random, words: list[str], size: int) -> list[str]:
    start = rng.randrange(len(words))
    return [words[(start + i) % len(words)] for i in range(size)]


def _phrase(rng: random.Random, words: list[str], low: int, high: int) -> str:
    """Runs of consecutive prompt words joined by small connectors, capitalised, with a full stop."""
    target = rng.randint(low, high)
    out: list[str] = []
    while len(out) < target:
        if out and target - len(out) >= 2:  # a connector only with a word after it
            out.append(rng.choice(_CONNECTORS))
        out.extend(w.lower() for w in _pick_run(rng, words, min(target - len(out), rng.randint(2, 4))))
    text = " ".join(out)
    return text[:1].upper() + text[1:] + "."


def _fit(text: str, schema: Json) -> str:
    high = schema.get("maxLength", schema.get("max_length"))
    if high is not None and len(text) > int(high):
        cut = text[: int(high)]
        text = cut.rsplit(" ", 1)[0] if " " in cut else cut
    low = int(schema.get("minLength", schema.get("min_length", 0)))
    while len(text) < low:
        text += " " + text
    return text[: int(high)] if high is not None else text


def _rng(prompt: str, path: str) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256(f"{prompt}\x00{path}".encode()).digest()[:8], "big"))
