"""A project's files on disk, as retention and the status table see them: walked without following
a symbolic link, sized, and removed only inside the workspace.

The layout is services/paths.py's. A project folder (or one of its folders) that is a symbolic link
is never walked into; a file that is one is left alone (its target may be anywhere).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from services.errors import PathRefused
from services.paths import FOLDERS, Workspace, project_dir

# What a done video no longer needs once its final cut exists: every paid or local step's output,
# and the smaller stand-ins made for Notion (the page keeps the copies Notion stores). The
# storyboard (storyboard.json) and what was published (final/<slug>.youtube.json) always stay.
INTERMEDIATE = (*FOLDERS.values(), "previews")
ATTEMPTS = "attempts"
TEMP_SUFFIX = ".tmp"
TEMP = "temp files"
GROUPS = (ATTEMPTS, *INTERMEDIATE, "final", TEMP)  # the order a cleanup lists them in


@dataclass(frozen=True)
class Found:
    """One file: its path relative to the workspace, size in bytes, modification time (ns) and the
    group the cleanup lists it under (a folder's name, "temp files", or "final")."""

    relative: str
    size: int
    mtime_ns: int
    group: str


def project_root(workspace: Path, channel: str, slug: str) -> Path | None:
    """The project's folder when it exists and resolves inside the workspace; None otherwise."""
    folder = workspace / project_dir(channel, slug)
    try:
        Workspace(workspace.absolute()).inside(folder.absolute(), "project folder")
    except PathRefused:
        return None
    return folder if folder.is_dir() and not folder.is_symlink() else None


def disk_use(workspace: Path, channel: str, slug: str) -> int | None:
    """Bytes of the project's regular files (None: it has no folder): one walk, no file opened."""
    root = project_root(workspace, channel, slug)
    if root is None:
        return None
    return sum(info.st_size for _, info in _walk(root))


def size_text(size: int) -> str:
    """Bytes as a person reads them, in decimal units as `df -H` and file managers show them."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def leftovers(workspace: Path, channel: str, slug: str, *, old: bool, finals: bool) -> list[Found]:
    """What retention takes from a done video: its attempts and temp files at any age; when `old`,
    the intermediate folders too; with `finals` as well, the final cut and its captions file (its
    thumbnail stays: it is the page's cover and on its scene board, which are written from it)."""
    root = project_root(workspace, channel, slug)
    if root is None:
        return []
    found: list[Found] = []
    for entry, info in _walk(root):
        folder = Path(entry.path).relative_to(root).parts[0]
        group = _group(folder, entry.name, slug, old=old, finals=finals)
        if group is not None:
            relative = os.path.relpath(entry.path, workspace)
            found.append(Found(relative, info.st_size, info.st_mtime_ns, group))
    return found


def _group(folder: str, name: str, slug: str, *, old: bool, finals: bool) -> str | None:
    if folder == ATTEMPTS:
        return ATTEMPTS
    if name.endswith(TEMP_SUFFIX):
        return TEMP
    if old and folder in INTERMEDIATE:
        return folder
    if old and finals and folder == "final" and name in (f"{slug}.mp4", f"{slug}.mp4.srt"):
        return "final"
    return None


def remove(workspace: Path, found: Found) -> bool:
    """Unlinks the file if it is still the regular file that was listed, no newer (one written since
    the scan, by a new pass, is not). Its folder is opened without following a link, so a folder
    swapped for a link since the walk does not lead out of the workspace."""
    path = workspace / found.relative
    try:
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        info = os.stat(path.name, dir_fd=folder, follow_symlinks=False)
        if not stat.S_ISREG(info.st_mode) or info.st_mtime_ns > found.mtime_ns:
            return False
        os.unlink(path.name, dir_fd=folder)
        return True
    except FileNotFoundError:
        return False
    finally:
        os.close(folder)


def prune_empty(workspace: Path, channel: str, slug: str) -> None:
    """Removes the project's attempt and intermediate folders left empty."""
    root = project_root(workspace, channel, slug)
    if root is None:
        return
    for name in (ATTEMPTS, *INTERMEDIATE):
        with contextlib.suppress(OSError):  # not empty, absent, or a link: left as it is
            folder = root / name
            if not folder.is_symlink():
                folder.rmdir()


def _walk(folder: Path) -> Iterator[tuple[os.DirEntry[str], os.stat_result]]:
    """Every regular file under `folder` with its lstat, links neither followed nor listed; a file
    that goes while it is walked is left out."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from _walk(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                yield entry, entry.stat(follow_symlinks=False)
        except OSError:
            continue
