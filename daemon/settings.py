"""Environment settings (pydantic-settings): database, workspace, provider keys, timings."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from daemon.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Per kind: how long a script may run before it is killed and the attempt counts as transient.
DEFAULT_TIMEOUTS = {
    "storyboard": 180.0,
    "asset": 120.0,
    "composite": 120.0,
    # Kling's worst case is tens of minutes; the script polls inside one run.
    "clip": 3600.0,
    "narration": 180.0,
    "sfx": 180.0,
    "music": 300.0,
    "assembly": 1800.0,
    "upload": 3600.0,  # a long video on a slow uplink; the script resumes its session after a kill
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    database_url: str | None = None
    workspace_dir: Path = PROJECT_ROOT / "workspace"
    channels_dir: Path = PROJECT_ROOT / "config" / "channels"
    pricing_file: Path = PROJECT_ROOT / "config" / "pricing.yaml"
    providers_file: Path = PROJECT_ROOT / "config" / "providers.yaml"
    scripts_dir: Path = PROJECT_ROOT / "scripts"

    notion_token: SecretStr | None = None
    notion_base_url: str = "https://api.notion.com"
    gemini_api_key: SecretStr | None = None
    gemini_base_url: str = "https://generativelanguage.googleapis.com"
    kling_access_key: SecretStr | None = None
    kling_secret_key: SecretStr | None = None
    kling_base_url: str = "https://api-singapore.klingai.com"
    elevenlabs_api_key: SecretStr | None = None
    elevenlabs_base_url: str = "https://api.elevenlabs.io"
    # YouTube: the "default" Google Cloud project's OAuth client (an installed app); another project
    # a channel names (youtube.project) reads YOUTUBE_CLIENT_ID_<PROJECT> / _SECRET_<PROJECT>.
    youtube_client_id: str | None = None
    youtube_client_secret: SecretStr | None = None
    youtube_base_url: str = "https://www.googleapis.com"
    youtube_oauth_base_url: str = "https://oauth2.googleapis.com"
    youtube_auth_url: str = "https://accounts.google.com/o/oauth2/v2/auth"
    youtube_watch_url: str = "https://youtu.be/{id}"  # a published video's address on the page
    # The key the channels' YouTube refresh tokens are encrypted with in the database (Fernet: make
    # one with `python -m daemon youtube-key`); without it nothing can be signed in or uploaded.
    token_key: SecretStr | None = None
    # An upload that waits (a sign-in, the daily quota) looks again this often.
    youtube_recheck_s: float = 300.0
    # For tests: seconds added to the clock the YouTube quota day is read from (as the sandbox's
    # setting of the same name), so a test can step into the next Pacific day.
    youtube_clock_offset_s: float = 0.0

    daemon_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    lease_ttl_s: float = 30.0
    claim_poll_s: float = 1.0
    # The most scripts this daemon runs at once (e.g. a small machine beside bigger ones); unset: the
    # sum of the provider limits, which are shared by every daemon on the database.
    max_running: int | None = None
    idle_poll_max_s: float = 2.0  # an idle daemon backs off to this between looks for work
    kling_poll_s: float = 10.0  # how often the clip script asks Kling whether a clip is done
    min_free_mb: float = 200.0  # below this much free space in the workspace, no new work starts
    # Notion is polled every NOTION_POLL_S while anything is at work, and every NOTION_IDLE_POLL_S
    # (default: twice NOTION_POLL_S) when nothing is: an operator's edit is acted on within seconds.
    notion_poll_s: float = 2.0
    notion_idle_poll_s: float | None = None
    notion_rate: float = 3.0  # requests/s on average, for every Notion call of this daemon
    notion_burst: int = 3
    notion_timeout_s: float = 30.0  # a Notion call unanswered this long is given up (and may land late)
    # A write Notion did not answer (a timeout, a 5xx, the daemon killed mid-call) may still be
    # applied late: the page is written again this long after, and a comment looked for before it is
    # posted again. Longer than any delay Notion applies a write with.
    notion_late_write_s: float = 120.0
    sigterm_grace_s: float = 8.0
    max_attempts: int = 6
    retry_base_s: float = 5.0
    retry_cap_s: float = 300.0
    timeouts: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_TIMEOUTS))
    demo_auto_approve: bool = False
    budget_timezone: str = "UTC"  # the day of the per-channel daily budget

    @field_validator(
        "lease_ttl_s",
        "claim_poll_s",
        "notion_poll_s",
        "notion_idle_poll_s",
        "notion_timeout_s",
        "notion_late_write_s",
    )
    @classmethod
    def _positive(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("must be a positive number of seconds")
        return value

    @property
    def idle_poll_s(self) -> float:
        """How often Notion is polled when nothing is at work (never more often than at work)."""
        return max(self.notion_poll_s, self.notion_idle_poll_s or 2 * self.notion_poll_s)

    @field_validator("max_running")
    @classmethod
    def _at_least_one(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError("must be at least 1 (or unset for the sum of the provider limits)")
        return value

    @property
    def sqlalchemy_url(self) -> str:
        return normalise_database_url(self.database_url, self.workspace_dir)

    def secret_values(self) -> list[str]:
        """Every configured secret, for the log redactor."""
        secrets = [
            self.notion_token,
            self.gemini_api_key,
            self.kling_access_key,
            self.kling_secret_key,
            self.elevenlabs_api_key,
            self.youtube_client_secret,
            self.token_key,
        ]
        values = [s.get_secret_value() for s in secrets if s is not None and s.get_secret_value()]
        extra = [v for k, v in os.environ.items() if k.upper().startswith("YOUTUBE_CLIENT_SECRET_") and v]
        return values + extra

    def youtube_client(self, project: str) -> tuple[str, str] | None:
        """The OAuth client (id, secret) of a Google Cloud project, or None when it is not set."""
        if project == "default":
            if self.youtube_client_id and self.youtube_client_secret:
                return self.youtube_client_id, self.youtube_client_secret.get_secret_value()
            return None
        suffix = project.upper().replace("-", "_")
        client_id = os.environ.get(f"YOUTUBE_CLIENT_ID_{suffix}", "").strip()
        secret = os.environ.get(f"YOUTUBE_CLIENT_SECRET_{suffix}", "").strip()
        return (client_id, secret) if client_id and secret else None

    def script_env(self) -> dict[str, str]:
        """Provider keys and base URLs for the scripts' environment (and nothing else secret), and
        the price table the daemon reads, so that a script's cost is the daemon's."""
        env = {
            "GEMINI_BASE_URL": self.gemini_base_url,
            "KLING_BASE_URL": self.kling_base_url,
            "ELEVENLABS_BASE_URL": self.elevenlabs_base_url,
            "YOUTUBE_BASE_URL": self.youtube_base_url,
            "YOUTUBE_OAUTH_BASE_URL": self.youtube_oauth_base_url,
            "YOUTUBE_WATCH_URL": self.youtube_watch_url,
            "PRICING_FILE": str(self.pricing_file),
        }
        for name, value in (
            ("GEMINI_API_KEY", self.gemini_api_key),
            ("KLING_ACCESS_KEY", self.kling_access_key),
            ("KLING_SECRET_KEY", self.kling_secret_key),
            ("ELEVENLABS_API_KEY", self.elevenlabs_api_key),
        ):
            if value is not None:
                env[name] = value.get_secret_value()
        return env


def normalise_database_url(url: str | None, workspace: Path) -> str:
    """The SQLAlchemy async URL: SQLite in the workspace by default; `postgres://` as Railway gives it."""
    if not url:
        return f"sqlite+aiosqlite:///{workspace / 'daemon.db'}"
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    if url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite:///")):
        return url
    scheme = url.split("://", 1)[0] if "://" in url else url[:20]
    raise ConfigError(
        f"DATABASE_URL: the scheme {scheme!r} is not supported; use postgresql://user@host:5432/dbname "
        "(postgres:// as Railway gives it) or sqlite:///path/to/daemon.db, or unset it for SQLite in "
        "WORKSPACE_DIR"
    )


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines (comments and blank lines skipped, surrounding quotes removed)."""
    values = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def load_env_file(path: Path) -> None:
    """Loads an env file into os.environ without overriding what is already set."""
    try:
        values = read_env_file(path)
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"--env-file {path}: {why}; give the path of a file of KEY=value lines") from exc
    for key, value in values.items():
        os.environ.setdefault(key, value)
