"""Workspace paths: the layout the daemon and scripts share, and every way out of the workspace refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.errors import PathRefused, ServiceError
from services.paths import ProjectPaths, Workspace, project_slug
from tests.support.profiles import examples

PAGE_ID = "1f2e3d4c-5b6a-7988-0716-25344352617A"
SLUG = "1f2e3d4c5b6a7988071625344352617a"


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "ws")


@pytest.fixture
def project(workspace: Workspace) -> ProjectPaths:
    return workspace.project("nature", SLUG)


def test_project_layout(workspace: Workspace, project: ProjectPaths) -> None:
    base = workspace.root / "channels" / "nature" / "projects" / SLUG

    assert project.dir == base
    assert project.storyboard() == base / "storyboard.json"
    assert project.asset("heron_wading") == base / "assets" / "heron_wading.png"
    assert project.composite("s07") == base / "composites" / "s07.png"
    assert project.clip("s07") == base / "clips" / "s07.mp4"
    assert project.narration("s07") == base / "narration" / "s07.mp3"
    assert project.sfx("s07") == base / "sfx" / "s07.mp3"
    assert project.final() == base / "final" / f"{SLUG}.mp4"
    assert project.attempt("clip_s07", 2, "mp4") == base / "attempts" / "clip_s07-a2.mp4"


def test_project_slug_from_a_notion_page_id() -> None:
    assert project_slug(PAGE_ID) == SLUG
    assert project_slug(SLUG.upper()) == SLUG


@pytest.mark.parametrize("page_id", ["", "not-a-page", "../../etc", "1f2e3d4c" * 5, "https://notion.so/x"])
def test_project_slug_refuses_what_is_not_a_page_id(page_id: str) -> None:
    with pytest.raises(PathRefused, match=r"^page_id: .* is not a Notion page id"):
        project_slug(page_id)


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("..", "'..' is a path, not a single name"),
        ("/etc/passwd", "'/etc/passwd' is a path, not a single name"),
        ("a/../../b", "'a/../../b' is a path, not a single name"),
        ("a\\b", "is a path, not a single name"),
        ("s07\x00", "contains a NUL byte"),
        ("", "is empty; give a name such as clip_s07"),
        ("S07", "'S07' may only contain lowercase letters, digits and '_'"),
        ("s07.png", "may only contain lowercase letters"),
        ("scène", "'scène' may only contain lowercase letters"),
        ("s" * 101, "is 101 characters; the most is 100"),
    ],
)
def test_item_keys_that_are_not_single_safe_names_are_refused(
    project: ProjectPaths, key: str, reason: str
) -> None:
    with pytest.raises(PathRefused) as caught:
        project.clip(key)

    assert caught.value.field == "scene key"
    assert reason in caught.value.reason
    assert str(caught.value).startswith("scene key: ")
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, ServiceError)


@pytest.mark.parametrize(
    ("channel", "slug", "field"),
    [
        ("..", SLUG, "channel"),
        ("Nature", SLUG, "channel"),
        ("/abs", SLUG, "channel"),
        ("nature", "..", "slug"),
        ("nature", "a b", "slug"),
        ("nature", "", "slug"),
        ("nature", "x\x00", "slug"),
    ],
)
def test_channel_and_slug_are_checked(workspace: Workspace, channel: str, slug: str, field: str) -> None:
    with pytest.raises(PathRefused) as caught:
        workspace.project(channel, slug)

    assert caught.value.field == field


def test_channels_may_use_hyphens_and_slugs_capitals(workspace: Workspace) -> None:
    assert workspace.project("nature-shorts", "Abc_1-2").dir.name == "Abc_1-2"


def test_attempt_number_and_extension_are_checked(project: ProjectPaths) -> None:
    with pytest.raises(PathRefused, match="attempt number: 0 is not a positive whole number"):
        project.attempt("clip_s07", 0, "mp4")
    with pytest.raises(PathRefused, match=r"^extension: "):
        project.attempt("clip_s07", 1, "../mp4")
    with pytest.raises(PathRefused, match=r"^extension: "):
        project.attempt("clip_s07", 1, "MP4")


def test_relative_root_is_refused() -> None:
    with pytest.raises(PathRefused, match="workspace root: 'workspace' is relative"):
        Workspace(Path("workspace"))


def test_a_symlink_inside_the_workspace_pointing_outside_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    workspace = Workspace(tmp_path / "ws")
    (workspace.root / "channels").mkdir(parents=True)
    (workspace.root / "channels" / "nature").symlink_to(outside, target_is_directory=True)

    with pytest.raises(PathRefused) as caught:
        workspace.project("nature", SLUG)

    assert caught.value.field == "project folder"
    assert "outside the workspace" in caught.value.reason
    assert "remove or fix the link" in caught.value.reason


def test_a_symlinked_file_pointing_outside_is_refused(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "ws")
    project = workspace.project("nature", SLUG)
    project.dir.joinpath("clips").mkdir(parents=True)
    project.dir.joinpath("clips", "s01.mp4").symlink_to("/etc/passwd")

    with pytest.raises(PathRefused, match=r"^scene key path: .* outside the workspace"):
        project.clip("s01")
    assert project.clip("s02").name == "s02.mp4"


def test_symlinks_that_stay_inside_are_fine(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / "volume").mkdir(parents=True)
    (root / "channels").symlink_to(root / "volume", target_is_directory=True)

    assert Workspace(root).project("nature", SLUG).clip("s01") == (
        root / "channels" / "nature" / "projects" / SLUG / "clips" / "s01.mp4"
    )


def test_a_symlinked_root_is_fine(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)

    assert Workspace(tmp_path / "link").project("nature", SLUG).final().name == f"{SLUG}.mp4"


# Any characters, with the pieces of traversal attempts over-represented.
_ANY_TEXT = st.lists(
    st.one_of(st.characters(), st.sampled_from(["/", "..", ".", "\\", "\x00", "~", "a", "_", "-", "/etc"])),
    max_size=12,
).map("".join)


@settings(max_examples=examples(ci=30, deep=200), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(channel=_ANY_TEXT, slug=_ANY_TEXT, key=_ANY_TEXT)
def test_any_string_is_refused_or_stays_inside_the_root(
    workspace: Workspace, channel: str, slug: str, key: str
) -> None:
    real_root = workspace.root.resolve()
    try:
        path = workspace.project(channel, slug).asset(key)
    except PathRefused:
        return
    assert path.resolve().is_relative_to(real_root)
    # exactly the layout: each accepted string is one path component, never more
    assert path.relative_to(workspace.root).parts == (
        "channels",
        channel,
        "projects",
        slug,
        "assets",
        f"{key}.png",
    )


@settings(max_examples=examples(ci=30, deep=200))
@given(page_id=st.text(max_size=40))
def test_any_page_id_gives_a_safe_slug_or_is_refused(page_id: str) -> None:
    try:
        slug = project_slug(page_id)
    except PathRefused:
        return
    assert len(slug) == 32
    assert all(c in "0123456789abcdef" for c in slug)
