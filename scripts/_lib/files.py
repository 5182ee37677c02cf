"""Atomic outputs: a reader (the daemon, a human) never sees a half-written file at the given path."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from scripts._lib.errors import permanent


def temp_path_for(path: Path) -> Path:
    """A temp name in the same folder (so os.replace is a rename, never a copy across filesystems)
    that keeps the real suffix, because FFmpeg and Pillow pick the format from it."""
    return path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yields a temp path to write; on success it replaces `path`, on any failure it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(path)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def require_file(path: Path, what: str) -> Path:
    """Inputs come from earlier items; a missing one is a permanent problem of this item's inputs."""
    if not path.is_file():
        raise permanent(f"The {what} {path} does not exist; regenerate it before running this step.")
    return path
