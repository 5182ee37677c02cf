"""Where a project's files live in the workspace, with every component checked before it becomes a path.

Layout: <root>/channels/<channel>/projects/<slug>/{storyboard.json, assets/<key>.png,
composites/<scene>.png, clips/<scene>.mp4, narration/<scene>.mp3, sfx/<scene>.mp3, final/<slug>.mp4,
attempts/<item_key>-a<n>.<ext>}.

The one filesystem read in services/: each path is resolved (os.path.realpath, non-strict, so the
file need not exist) and must land inside the resolved root. Names come from Notion pages and
storyboards that an operator or a model wrote; a pattern check stops '..' and '/', but only
resolving stops a symlink inside the workspace that points out of it. This narrows, not closes, the
window in which a link could be swapped after the check; the workspace is the daemon's own volume.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from services.errors import PathRefused
from services.ids import ChannelId, ItemKey, ProjectSlug

MAX_COMPONENT_LENGTH = 100  # far below NAME_MAX (255 bytes) even after '-a12.json' is appended

_CHANNEL = re.compile(r"[a-z0-9_-]+")
_SLUG = re.compile(r"[a-zA-Z0-9_-]+")
_KEY = re.compile(r"[a-z0-9_]+")
_EXTENSION = re.compile(r"[a-z0-9]{1,8}")
_PAGE_ID = re.compile(r"[0-9a-f]{32}")


# The layout, relative to the workspace: the one definition behind the daemon's paths (an item's
# output, an attempt's, the sweep of stale attempts) and the checked ProjectPaths below. These build
# text only; names are checked where they enter (a new task's channel and slug, a storyboard's keys).
FOLDERS = {
    "asset": "assets",
    "composite": "composites",
    "clip": "clips",
    "narration": "narration",
    "sfx": "sfx",
    "music": "music",
}
ATTEMPTS_GLOB = "channels/*/projects/*/attempts/*"


def project_dir(channel: str, slug: str) -> str:
    return f"channels/{channel}/projects/{slug}"


def item_file(channel: str, slug: str, folder: str, name: str, extension: str) -> str:
    """A file in one of a project's folders; `extension` with its dot."""
    return f"{project_dir(channel, slug)}/{folder}/{name}{extension}"


def item_output(kind: str, key: str, channel: str, slug: str, extension: str) -> str:
    """Where an item's output lives once it succeeded: the storyboard and the final cut at the
    project's top, the rest in their kind's folder under the key without its kind (asset_hero ->
    assets/hero.png)."""
    if kind == "storyboard":
        return f"{project_dir(channel, slug)}/storyboard{extension}"
    if kind == "assembly":
        return item_file(channel, slug, "final", slug, extension)
    if kind == "upload":  # what was published: final/<slug>.youtube.json, beside the cut
        return item_file(channel, slug, "final", f"{slug}.youtube", extension)
    return item_file(channel, slug, FOLDERS[kind], key.split("_", 1)[1], extension)


def preview_of(output: str, extension: str) -> str:
    """A smaller stand-in for a project's file (for a Notion workspace whose upload cap it is over):
    <project>/previews/<name><extension>, beside the project's other folders."""
    parts = output.split("/")
    return "/".join([*parts[:4], "previews", parts[-1].rsplit(".", 1)[0] + extension])


def attempt_output(channel: str, slug: str, key: str, number: int, extension: str) -> str:
    """An attempt's own output: written there first, moved to the item's under the lease fence."""
    return item_file(channel, slug, "attempts", f"{key}-a{number}", extension)


def _checked(field: str, value: object, pattern: re.Pattern[str], allowed: str, example: str) -> str:
    """Return `value` if it is a single safe name, else raise PathRefused naming the field."""
    if not isinstance(value, str):
        raise PathRefused(field, f"must be text, not {type(value).__name__}")
    if not value:
        raise PathRefused(field, f"is empty; give a name such as {example}")
    if "\x00" in value:
        raise PathRefused(field, "contains a NUL byte; remove it")
    if "/" in value or "\\" in value or value in (".", ".."):
        raise PathRefused(field, f"{value!r} is a path, not a single name; give a name such as {example}")
    if len(value) > MAX_COMPONENT_LENGTH:
        raise PathRefused(field, f"is {len(value)} characters; the most is {MAX_COMPONENT_LENGTH}")
    if not pattern.fullmatch(value):
        raise PathRefused(field, f"{value!r} may only contain {allowed}; use a name such as {example}")
    return value


