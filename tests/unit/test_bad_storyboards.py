"""Storyboards broken in every way an operator (or a model) could break them: the parser raises
StoryboardError naming the field, or returns a storyboard whose every key is a safe file name."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from services.errors import StoryboardError
from services.paths import Workspace, item_key
from services.plan import PlanOptions, build_plan
from services.storyboard import Storyboard, parse_storyboard, parse_storyboard_yaml
from tests.support.profiles import examples

ROOT = Path("/srv/nvd-workspace")  # never touched: paths are only resolved, not created
SLUG = "0123456789abcdef0123456789abcdef"
# A problem line starts with where it is: storyboard | title | assets[2].key | scenes[0].frame.x ...
WHERE = re.compile(r"^(storyboard|title|atmosphere|assets|scenes)(\[\d+\])?([.:\[]|$)")

HOSTILE_NAMES = [
    "../../etc",
    "..",
    ".",
    "/abs",
    "/etc/passwd",
    "a/b",
    "a\\b",
    "nul\x00byte",
    "s01\n",
    " s01",
    "-rf",
    "CON",
    "~root",
    "%2e%2e",
    "é",
    "S01",
    "a" * 49,
    "",
]
GOOD_KEYS = st.from_regex(r"[a-z0-9_]{1,12}", fullmatch=True)
KEYS = st.one_of(GOOD_KEYS, st.sampled_from(HOSTILE_NAMES), st.text(max_size=16))
CONTROL = st.sampled_from(["\x00", "\x01", "\x07", "\x1b", "\x7f", "\x85", "\u2028", "\ufeff", "\r"])
# Text an operator might write: any script, emoji, quotes, YAML's own symbols; never blank.
GOOD_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(exclude_categories=("Cc", "Cs")), st.sampled_from("\n\t:#'\"-{}[]&*!|>%@`")
    ),
    min_size=1,
    max_size=40,
).filter(str.strip)
TEXT = st.one_of(
    st.text(max_size=40),
    st.tuples(st.text(min_size=1, max_size=8), st.integers(100, 12_000)).map(lambda t: (t[0] * t[1])[: t[1]]),
    st.tuples(st.text(max_size=10), CONTROL, st.text(max_size=10)).map("".join),
    st.sampled_from(HOSTILE_NAMES),
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), TEXT)
JUNK = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), inner)
    ),
    max_leaves=6,
)
KINDS = ("environment", "character", "prop")
# YAML syntax spliced into otherwise good YAML, including a tag that would run code under yaml.load.
SPLICES = [
    ": ",
    "- ",
    "\t",
    "{",
    "}",
    "[",
    "]",
    "&a ",
    "*a",
    "!!python/object/apply:os.system ",
    "%YAML 1.1\n",
]


def sometimes_broken(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Good eleven times in twelve: a storyboard has a dozen fields or more, and most should pass so
    that a broken one is met among otherwise valid fields (and a third of the storyboards are valid)."""
    return st.sampled_from((good,) * 11 + (bad,)).flatmap(lambda chosen: chosen)


@st.composite
def storyboard_data(draw: st.DrawFn) -> Any:
    """Mostly storyboard-shaped data with some fields broken, sometimes nothing like one."""
    if draw(st.sampled_from(range(20))) == 19:
        return draw(JUNK)
    assets: list[Any] = []
    kinds = (st.just("environment"), st.sampled_from(KINDS))
    for index in range(draw(st.sampled_from((2, 3, 1, 4, 0)))):
        asset = {
            "key": draw(sometimes_broken(GOOD_KEYS.map(lambda k, i=index: f"{k}{i}"), KEYS)),
            # The first asset is an environment, so that most scenes can have a valid frame.
            "kind": draw(sometimes_broken(kinds[0] if index == 0 else kinds[1], st.one_of(TEXT, JUNK))),
            "prompt": draw(sometimes_broken(GOOD_TEXT, st.one_of(TEXT, JUNK))),
        }
        assets.append(_mangle(draw, asset))
    named = [a for a in assets if isinstance(a, dict) and isinstance(a.get("key"), str)]
    keys = [a["key"] for a in named]
    envs = [a["key"] for a in named if a.get("kind") == "environment"] or keys
    others = [a["key"] for a in named if a.get("kind") in ("character", "prop")]
    scenes: list[Any] = []
    for index in range(draw(st.sampled_from((1, 2, 3, 0)))):
        frame: Any = {"environment": draw(sometimes_broken(st.sampled_from(envs), KEYS) if envs else KEYS)}
        if draw(st.booleans()):
            character = st.sampled_from(others) if others else st.none()
            frame["character"] = draw(sometimes_broken(character, st.one_of(KEYS, st.none())))
        scene = {
            "key": draw(sometimes_broken(GOOD_KEYS.map(lambda k, i=index: f"{k}{i}"), KEYS)),
            "frame": _mangle(draw, frame),
            "motion": draw(sometimes_broken(GOOD_TEXT, st.one_of(TEXT, JUNK))),
            "narration": draw(sometimes_broken(GOOD_TEXT, st.one_of(TEXT, JUNK))),
            "sfx": draw(sometimes_broken(GOOD_TEXT, st.one_of(TEXT, JUNK))),
        }
        scenes.append(_mangle(draw, scene))
    data: dict[Any, Any] = {
        "title": draw(sometimes_broken(GOOD_TEXT, st.one_of(TEXT, JUNK))),
        "atmosphere": draw(sometimes_broken(GOOD_TEXT, st.one_of(TEXT, JUNK))),
        "assets": assets,
        "scenes": scenes,
    }
    return _mangle(draw, data)


