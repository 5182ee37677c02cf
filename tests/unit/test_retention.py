"""Retention's rules without a database: whose retention applies, how a bad value is named, which
removed files a new pass needs again, and which file the SQLite lock is taken beside."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon.channels import load_channels
from daemon.cli import _settings
from daemon.db.file_lock import sqlite_file
from daemon.errors import ConfigError
from daemon.rebuy import describe, offered, revived
from daemon.retention import Policy
from services.plan import PlannedItem

CHANNEL = "id: {id}\nname: N\nvoice: {{voice_id: JBFqnCBsd6RMkjVDRZzb}}\n{extra}"


def _channels(tmp_path: Path, **retention: object) -> Policy:
    for cid, days in retention.items():
        extra = "" if days is None else f"retention_days: {days}\n"
        (tmp_path / f"{cid}.yaml").write_text(CHANNEL.format(id=cid, extra=extra))
    return Policy(5, load_channels(tmp_path))


def test_a_channels_retention_wins_over_retention_days_and_never_keeps_everything(tmp_path: Path) -> None:
    policy = _channels(tmp_path, plain=None, short=1, keep="never", zero=0)
    assert [policy.days_for(c) for c in ("plain", "short", "keep", "zero", "gone")] == [5, 1, None, 0, 5]
    # --older-than-days is for every channel alike, "never" included.
    override = Policy(5, policy.channels, override_days=90)
    assert {override.days_for(c) for c in ("plain", "keep")} == {90}
    assert not Policy(None, {}).configured and Policy(None, {"short": policy.channels["short"]}).configured
    assert not Policy(None, {"keep": policy.channels["keep"]}).configured


@pytest.mark.parametrize("bad", ["-1", "thirty", "1.5", "true"])
def test_a_bad_channel_retention_names_the_field_and_the_fix(tmp_path: Path, bad: str) -> None:
    (tmp_path / "nature.yaml").write_text(CHANNEL.format(id="nature", extra=f"retention_days: {bad}\n"))
    with pytest.raises(ConfigError) as refused:
        load_channels(tmp_path)
    message = str(refused.value)
    assert "nature.yaml" in message and "retention_days" in message
    assert "whole number, 0 or more" in message and "never" in message


@pytest.mark.parametrize("bad", ["-3", "a month", "2.5"])
def test_a_bad_retention_days_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("RETENTION_DAYS", bad)
    with pytest.raises(ConfigError) as refused:
        _settings()
    assert str(refused.value).startswith("RETENTION_DAYS: ")
    assert "whole number" in str(refused.value) and "unset it to keep everything" in str(refused.value)


def test_retention_days_unset_or_empty_keeps_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RETENTION_DAYS", "")
    assert _settings().retention_days is None
    monkeypatch.setenv("RETENTION_DAYS", " 30 ")
    assert _settings().retention_days == 30
    monkeypatch.setenv("RETENTION_INTERVAL_S", "0")
    with pytest.raises(ConfigError, match=r"RETENTION_INTERVAL_S: .*at least 1 second"):
        _settings()


def _item(key: str, *deps: str) -> PlannedItem:
    return PlannedItem(key, key.split("_")[0], {}, deps, key)


PLAN = [
    _item("asset_a"),
    _item("composite_s1", "asset_a"),
    _item("narration_s1"),
    _item("clip_s1", "composite_s1", "narration_s1"),
    _item("sfx_s1"),
    _item("assembly", "clip_s1", "narration_s1", "sfx_s1"),
    _item("final_gate", "assembly"),
]
REMOVED = {"asset_a", "composite_s1", "narration_s1", "clip_s1", "sfx_s1"}


def test_removed_files_stay_removed_while_nothing_that_consumes_them_runs() -> None:
    assert revived(PLAN, [], REMOVED) == set()
    assert revived(PLAN, ["final_gate"], REMOVED) == set()  # a review does not read the files


def test_a_new_cut_needs_what_it_consumes_and_what_those_consume() -> None:
    assert revived(PLAN, ["assembly"], REMOVED) == REMOVED
    # New words for a scene: its narration is made again (new work); its clip waits for it but the
    # cut is what needs the clip, and the cut is made again.
    assert revived(PLAN, ["narration_s1", "assembly"], REMOVED - {"narration_s1"}) == REMOVED - {
        "narration_s1"
    }
    # A new placement: the frame, its clip and the cut are new work (their hashes changed); they
    # need the image, the narration and the bed again.
    changed = {"composite_s1", "clip_s1"}
    assert revived(PLAN, [*changed, "assembly"], REMOVED - changed) == {"asset_a", "narration_s1", "sfx_s1"}


def test_what_would_be_bought_is_said_in_words() -> None:
    assert describe({"clip": 4, "asset": 1, "narration": 4}) == "1 image, 4 video clips and 4 narrations"
    assert describe({"music": 1}) == "1 music track"


def test_an_offer_counts_for_seven_days_and_only_over_its_put_back() -> None:
    at = datetime(2026, 3, 1, tzinfo=UTC)
    offer = {"at": at.isoformat(), "micros": 1_900_000, "items": {"clip": 2}, "put_back": 5}
    assert offered(offer, at + timedelta(days=6), shown=5) == 1_900_000
    assert offered(offer, at + timedelta(days=8), shown=5) is None
    # The page had not shown the put-back (version 5 of its Status) when the Status was set.
    assert offered(offer, at + timedelta(hours=1), shown=4) is None
    assert offered(offer, at + timedelta(hours=1), shown=None) is None
    assert offered(None, at, shown=5) is None and offered({"at": "yesterday"}, at, shown=5) is None
    assert offered({k: v for k, v in offer.items() if k != "put_back"}, at, shown=5) is None


def test_the_sqlite_file_is_known_by_its_real_path(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert sqlite_file(f"sqlite+aiosqlite:///{tmp_path}/link/daemon.db") == tmp_path / "real/daemon.db"
    assert sqlite_file("postgresql+asyncpg://root@127.0.0.1/test") is None
    assert sqlite_file("sqlite+aiosqlite:///:memory:") is None
