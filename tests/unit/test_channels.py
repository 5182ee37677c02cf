"""Channel files are validated at start-up; a bad one names the file, the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.channel_watch import budget_of
from daemon.channels import load_channels, load_provider_limits
from daemon.errors import ConfigError

GOOD = """
id: nature
name: Nature Shorts
notion: {data_source_id: 2f1c0000-0000-0000-0000-000000000000}
voice: {voice_id: JBFqnCBsd6RMkjVDRZzb}
gates: {storyboard: true, assets: false, final: true}
budgets: {per_video_usd: 12, per_day_usd: 60}
"""


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def test_a_valid_channel_loads_with_defaults(tmp_path: Path) -> None:
    _write(tmp_path, "nature.yaml", GOOD)
    channel = load_channels(tmp_path)["nature"]
    assert channel.voice.model_id == "eleven_multilingual_v2"
    assert channel.weight == 1 and channel.scenes == 4
    assert channel.gates.storyboard and not channel.gates.assets


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD.replace("voice: {voice_id: JBFqnCBsd6RMkjVDRZzb}\n", ""),
            "voice: Field required (add this field)",
        ),
        (GOOD.replace("name: Nature Shorts", "name: Nature Shorts\nvoise: x"), "voise: Extra inputs are not"),
        (GOOD.replace("JBFqnCBsd6RMkjVDRZzb", "bad id!"), "voice.voice_id: String should match pattern"),
        (GOOD.replace("per_day_usd: 60", "per_day_usd: -5"), "budgets.per_day_usd: Input should be greater"),
        ("id: [unclosed", "not valid YAML"),
    ],
)
def test_a_bad_channel_stops_start_up_naming_file_field_and_fix(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = _write(tmp_path, "nature.yaml", text)
    with pytest.raises(ConfigError) as raised:
        load_channels(tmp_path)
    assert str(path) in str(raised.value)
    assert expected in str(raised.value)


def test_file_name_and_id_must_agree(tmp_path: Path) -> None:
    _write(tmp_path, "wildlife.yaml", GOOD)
    with pytest.raises(ConfigError, match=r"rename the file to nature\.yaml or change id to 'wildlife'"):
        load_channels(tmp_path)


def test_channels_sharing_a_data_source_need_their_channel_option(tmp_path: Path) -> None:
    _write(tmp_path, "nature.yaml", GOOD)
    _write(tmp_path, "oceans.yaml", GOOD.replace("id: nature", "id: oceans"))
    with pytest.raises(ConfigError, match=r"give each one notion\.channel_option"):
        load_channels(tmp_path)


def test_a_missing_channel_folder_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="set CHANNELS_DIR"):
        load_channels(tmp_path / "nope")


def test_provider_limits_come_from_config(tmp_path: Path) -> None:
    path = _write(tmp_path, "providers.yaml", "max_concurrent: {kling: 12}\n")
    assert load_provider_limits(path).as_dict() == {
        "gemini": 4,
        "kling": 12,
        "elevenlabs": 5,
        "local": 2,
        "youtube": 2,
    }
    bad = _write(tmp_path, "bad.yaml", "max_concurrent: {kling: 0}\n")
    with pytest.raises(ConfigError, match="kling: Input should be greater than or equal to 1"):
        load_provider_limits(bad)


def test_a_channel_file_that_is_not_utf8_names_the_file_and_the_fix(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "nature.yaml").write_bytes(GOOD.encode("utf-16"))
    with pytest.raises(ConfigError, match=r"nature\.yaml: not UTF-8 text .*save it as UTF-8"):
        load_channels(tmp_path)


def test_budgets_become_exact_micro_dollars(tmp_path: Path) -> None:
    _write(tmp_path, "nature.yaml", GOOD.replace("per_video_usd: 12", "per_video_usd: 2.01"))
    budget = budget_of(load_channels(tmp_path)["nature"])
    assert (budget.per_video_micros, budget.per_day_micros) == (2_010_000, 60_000_000)


def test_music_defaults_to_none_and_a_folder_is_found_beside_the_channel_file(tmp_path: Path) -> None:
    _write(tmp_path, "nature.yaml", GOOD)
    channel = load_channels(tmp_path)["nature"]
    assert channel.music.source == "none"
    assert (channel.levels.voice_lufs, channel.levels.ambience_lu, channel.levels.music_lu) == (-14, -13, -18)
    (tmp_path / "tracks").mkdir()
    _write(tmp_path, "nature.yaml", GOOD + "music: {source: folder, folder: tracks}\nsfx_level_db: -18\n")
    channel = load_channels(tmp_path)["nature"]
    assert channel.music.folder == (tmp_path / "tracks").resolve()
    assert channel.sfx_level_db == -18  # an older file still loads (the daemon logs it as unused)


@pytest.mark.parametrize(
    ("music", "expected"),
    [
        ("{source: folder}", "music: Value error, music.source is folder: give music.folder"),
        ("{source: folder, folder: nowhere}", "music.folder"),
        ("{source: radio}", "music.source: Input should be 'none', 'generated' or 'folder'"),
    ],
)
def test_a_bad_music_setting_names_the_field_and_the_fix(tmp_path: Path, music: str, expected: str) -> None:
    _write(tmp_path, "nature.yaml", GOOD + f"music: {music}\n")
    with pytest.raises(ConfigError) as raised:
        load_channels(tmp_path)
    assert expected in str(raised.value)