def _mangle(draw: st.DrawFn, mapping: dict[Any, Any]) -> Any:
    """Usually untouched; else a field dropped, a field added, or the whole thing replaced."""
    choice = draw(st.sampled_from(range(60)))  # 57-59: mangled (Hypothesis favours the first values)
    if choice == 57 and mapping:
        mapping.pop(draw(st.sampled_from(sorted(mapping, key=str))))
    elif choice == 58:
        mapping[draw(st.one_of(st.text(max_size=8), st.integers(), st.none()))] = draw(JUNK)
    elif choice == 59:
        return draw(JUNK)
    return mapping


@st.composite
def storyboard_yaml(draw: st.DrawFn) -> str:
    """YAML text: dumped data, the same text cut or spliced with syntax, or any text at all."""
    kind = draw(st.integers(0, 7))
    if kind == 0:
        return draw(st.text(max_size=200))
    try:
        text = yaml.safe_dump(draw(storyboard_data()), allow_unicode=True, sort_keys=False)
    except yaml.YAMLError:
        return draw(st.text(max_size=200))
    if kind == 1 and text:
        cut = draw(st.integers(0, len(text)))
        return text[:cut]
    if kind == 2:
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(st.sampled_from(SPLICES)) + text[at:]
    return text


def _check_safe(sb: Storyboard) -> None:
    """Every name the storyboard hands on becomes exactly one file name inside the workspace."""
    project = Workspace(ROOT).project("nature", SLUG)
    real_root = Path(ROOT).resolve()
    for asset in sb.assets:
        assert project.asset(asset.key).resolve().is_relative_to(real_root)
        assert project.asset(asset.key).name == f"{asset.key}.png"
    for scene in sb.scenes:
        for path in (project.composite(scene.key), project.clip(scene.key), project.narration(scene.key)):
            assert path.resolve().parent.parent == (real_root / "channels/nature/projects" / SLUG)
        assert scene.frame.environment in {a.key for a in sb.assets}
        assert scene.frame.character is None or scene.frame.character in {a.key for a in sb.assets}
    for planned in build_plan({"title": "t"}, sb, PlanOptions(), given=True):
        item_key(planned.key)
        project.attempt(planned.key, 1, "bin")


def _check_problems(exc: StoryboardError) -> None:
    assert exc.problems, "a StoryboardError without a problem tells the operator nothing"
    for problem in exc.problems:
        # Where it is: a section (assets[2].key, scenes[0].frame...) or the misspelt field itself.
        assert WHERE.match(problem) or ": is not a known field;" in problem, (
            f"the problem does not say where it is: {problem!r}"
        )
        assert "Input should be" not in problem, f"pydantic's words, not the operator's: {problem!r}"
        assert len(problem) < 2_000, "one problem fits on a line of the Error Log"


@settings(
    max_examples=examples(ci=40, deep=300), suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(text=storyboard_yaml())
def test_any_yaml_is_a_safe_storyboard_or_a_storyboard_error_naming_the_field(text: str) -> None:
    try:
        sb = parse_storyboard_yaml(text)
    except StoryboardError as exc:
        _check_problems(exc)
        return
    event("valid storyboard")
    _check_safe(sb)


@settings(
    max_examples=examples(ci=40, deep=300), suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(data=storyboard_data())
def test_any_data_is_a_safe_storyboard_or_a_storyboard_error_naming_the_field(data: Any) -> None:
    """The same rules for a storyboard that arrives as data (a generated storyboard.json)."""
    try:
        sb = parse_storyboard(data)
    except StoryboardError as exc:
        _check_problems(exc)
        return
    event("valid storyboard")
    _check_safe(sb)


def test_aliases_that_expand_a_storyboard_a_billion_times_are_refused_quickly() -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    for target in ("title", "scenes", "assets"):
        text = "\n".join([*lines, f"{target}: *a8"])
        try:
            parse_storyboard_yaml(text)
        except StoryboardError as exc:
            _check_problems(exc)
        else:
            raise AssertionError("a billion laughs is no storyboard")
