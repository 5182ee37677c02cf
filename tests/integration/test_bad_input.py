"""Bad input through Notion: generated pages (150 per run, 500 in the deep profile), Queued in
batches and taken in by the real intake against the sandbox's Notion. The daemon never crashes; a
bad page ends with Status Error and an Error Log naming each field at fault and the fix; a good page
becomes a task whose files stay inside the workspace, and good pages still run to a finished video
with the fake scripts.

Hypothesis draws each batch of pages (derandomized: the same pages every run). A page has up to
two flaws chosen from FLAWS on top of valid, often hostile-looking values (any script, emoji, YAML
and shell symbols, '../../etc' and '/abs' where they are only text), so each bad page's expected
problems are known exactly.
"""

from __future__ import annotations

import asyncio
import os
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from daemon.notion.sync import sync_tasks
from daemon.tasks import cancel_task
from services.storyboard import parse_storyboard, storyboard_to_yaml
from tests.support.engine_kit import now
from tests.support.notion_kit import NotionKit
from tests.support.profiles import examples
from tests.support.sandbox_proc import SandboxProcess

PER_BATCH = 25
# The deep profile makes 500 pages on SQLite and 150 on PostgreSQL; every `make test` 150 and 75.
# The intake's logic is the same on both and 500 pages take most of a minute per database on a
# loaded 2-core machine; what differs is storage, which fewer pages cover (PostgreSQL refusing a NUL
# in JSONB was found that way).
BATCHES = {"sqlite": examples(ci=6, deep=20), "postgres": examples(ci=3, deep=6)}
SLUG = re.compile(r"^[0-9a-f]{32}$")
PIECE = 2000  # Notion: characters per rich text item
TITLE_LIMIT = 100  # YouTube's, and the storyboard's title rule
TOPIC_LIMIT = 2_000
DIRECTION_LIMIT = 10_000
# How each page-level problem line begins (the storyboard's own lines begin with a lowercase field).
PAGE_PROBLEMS = ("Channel ", "Priority ", "Title ", "Topic ", "Story Direction ", "The Storyboard block ")
# A YAML tag that ran code would create the file this names; each test puts its own path in its
# place when it writes the page, so parallel runs never share one.
CANARY = "@canary-path@"

HOSTILE = [
    "../../etc",
    "../../../../etc/passwd",
    "/abs",
    "/etc/shadow",
    "~/.ssh/id_rsa",
    "C:\\Windows\\system32",
    "..\\..\\boot.ini",
    "$(rm -rf ~)",
    "`id`",
    "'; DROP TABLE task; --",
    "%2e%2e%2f",
    "{{7*7}}",
    "--output=/etc/passwd",
    "-rf",
]
# What an operator may really type: any script and emoji, quotes, YAML and shell symbols; no control
# characters but line breaks and tabs (those are flaws of their own).
LETTERS = st.one_of(
    st.characters(exclude_categories=("Cc", "Cs")),
    st.sampled_from("\n\t:#'\"-{}[]&*!|>%@`$\\/."),
)
CONTROLS = [chr(c) for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0))]


def words(max_size: int) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(LETTERS, min_size=1, max_size=min(max_size, 60)), st.sampled_from(HOSTILE)
    ).filter(lambda s: bool(s.strip()) and len(s.strip()) <= max_size)


