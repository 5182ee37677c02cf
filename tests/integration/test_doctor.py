"""`doctor` as an operator runs it (a subprocess, against a seeded sandbox with recognisable keys):
every check passes on a good setup; then each thing an operator gets wrong (a wrong or missing key,
a provider down, slow or in trouble, a data source missing or with the wrong properties, an
unmigrated database, a revoked YouTube sign-in, a bad setting) fails its own line with its fix, the
exit status is 1, no key is ever printed, and nothing is spent (no paid call, no YouTube quota)."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from daemon.migrate import upgrade_url
from daemon.settings import Settings
from sandbox.seed import read_env
from tests.support.sandbox_proc import SandboxProcess
from tests.support.stack import sign_in_youtube

pytestmark = pytest.mark.slow  # a sandbox, a seed and a doctor run or two each: 5-10 s a test

MARK = uuid.uuid4().hex[:10]
# The sandbox's accounts, shaped like real keys, each with a mark no other text has.
KEYS = {
    "notion_token": f"ntn_DOCTORCANARY{MARK}notiontoken0123",
    "gemini_api_key": f"AIzaDOCTORCANARY{MARK}gemini0123",
    "kling_access_key": f"ak_DOCTORCANARY{MARK}access01",
    "kling_secret_key": f"sk_DOCTORCANARY{MARK}klingsecret01",
    "elevenlabs_api_key": f"sk_DOCTORCANARY{MARK}elevenlabs01",
    "youtube_client_secret": f"GOCSPX-DOCTORCANARY{MARK}youtube01",
}
SEED = [sys.executable, "-m", "sandbox", "seed", "--channel", "nature", "--projects", "0", "--youtube"]
WRONG_GEMINI_KEY = f"AIzaWRONGCANARY{MARK}notthekey0123"
EVERY_CHECK = [
    "settings",
    "channels",
    "pricing",
    "providers file",
    "database",
    "migrations",
    "workspace",
    "disk",
    "ffmpeg",
    "captions font",
    "gemini",
    "kling",
    "elevenlabs",
    "notion",
    "notion nature",
    "youtube default",
    "token key",
    "youtube nature",
]


@dataclass
class Seeded:
    sandbox: SandboxProcess
    env: dict[str, str]  # the daemon's settings for this sandbox (daemon.env)
    data_source_id: str

    def doctor(self, *args: str, **overrides: str | None) -> Doctor:
        """`python -m daemon doctor` with these settings (None unsets one); its lines by check."""
        env = {k: v for k, v in os.environ.items() if not k.endswith(("_KEY", "_TOKEN", "_URL", "_DIR"))}
        env.update(self.env)
        for key, value in overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        done = subprocess.run(
            [sys.executable, "-m", "daemon", "doctor", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        return Doctor(done)

    def billed_calls(self) -> list[dict[str, object]]:
        return [c for c in self.sandbox.calls() if c["provider"] != "notion"]


@dataclass
class Doctor:
    done: subprocess.CompletedProcess[str]

    def __post_init__(self) -> None:
        # It ran to its summary (an exit status of 1 alone could be a crash).
        assert self.lines and self.lines[-1].startswith("doctor: "), self.done.stdout + self.done.stderr

    @property
    def lines(self) -> list[str]:
        return self.done.stdout.splitlines()

    def outcome(self, name: str) -> list[tuple[str, str, str]]:
        """(OK|WARN|FAIL|SKIP, detail, fix) of each line of this check."""
        found = []
        for i, line in enumerate(self.lines):
            word, _, rest = line.partition(" ")
            if word in ("OK", "WARN", "FAIL", "SKIP") and rest.strip().startswith(name + "  "):
                detail = rest.strip()[len(name) :].strip()
                after = self.lines[i + 1].strip() if i + 1 < len(self.lines) else ""
                found.append(
                    (word, detail, after.removeprefix("fix:").strip() if after.startswith("fix:") else "")
                )
        assert found, f"no {name!r} line in:\n{self.done.stdout}"
        return found

    def one(self, name: str) -> tuple[str, str, str]:
        (line,) = self.outcome(name)
        return line


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Seeded]:
    """A sandbox with our keys, the seeded channel (Notion and YouTube), a migrated database and
    the channel signed in to the sandbox's YouTube."""
    state = tmp_path / "sandbox"
    state.mkdir()
    (state / "credentials.json").write_text(json.dumps(KEYS))
    sandbox = SandboxProcess(state).start()
    try:
        sandbox.configure(notion_rate=1000, notion_burst=100)
        done = subprocess.run(
            [*SEED, "--state", str(state), "--url", sandbox.url],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        source = json.loads(done.stdout.strip().splitlines()[-1])["data_source_id"]
        env = read_env(state / "daemon.env")
        settings = Settings(**{k.lower(): v for k, v in env.items()})
        asyncio.run(upgrade_url(settings.sqlalchemy_url))
        asyncio.run(sign_in_youtube(sandbox, env, "nature"))
        yield Seeded(sandbox, env, source)
    finally:
        sandbox.stop()


def _no_secret_in(text: str) -> None:
    assert MARK not in text, text


def test_every_check_passes_against_a_seeded_sandbox_and_spends_nothing(seeded: Seeded) -> None:
    quota = seeded.sandbox.get("/_sandbox/youtube/quota")
    doctor = seeded.doctor()
    assert doctor.done.returncode == 0, doctor.done.stdout + doctor.done.stderr
    assert [doctor.one(name)[0] for name in EVERY_CHECK] == ["OK"] * len(EVERY_CHECK), doctor.done.stdout
    assert doctor.lines[-1] == f"doctor: all {len(EVERY_CHECK)} checks passed"
    assert "nature (Notion, YouTube)" in doctor.one("channels")[1]
    assert seeded.data_source_id in doctor.one("notion nature")[1]
    assert "signed in as 'Sandbox Channel'" in doctor.one("youtube nature")[1]
    _no_secret_in(doctor.done.stdout + doctor.done.stderr)
    # Read-only: no paid call reached a provider, and YouTube's quota is as it was.
    assert seeded.billed_calls() == []
    assert seeded.sandbox.get("/_sandbox/youtube/quota") == quota


def test_a_wrong_key_a_missing_one_a_provider_down_and_a_broken_setup_each_fail_with_their_fix(
    seeded: Seeded, tmp_path: Path
) -> None:
    # The channel's data source lost a property; a second channel names one that does not exist.
    _remove_property(seeded, "Progress")
    channels = tmp_path / "channels"
    channels.mkdir()
    nature = (Path(seeded.env["CHANNELS_DIR"]) / "nature.yaml").read_text()
    (channels / "nature.yaml").write_text(nature)
    ghost = nature.replace("id: nature", "id: ghost").replace(seeded.data_source_id, str(uuid.uuid4()))
    (channels / "ghost.yaml").write_text(ghost.replace("channel_option: Nature", "channel_option: Ghost"))
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()  # a database nobody migrated

    doctor = seeded.doctor(
        GEMINI_API_KEY=WRONG_GEMINI_KEY,
        KLING_BASE_URL="http://127.0.0.1:9/kling",  # nothing listens there
        ELEVENLABS_API_KEY=None,
        CHANNELS_DIR=str(channels),
        DATABASE_URL=f"sqlite:///{empty}",
    )
    assert doctor.done.returncode == 1, doctor.done.stdout + doctor.done.stderr

    word, detail, fix = doctor.one("gemini")
    assert word == "FAIL" and "refused GEMINI_API_KEY" in detail and "API key not valid" in detail
    assert "set GEMINI_API_KEY" in fix
    word, detail, fix = doctor.one("kling")
    assert word == "FAIL" and "cannot reach Kling at http://127.0.0.1:9/kling" in detail
    assert "KLING_BASE_URL" in fix
    word, detail, fix = doctor.one("elevenlabs")
    assert word == "FAIL" and "ELEVENLABS_API_KEY not set" in detail and "ghost, nature" in detail
    assert "set ELEVENLABS_API_KEY" in fix

    assert doctor.one("notion")[0] == "OK"
    word, detail, fix = doctor.one("notion nature")
    assert word == "FAIL" and seeded.data_source_id in detail and "not ready" in detail
    assert fix == "Progress is missing: add a Text property named Progress"
    word, detail, fix = doctor.one("notion ghost")
    assert word == "FAIL" and "cannot be read" in detail
    assert "share the database with the integration" in fix and "ghost.yaml" in fix

    assert doctor.one("database")[0] == "OK"
    word, detail, fix = doctor.one("migrations")
    assert word == "FAIL" and "has no schema yet" in detail
    assert "migrate`" in fix
    assert doctor.one("youtube nature")[0] == "SKIP"  # its sign-in is in the database

    for fine in ("settings", "channels", "pricing", "workspace", "disk", "ffmpeg", "captions font"):
        assert doctor.one(fine)[0] == "OK", fine
    assert doctor.lines[-1].startswith("doctor: 6 of ") and "checks failed" in doctor.lines[-1]
    _no_secret_in(doctor.done.stdout + doctor.done.stderr)
    assert WRONG_GEMINI_KEY not in doctor.done.stdout


def test_a_revoked_sign_in_a_slow_provider_and_one_in_trouble_fail_and_no_echoed_key_is_printed(
    seeded: Seeded,
) -> None:
    seeded.sandbox.post("/_sandbox/youtube/revoke", {})
    seeded.sandbox.fault(provider="gemini", kind="latency", latency_ms=5000, count=1)
    seeded.sandbox.fault(provider="elevenlabs", status=503, count=1)
    # Kling refuses, quoting both keys in its message, as some providers quote what they refused.
    echoed = f"Authentication failed for {KEYS['kling_access_key']} signed with {KEYS['kling_secret_key']}"
    seeded.sandbox.fault(provider="kling", status=401, code=1000, message=echoed, count=1)

    doctor = seeded.doctor("--timeout", "2")
    assert doctor.done.returncode == 1, doctor.done.stdout + doctor.done.stderr

    word, detail, fix = doctor.one("youtube nature")
    assert word == "FAIL" and "invalid_grant" in detail
    assert fix.startswith("run `") and "youtube-auth --channel nature`" in fix
    word, detail, fix = doctor.one("gemini")
    assert word == "FAIL" and f"no answer within 2 s from Gemini at {seeded.env['GEMINI_BASE_URL']}" in detail
    assert "GEMINI_BASE_URL" in fix
    word, detail, fix = doctor.one("elevenlabs")
    assert word == "FAIL" and f"at {seeded.env['ELEVENLABS_BASE_URL']} answered 503" in detail
    assert "try again" in fix
    word, detail, fix = doctor.one("kling")
    assert word == "FAIL" and "refused KLING_ACCESS_KEY and KLING_SECRET_KEY" in detail
    assert "Authentication failed for [redacted] signed with [redacted]" in detail
    assert "KLING_ACCESS_KEY and KLING_SECRET_KEY" in fix
    assert doctor.one("notion nature")[0] == "OK"
    _no_secret_in(doctor.done.stdout + doctor.done.stderr)


def test_bad_settings_are_named_each_and_the_other_checks_wait_for_them(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOG_", "MIN_FREE"))}
    env.update(LOG_LEVEL="loud", MIN_FREE_MB="plenty", WORKSPACE_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "doctor"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 1, done.stdout + done.stderr
    doctor = Doctor(done)
    (amount, level) = doctor.outcome("settings")  # in the order the settings are declared
    assert level[0] == "FAIL" and level[1].startswith("LOG_LEVEL: 'loud' is not a log level")
    assert level[2] == "use one of debug, info, warning, error"
    assert amount[0] == "FAIL" and amount[1].startswith("MIN_FREE_MB: ")
    assert "MIN_FREE_MB" in amount[2]
    assert doctor.one("the rest")[0] == "SKIP"


def _remove_property(seeded: Seeded, name: str) -> None:
    """As an operator deleting a column of the database in Notion."""
    answer = httpx.patch(
        f"{seeded.env['NOTION_BASE_URL']}/v1/data_sources/{seeded.data_source_id}",
        headers={
            "Authorization": f"Bearer {seeded.env['NOTION_OPERATOR_TOKEN']}",
            "Notion-Version": "2025-09-03",
        },
        json={"properties": {name: None}},
        timeout=30,
    )
    answer.raise_for_status()


def test_a_reader_that_goes_away_ends_doctor_quietly(tmp_path: Path) -> None:
    """`nvd doctor | head -1`: the lines after the reader left are dropped without a traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOG_", "MIN_FREE"))}
    env.update(WORKSPACE_DIR=str(tmp_path))
    read, write = os.pipe()
    os.close(read)  # gone before doctor writes its first line
    try:
        done = subprocess.run(
            [sys.executable, "-m", "daemon", "doctor"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            timeout=120,
        )
    finally:
        os.close(write)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.returncode == 141
