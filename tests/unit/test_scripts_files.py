"""Atomic outputs: the target is either the old file or the complete new one, never a fragment."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts._lib.files import atomic_path, atomic_write_bytes, temp_path_for


def test_temp_file_is_beside_the_target_and_keeps_its_suffix(tmp_path: Path) -> None:
    tmp = temp_path_for(tmp_path / "clip_s01.mp4")
    assert tmp.parent == tmp_path
    assert tmp.suffix == ".mp4"
    assert tmp.name.startswith(".clip_s01.")


def test_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.png"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["a.png"]


def test_failure_keeps_the_old_file_and_removes_the_temp(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    target.write_text("old")

    def crash_mid_write() -> None:
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        crash_mid_write()
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_nothing_appears_until_the_write_is_complete(tmp_path: Path) -> None:
    target = tmp_path / "a.mp3"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"data")
        assert not target.exists()
    assert target.read_bytes() == b"data"