def channel_id(value: str) -> ChannelId:
    """A channel id as used in paths: ^[a-z0-9_-]+$."""
    return ChannelId(_checked("channel", value, _CHANNEL, "lowercase letters, digits, '_' and '-'", "nature"))


def project_slug_of(value: str) -> ProjectSlug:
    """A project slug as used in paths: ^[a-zA-Z0-9_-]+$."""
    return ProjectSlug(
        _checked("slug", value, _SLUG, "letters, digits, '_' and '-'", "1f2e3d4c5b6a79880716253443526170")
    )


def item_key(value: str, field: str = "item key") -> ItemKey:
    """An item, asset or scene key as used in file names: ^[a-z0-9_]+$."""
    return ItemKey(_checked(field, value, _KEY, "lowercase letters, digits and '_'", "clip_s07"))


def project_slug(page_id: str) -> ProjectSlug:
    """The workspace slug of a Notion page: its id without hyphens, lowercase."""
    if not isinstance(page_id, str):
        raise PathRefused("page_id", f"must be text, not {type(page_id).__name__}")
    slug = page_id.strip().replace("-", "").lower()
    if not _PAGE_ID.fullmatch(slug):
        raise PathRefused(
            "page_id",
            f"{page_id[:60]!r} is not a Notion page id (32 hexadecimal digits, hyphens optional); "
            "use the id the Notion API returns for the page",
        )
    return ProjectSlug(slug)


@dataclass(frozen=True)
class Workspace:
    """The root of all project files; every path it hands out is checked to stay inside it."""

    root: Path

    def __post_init__(self) -> None:
        # A relative root would make every path depend on the process's working directory.
        if not self.root.is_absolute():
            raise PathRefused("workspace root", f"{str(self.root)!r} is relative; give an absolute path")
        if "\x00" in str(self.root):
            raise PathRefused("workspace root", "contains a NUL byte; remove it")

    def project(self, channel: str, slug: str) -> ProjectPaths:
        """The paths of one project; the channel and slug are checked here, once."""
        paths = ProjectPaths(self, channel_id(channel), project_slug_of(slug))
        self.inside(paths.dir, "project folder")
        return paths

    def inside(self, candidate: Path, what: str) -> Path:
        """`candidate` if it resolves inside the root, else PathRefused; returned unresolved."""
        real_root = Path(os.path.realpath(self.root))
        real = Path(os.path.realpath(candidate))
        if not real.is_relative_to(real_root):
            raise PathRefused(
                what,
                f"{str(candidate)!r} resolves to {str(real)!r}, outside the workspace {str(real_root)!r}; "
                "a symbolic link under the workspace points out of it: remove or fix the link",
            )
        return candidate


@dataclass(frozen=True)
class ProjectPaths:
    """channels/<channel>/projects/<slug>/ and the files in it. Build with Workspace.project()."""

    workspace: Workspace
    channel: ChannelId
    slug: ProjectSlug

    @property
    def dir(self) -> Path:
        return self.workspace.root / project_dir(self.channel, self.slug)

    def _file(self, folder: str, key: str, extension: str, field: str) -> Path:
        relative = item_file(self.channel, self.slug, folder, item_key(key, field), f".{extension}")
        return self.workspace.inside(self.workspace.root / relative, f"{field} path")

    def storyboard(self) -> Path:
        relative = item_output("storyboard", "storyboard", self.channel, self.slug, ".json")
        return self.workspace.inside(self.workspace.root / relative, "storyboard path")

    def asset(self, key: str) -> Path:
        return self._file("assets", key, "png", "asset key")

    def composite(self, scene: str) -> Path:
        return self._file("composites", scene, "png", "scene key")

    def clip(self, scene: str) -> Path:
        return self._file("clips", scene, "mp4", "scene key")

    def narration(self, scene: str) -> Path:
        return self._file("narration", scene, "mp3", "scene key")

    def sfx(self, scene: str) -> Path:
        return self._file("sfx", scene, "mp3", "scene key")

    def final(self) -> Path:
        relative = item_output("assembly", "assembly", self.channel, self.slug, ".mp4")
        return self.workspace.inside(self.workspace.root / relative, "final video path")

    def attempt(self, key: str, number: int, extension: str) -> Path:
        """An attempt's own output, written there first and moved to the item's path under the lease fence."""
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise PathRefused("attempt number", f"{number!r} is not a positive whole number")
        ext = _checked("extension", extension, _EXTENSION, "1 to 8 lowercase letters and digits", "png")
        relative = attempt_output(self.channel, self.slug, item_key(key), number, f".{ext}")
        return self.workspace.inside(self.workspace.root / relative, "attempt path")