def long_text(low: int, high: int) -> st.SearchStrategy[str]:
    """Text of exactly `low`..`high` characters with no blank ends, built by repetition (drawing each
    character is slow)."""
    return st.tuples(words(40), st.integers(low, high)).map(
        lambda t: ("x" + (t[0] + " ") * (t[1] // (len(t[0]) + 1) + 1))[: t[1] - 1] + "x"
    )


def with_control(text: st.SearchStrategy[str]) -> st.SearchStrategy[tuple[str, str]]:
    """(text with one control character inside it, that character); inside, because strip() takes
    some of them (\x0b, \x1c...) for blanks at either end."""
    return st.tuples(text, st.sampled_from(CONTROLS), st.integers(0, 60)).map(
        lambda t: ("x" + t[0][: t[2]] + t[1] + t[0][t[2] :] + "x", t[1])
    )


def option_names(avoid: set[str]) -> st.SearchStrategy[str]:
    """Select option names Notion accepts: 1-100 characters, no commas (never one of `avoid`)."""
    return (
        st.one_of(st.text(min_size=1, max_size=100), st.sampled_from(HOSTILE), st.just("nature\x00"))
        .map(lambda s: s.replace(",", ";").strip())
        .filter(lambda s: bool(s) and s not in avoid)
    )


# --- storyboards ----------------------------------------------------------------------------------
@st.composite
def valid_storyboards(draw: st.DrawFn) -> dict[str, Any]:
    """A valid storyboard of 1-2 scenes with hostile-looking but harmless text."""
    scenes = draw(st.integers(1, 2))
    data = {
        "title": draw(words(TITLE_LIMIT)),
        "atmosphere": draw(st.one_of(st.just(""), words(200))),
        "assets": [
            {"key": "env_main", "kind": "environment", "prompt": draw(words(300))},
            {
                "key": "subject",
                "kind": draw(st.sampled_from(["character", "prop"])),
                "prompt": draw(words(300)),
            },
        ],
        "scenes": [
            {
                "key": f"s{i:02d}",
                "frame": {"environment": "env_main", "character": draw(st.sampled_from(["subject", None]))},
                "motion": draw(words(400)),
                "narration": draw(st.one_of(words(400), long_text(2_000, 9_000))),
                "sfx": draw(words(400)),
            }
            for i in range(1, scenes + 1)
        ],
    }
    parse_storyboard(data)  # the strategy's own promise: valid
    return data


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=10_000)


# Each breaker spoils a valid storyboard (as data or as YAML text) and says where the Error Log must
# point: (name, breaker, expected text in the Error Log).
Breaker = Callable[[dict[str, Any], st.DrawFn], str]


def _set(path: tuple[Any, ...], value: Any) -> Breaker:
    def breaker(data: dict[str, Any], draw: st.DrawFn) -> str:
        target: Any = data
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value(draw) if callable(value) else value
        return _dump(data)

    return breaker


def _text(text: str) -> Breaker:
    return lambda data, draw: text


def _deep(data: dict[str, Any], draw: st.DrawFn) -> str:
    # Deeper than any recursion limit (Hypothesis raises Python's while a test runs).
    return "scenes: " + "[" * 20_000 + "]" * 20_000


def _unclosed(data: dict[str, Any], draw: st.DrawFn) -> str:
    return _dump(data).replace("scenes:", "scenes: [unclosed\n", 1)


def _many_duplicates(data: dict[str, Any], draw: st.DrawFn) -> str:
    # Each copy's narration cut to 1,000 characters: 61 long ones (9,000 each) made a block longer
    # than Notion holds (100 pieces of 2,000), which no operator could write.
    first = data["scenes"][0]
    data["scenes"] = [dict(first, narration=first["narration"][:1_000]) for _ in range(61)]
    return _dump(data)


def _long_field_name(data: dict[str, Any], draw: st.DrawFn) -> str:
    data["scenes"][0]["n" * 6_000] = "a field name as long as a page"
    return _dump(data)


BREAKERS: list[tuple[str, Breaker, str]] = [
    ("bad yaml", _unclosed, "storyboard: the YAML does not parse at line"),
    ("tab indent", _text("title: x\n\tscenes: []\n"), "storyboard: the YAML does not parse at line 2"),
    ("not a mapping", _text("- just\n- a list\n"), "storyboard: must be a mapping of 'name: value' lines"),
    ("nested", _deep, "storyboard: the YAML is nested hundreds of levels deep"),
    (
        "code tag",
        _text(f"!!python/object/apply:os.system ['touch {CANARY}']\n"),
        "storyboard: the YAML does not parse",
    ),
    ("null field", _set(("scenes", 0, None), "x"), "scenes[0]: a field has no name (null)"),
    ("unknown field", _set(("scenes", 0, "narator"), "Hello"), "scenes[0].narator: is not a known field"),
    (
        "missing field",
        lambda d, draw: _dump({k: v for k, v in d.items() if k != "assets"}),
        "assets: is missing",
    ),
    (
        "traversal key",
        _set(("assets", 0, "key"), "../../etc"),
        "assets[0].key: '../../etc' is not a valid key",
    ),
    ("absolute key", _set(("scenes", 0, "key"), "/abs"), "scenes[0].key: '/abs' is not a valid key"),
    ("nul key", _set(("scenes", 0, "key"), "s\x0001"), "scenes[0].key"),
    (
        "long key",
        _set(("scenes", 0, "key"), "s" * 49),
        "scenes[0].key: 49 characters is over the limit of 48",
    ),
    (
        "missing asset",
        _set(("scenes", 0, "frame", "environment"), "nowhere"),
        "scenes[0].frame.environment: 'nowhere' is not an asset key; use one of: env_main",
    ),
    (
        "wrong kind",
        _set(("scenes", 0, "frame", "environment"), "subject"),
        "scenes[0].frame.environment: 'subject' is a",
    ),
    (
        "huge narration",
        _set(("scenes", 0, "narration"), lambda draw: draw(long_text(10_001, 30_000))),
        "scenes[0].narration: ",  # "<n> characters is over ElevenLabs' speech limit of 10,000"
    ),
    (
        "control narration",
        _set(("scenes", 0, "narration"), lambda draw: draw(with_control(words(80)))[0]),
        "scenes[0].narration: contains the control character U+",
    ),
    ("number title", _set(("title",), 12345), "title: must be text, not the number 12345"),
    ("blank motion", _set(("scenes", 0, "motion"), "   "), "scenes[0].motion: is empty"),
    ("no scenes", _set(("scenes",), []), "scenes: there are none; add at least one"),
    ("too many scenes", _many_duplicates, "scenes: 61 scenes is over the maximum of 60"),
    ("huge field name", _long_field_name, "is not a known field"),
]


# --- pages ----------------------------------------------------------------------------------------
FLAWS = (
    "channel unknown",
    "channel empty",
    "priority unknown",
    "title blank",
    "title huge",
    "title control",
    "topic blank",
    "topic huge",
    "topic control",
    "direction huge",
    "direction control",
    "storyboard broken",
)
# Flaws of the fields used only when there is no storyboard: such a page gets no storyboard block.
NEEDS_NO_STORYBOARD = {"title blank", "topic blank", "topic huge", "topic control", "direction huge"}
NEEDS_NO_STORYBOARD |= {"direction control"}


@dataclass
class PageSpec:
    flaws: list[str]
    title: str | None  # None: the property is left empty
    topic: str | None
    direction: str | None
    channel: str | None
    priority: str | None
    storyboard: str | None  # the YAML of the page's Storyboard block; None: no block
    expect: list[str] = field(default_factory=list)  # in the Error Log; empty for a good page
    page_id: str = ""

    def __repr__(self) -> str:
        """Short: Hypothesis prints a failing batch, and a page may hold 200,000 characters."""
        shown = {
            k: v[:60] + "..." if isinstance(v, str) and len(v) > 60 else v for k, v in vars(self).items()
        }
        return f"PageSpec({shown!r})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


def _escaped(text: str) -> str:
    """How the Error Log shows operator text: control characters as escapes (\\x00)."""
    return "".join(
        c.encode("unicode_escape").decode()
        if c not in "\n\t" and unicodedata.category(c) in ("Cc", "Cs")
        else c
        for c in text
    )


def _control_problem(field_name: str, text: str) -> str:
    stripped = text.strip()
    for position, char in enumerate(stripped):
        if char not in "\n\t" and unicodedata.category(char) in ("Cc", "Cs"):
            return (
                f"{field_name} contains the control character U+{ord(char):04X} at character {position + 1:,}"
            )
    raise AssertionError("no control character")


@st.composite
def pages(draw: st.DrawFn, channel: str, forced: str | None = None) -> PageSpec:
    """A page with up to two flaws; `forced`, a flaw it has for sure (and at most one other)."""
    # At most one flaw per field ("title huge" and "title blank" cannot both hold).
    flaws = draw(st.lists(st.sampled_from(FLAWS), max_size=2, unique_by=lambda f: f.split()[0]))
    if forced is not None:
        flaws = [forced, *[f for f in flaws if f.split()[0] != forced.split()[0]][:1]]
    if "storyboard broken" in flaws and NEEDS_NO_STORYBOARD & set(flaws):
        if forced == "storyboard broken":
            flaws = [forced]
        else:
            flaws.remove("storyboard broken")
    with_storyboard = "storyboard broken" in flaws or (
        not NEEDS_NO_STORYBOARD & set(flaws) and draw(st.booleans())
    )
    spec = PageSpec(
        flaws=flaws,
        title=draw(words(TITLE_LIMIT)),
        topic=draw(st.one_of(words(TOPIC_LIMIT), long_text(1_000, TOPIC_LIMIT))),
        direction=draw(st.one_of(st.none(), words(DIRECTION_LIMIT), long_text(2_000, DIRECTION_LIMIT))),
        channel=channel,
        priority=draw(st.sampled_from([None, "High", "Normal", "Low"])),
        storyboard=_dump(draw(valid_storyboards())) if with_storyboard else None,
    )
    for flaw in flaws:
        _apply(draw, spec, flaw, channel)
    return spec


def batch_of(channel: str) -> st.SearchStrategy[list[PageSpec]]:
    """PER_BATCH pages: one with each flaw for sure (every batch covers them all, whatever the
    draws), the rest with any."""
    every = st.tuples(*(pages(channel, forced=flaw) for flaw in FLAWS))
    rest = st.lists(pages(channel), min_size=PER_BATCH - len(FLAWS), max_size=PER_BATCH - len(FLAWS))
    return st.tuples(every, rest).map(lambda drawn: [*drawn[0], *drawn[1]])


def _apply(draw: st.DrawFn, spec: PageSpec, flaw: str, channel: str) -> None:  # noqa: C901
    if flaw == "channel unknown":
        spec.channel = draw(option_names({channel}))
        spec.expect.append(
            f"Channel '{_escaped(spec.channel)}' is not a channel of this daemon: pick one of {channel}"
        )
    elif flaw == "channel empty":
        spec.channel = None
        spec.expect.append(f"Channel is empty: pick one of {channel}")
    elif flaw == "priority unknown":
        spec.priority = draw(option_names({"High", "Normal", "Low"}))
        spec.expect.append(
            f"Priority '{_escaped(spec.priority)}' is not a priority: pick High, Normal or Low"
        )
    elif flaw == "title blank":
        spec.title = draw(st.sampled_from([None, "", "   ", "\n\t "]))
        spec.expect.append("Title is empty: give the video a title")
    elif flaw == "title huge":
        spec.title = draw(long_text(TITLE_LIMIT + 1, 6_000))
        length = len(spec.title.strip())
        spec.expect.append(
            f"Title is {length:,} characters, over YouTube's limit of {TITLE_LIMIT}: shorten it"
        )
    elif flaw == "title control":
        spec.title = draw(with_control(words(60)))[0]
        spec.expect.append(_control_problem("Title", spec.title))
    elif flaw == "topic blank":
        spec.topic = draw(st.sampled_from([None, "", " ", "\n\n", "\t"]))
        spec.expect.append("Topic is empty: write what the video is about in Topic")
    elif flaw == "topic huge":
        spec.topic = draw(long_text(TOPIC_LIMIT + 1, 200_000))
        spec.expect.append(
            f"Topic is {len(spec.topic.strip()):,} characters, over the limit of {TOPIC_LIMIT:,}: shorten it"
        )
    elif flaw == "topic control":
        spec.topic = draw(with_control(words(400)))[0]
        spec.expect.append(_control_problem("Topic", spec.topic))
    elif flaw == "direction huge":
        spec.direction = draw(long_text(DIRECTION_LIMIT + 1, 200_000))
        spec.expect.append(
            f"Story Direction is {len(spec.direction.strip()):,} characters, over the limit of "
            f"{DIRECTION_LIMIT:,}: shorten it"
        )
    elif flaw == "direction control":
        spec.direction = draw(with_control(words(400)))[0]
        spec.expect.append(_control_problem("Story Direction", spec.direction))
    elif flaw == "storyboard broken":
        _name, breaker, where = draw(st.sampled_from(BREAKERS))
        spec.storyboard = breaker(yaml.safe_load(spec.storyboard or ""), draw)
        spec.expect += ["The Storyboard block of this page has problems:", where]


# --- Notion ---------------------------------------------------------------------------------------
def _rich(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": {"content": text[i : i + PIECE]}} for i in range(0, len(text), PIECE)]


def _properties(spec: PageSpec) -> dict[str, Any]:
    props: dict[str, Any] = {"Status": {"select": {"name": "Queued"}}}
    if spec.title is not None:
        props["Title"] = {"title": _rich(spec.title)}
    for name, value in (("Topic", spec.topic), ("Story Direction", spec.direction)):
        if value is not None:
            props[name] = {"rich_text": _rich(value)}
    for name, value in (("Channel", spec.channel), ("Priority", spec.priority)):
        if value is not None:
            props[name] = {"select": {"name": value}}
    return props


def _body(spec: PageSpec) -> list[dict[str, Any]]:
    if spec.storyboard is None:
        return []
    heading = {"type": "heading_2", "heading_2": {"rich_text": _rich("Storyboard")}}
    code = {"type": "code", "code": {"language": "yaml", "rich_text": _rich(spec.storyboard)}}
    return [heading, code]


async def _create(kit: NotionKit, spec: PageSpec, canary: Path) -> None:
    assert kit.operator
    if spec.storyboard:
        spec.storyboard = spec.storyboard.replace(CANARY, str(canary))
    page = await kit.operator.call(
        "POST",
        "pages",
        body={
            "parent": {"type": "data_source_id", "data_source_id": kit.seeded["data_source_id"]},
            "properties": _properties(spec),
            "children": _body(spec),
        },
    )
    spec.page_id = str(page["id"])


async def _check(kit: NotionKit, spec: PageSpec, workspace: Path) -> None:
    shown = await kit.page(spec.page_id)
    task = await kit.task(spec.page_id)
    context = repr(spec)
    if spec.expect:
        assert shown["Status"] == "Error", context
        log = shown["Error Log"]
        for expected in spec.expect:
            assert expected in log, f"{expected!r} not in the Error Log {log[:3000]!r}\n{context}"
        assert log.rstrip().endswith("then set Status to Queued again."), log[-300:]
        # One line per flaw, and no problem found where there is none.
        assert len([line for line in log.splitlines() if line.startswith(PAGE_PROBLEMS)]) == len(
            spec.flaws
        ), (
            log[:3000],
            context,
        )
        assert task is None, f"a bad page made a task: {context}"
        comments = [c for c in await kit.comments(spec.page_id) if c.startswith("This page needs a fix.")]
        assert len(comments) == 1, (comments, context)
        return
    assert task is not None, f"a good page made no task; Error Log {shown['Error Log'][:2000]!r}\n{context}"
    assert shown["Status"] != "Error" and shown["Error Log"] == "", (shown, context)
    assert SLUG.match(task.project_slug) and task.project_slug == spec.page_id.replace("-", "")
    project = workspace / "channels" / task.channel_id / "projects" / task.project_slug
    for item in (await kit.items(task.id)).values():
        if item.output_path:
            assert (workspace / item.output_path).resolve().is_relative_to(project.resolve()), context


def _files(root: Path) -> set[Path]:
    return {Path(folder, name) for folder, _, names in os.walk(root) for name in names}


async def _batch(
    kit: NotionKit, writer: Writer, specs: list[PageSpec], workspace: Path, canary: Path
) -> None:
    for spec in specs:
        await _create(kit, spec, canary)
    # One poll takes the whole batch in and returns normally, whatever the pages hold.
    assert await kit.poll() == len(specs)
    await writer.flush_all()
    for spec in specs:
        await _check(kit, spec, workspace)


@dataclass
class Writer:
    """Syncs and flushes as the daemon's outbox job does: every task once, then only those at work
    (and those that just stopped), so each batch costs the same however many pages came before."""

    kit: NotionKit
    watched: set[int] | None = None

    async def flush_all(self) -> None:
        app = self.kit.app
        assert app
        jobs = app.notion_jobs()
        assert jobs
        for _ in range(50):  # one flush writes at most 200 properties
            t = now()
            self.watched = await sync_tasks(app.engine, app.settings.workspace_dir, t, self.watched)
            if not await jobs.writer.flush(t):
                return
        raise AssertionError("the outbox never emptied")


def _allowed(path: Path, tmp: Path, workspace: Path) -> bool:
    """Files the test set-up makes, and under the workspace only the project layout."""
    relative = path.relative_to(tmp)
    if relative.parts[0] in ("scripts", "channels") or relative.name.startswith("daemon.db"):
        return True
    if not path.is_relative_to(workspace):
        return False
    parts = path.relative_to(workspace).parts
    return parts[0] == "run" or (
        len(parts) >= 5 and parts[0] == "channels" and parts[2] == "projects" and bool(SLUG.match(parts[3]))
    )


@pytest.mark.slow
def test_generated_pages_bad_ones_get_error_good_ones_produce(
    sandbox: SandboxProcess, db_url: str, tmp_path: Path
) -> None:
    """Runs on both databases (the deep profile makes 500 pages on SQLite); the pages are made and
    read through the sandbox's Notion API."""
    canary = tmp_path / "canary"
    batches = BATCHES["postgres" if db_url.startswith("postgresql") else "sqlite"]
    workspace = tmp_path / "ws"
    beside = set(os.listdir(tmp_path.parent))  # the session's other test folders
    made: list[PageSpec] = []
    with asyncio.Runner() as runner:
        kit = NotionKit(sandbox, db_url, tmp_path)
        runner.run(kit.start(projects=0, channel={"scenes": 1}))
        try:
            assert kit.app
            channel = next(iter(kit.app.channels.values()))
            assert channel.notion and channel.notion.channel_option
            option = channel.notion.channel_option
            writer = Writer(kit)

            @settings(
                max_examples=batches,
                derandomize=True,
                database=None,
                deadline=None,
                # A failing batch is reported as it is: shrinking would make hundreds more pages.
                phases=(Phase.explicit, Phase.generate),
                suppress_health_check=[
                    HealthCheck.too_slow,
                    HealthCheck.data_too_large,
                    HealthCheck.large_base_example,
                ],
            )
            @given(specs=batch_of(option))
            def batch(specs: list[PageSpec]) -> None:
                runner.run(_batch(kit, writer, specs, workspace, canary))
                made.extend(specs)

            batch()
            assert len(made) == batches * PER_BATCH
            bad = [s for s in made if s.expect]
            good = [s for s in made if not s.expect]
            flaws = {f for s in bad for f in s.flaws}
            assert flaws == set(FLAWS), f"flaws never drawn: {set(FLAWS) - flaws}"
            assert len(bad) > len(made) / 3 and len(good) > len(made) / 5, (len(bad), len(good))
            assert not canary.exists(), "a YAML tag in a Storyboard block ran code"
            stray = [p for p in _files(tmp_path) if not _allowed(p, tmp_path, workspace)]
            assert stray == [], f"files outside the project layout: {stray[:10]}"
            assert set(os.listdir(tmp_path.parent)) == beside, (
                "something was written beside the test's folder"
            )
            runner.run(_good_pages_still_run(kit, writer, good))
        finally:
            runner.run(kit.close())


async def _good_pages_still_run(kit: NotionKit, writer: Writer, good: list[PageSpec]) -> None:
    """Two good pages (one with a storyboard of its own, one without) run to a finished video; the
    others are cancelled to keep the run short."""
    chosen = [s for s in good if s.storyboard][:1] + [s for s in good if not s.storyboard][:1]
    assert len(chosen) == 2
    keep = {(await kit.task(s.page_id)).id for s in chosen}
    assert kit.app
    for task in await kit.tasks():
        if task.id not in keep and task.state == "active":
            await cancel_task(kit.app.engine, task.id, now())

    async def done() -> bool:
        tasks = [await kit.task(s.page_id) for s in chosen]
        assert all(t.state != "error" for t in tasks), [t.error for t in tasks]
        return all(t.state == "done" for t in tasks)

    await kit.work(done, timeout=120)
    await writer.flush_all()
    workspace = kit.app.settings.workspace_dir
    for spec in chosen:
        shown = await kit.page(spec.page_id)
        assert shown["Status"] == "Ready", repr(spec)
        task = await kit.task(spec.page_id)
        video = workspace / task.final_video_path
        assert video.is_file() and video.resolve().is_relative_to(workspace.resolve())


def test_each_way_of_breaking_a_storyboard_is_named_in_its_problems() -> None:
    """The storyboard breakers of the generated-pages run, checked quickly without Notion: each problem
    names the field that was broken."""
    from services.errors import StoryboardError
    from services.storyboard import parse_storyboard_yaml

    base = {
        "title": "Heron",
        "atmosphere": "",
        "assets": [
            {"key": "env_main", "kind": "environment", "prompt": "Reeds"},
            {"key": "subject", "kind": "character", "prompt": "A heron"},
        ],
        "scenes": [
            {
                "key": "s01",
                "frame": {"environment": "env_main", "character": "subject"},
                "motion": "Slow push in",
                "narration": "Dawn.",
                "sfx": "Water",
            }
        ],
    }
    assert storyboard_to_yaml(parse_storyboard(base))

    @settings(max_examples=len(BREAKERS) * 3, derandomize=True, database=None, deadline=None)
    @given(data=st.data(), index=st.integers(0, len(BREAKERS) - 1))
    def check(data: st.DataObject, index: int) -> None:
        name, breaker, where = BREAKERS[index]
        text = breaker(yaml.safe_load(_dump(base)), data.draw)
        with pytest.raises(StoryboardError) as caught:
            parse_storyboard_yaml(text)
        assert where in str(caught.value), (name, str(caught.value)[:500])

    check()
