"""`--env-file` as an operator writes it: a shell's syntax, the environment first, bad lines named."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon import cli
from daemon.envfile import load_env_file, read_env_file
from daemon.errors import ConfigError

SHELL_STYLE = """\
# The daemon's settings; `set -a; . ./daemon.env` in a shell gives the same values.
export DATABASE_URL=postgresql://videos@db:5432/videos
WORKSPACE_DIR="/srv/videos/work space"   # a path with a space
NOTION_TOKEN='ntn_a#b$c${HOME}'
GEMINI_BASE_URL=http://127.0.0.1:9/gemini # an inline comment
KLING_BASE_URL=http://127.0.0.1:9/kling#not-a-comment
ELEVENLABS_BASE_URL="http://127.0.0.1:9/\\"el\\""

EMPTY=
YOUTUBE_WATCH_URL=http://127.0.0.1:9/watch?v={id}
"""


def test_a_shell_style_file_reads_as_a_shell_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "daemon.env"
    path.write_text(SHELL_STYLE)
    assert read_env_file(path) == {
        "DATABASE_URL": "postgresql://videos@db:5432/videos",
        "WORKSPACE_DIR": "/srv/videos/work space",
        # Single quotes keep everything; nothing is expanded anywhere (as systemd's EnvironmentFile=).
        "NOTION_TOKEN": "ntn_a#b$c${HOME}",
        "GEMINI_BASE_URL": "http://127.0.0.1:9/gemini",
        "KLING_BASE_URL": "http://127.0.0.1:9/kling#not-a-comment",
        "ELEVENLABS_BASE_URL": 'http://127.0.0.1:9/"el"',
        "EMPTY": "",
        "YOUTUBE_WATCH_URL": "http://127.0.0.1:9/watch?v={id}",
    }


def test_the_environment_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "daemon.env"
    path.write_text("export LEASE_TTL_S=45\nNOTION_POLL_S='3'\n")
    monkeypatch.setenv("LEASE_TTL_S", "12")
    monkeypatch.delenv("NOTION_POLL_S", raising=False)
    load_env_file(path)
    assert (os.environ["LEASE_TTL_S"], os.environ["NOTION_POLL_S"]) == ("12", "3")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            'A=1\nNOTION_TOKEN="ntn_secret_unclosed\nB=2\n',
            "line 2 is not KEY=value (an unclosed quote, or a key with spaces or symbols); "
            "write it as KEY=value, quoting a value with spaces or a #",
        ),
        (
            "A=1\nNOTION_TOKEN\n",
            "line 2: NOTION_TOKEN has no '='; write NOTION_TOKEN=value (NOTION_TOKEN= for an empty value)",
        ),
        ("not a setting ntn_secret\n", "line 1 is not KEY=value"),
    ],
)
def test_a_bad_line_is_named_by_file_and_line_and_not_echoed(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "daemon.env"
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        read_env_file(path)
    assert str(caught.value).startswith(f"--env-file {path}: {message}")
    assert "ntn_secret" not in str(caught.value)


def test_a_file_that_is_not_text_is_named(tmp_path: Path) -> None:
    path = tmp_path / "daemon.env"
    path.write_bytes(b"A=\xff\xfe\n")
    with pytest.raises(
        ConfigError, match=r"daemon.env: not UTF-8 text; give the path of a file of KEY=value"
    ):
        read_env_file(path)


def test_the_command_stops_with_the_configuration_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "daemon.env"
    path.write_text("WORKSPACE_DIR=/srv/videos\nbroken line\n")
    assert cli.main(["--env-file", str(path), "migrate"]) == cli.EX_CONFIG
    assert capsys.readouterr().err == (
        f"configuration error: --env-file {path}: line 2 is not KEY=value (an unclosed quote, or a key "
        "with spaces or symbols); write it as KEY=value, quoting a value with spaces or a #\n"
    )
