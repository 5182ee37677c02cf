"""Environment settings (pydantic-settings): database, workspace, provider keys, timings."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from daemon.errors import ConfigError
from daemon.logs import LEVELS
from daemon.paths import DEFAULT_PRICING_FILE, DEFAULT_PROVIDERS_FILE, SCRIPTS_DIR, operator_root

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


DEFAULT_HTTP_PORT = 8080  # the HTTP listener's, when neither HTTP_PORT nor PORT is set

LOG_LEVELS = tuple(LEVELS)
LOG_FORMATS = ("json", "console")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", case_sensitive=False)

    database_url: str | None = None
    # The operator's files: under the checkout in a checkout, else under the current directory
    # (daemon/paths.py). The price and provider tables default to the ones the package ships.
    workspace_dir: Path = Field(default_factory=lambda: operator_root() / "workspace")
    channels_dir: Path = Field(default_factory=lambda: operator_root() / "config" / "channels")
    pricing_file: Path = DEFAULT_PRICING_FILE
    providers_file: Path = DEFAULT_PROVIDERS_FILE
    scripts_dir: Path = SCRIPTS_DIR

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
    # one with `nvd youtube-key`); without it nothing can be signed in or uploaded.
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
    # Scripts start as forks of a warm interpreter (daemon/runner.py ForkServer; Linux only): false
    # starts each as a new interpreter, as before (0.13 s more CPU per script).
    script_fork_server: bool = True
    min_free_mb: float = 200.0  # below this much free space in the workspace, no new work starts
    # Retention (daemon/retention.py): a video done (Ready, Published, Scheduled) more than this many
    # days ago loses its intermediate files (attempts, images, frames, clips, narration, beds, music,
    # previews); the final cut stays. Unset: everything is kept. A channel's `retention_days` wins.
    # The daemon looks every RETENTION_INTERVAL_S (one daemon at a time: a lease row).
    retention_days: int | None = None
    retention_interval_s: float = 3600.0
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
    # Notion webhooks (optional: POST /notion/webhook on the HTTP listener, mounted only when turned
    # on, by NOTION_WEBHOOKS=true or by NOTION_WEBHOOK_SECRET; polling stays as the reconciler). The
    # secret is the subscription's verification token, which signs every event. Unset: the token the
    # operator adopted into WORKSPACE_DIR/notion-webhook-token (daemon/notion/webhooks.py says how).
    notion_webhooks: bool = False
    notion_webhook_secret: SecretStr | None = None
    sigterm_grace_s: float = 8.0
    # A step in the middle of a paid call it cannot collect later (ElevenLabs, Gemini) may finish
    # until this long after SIGTERM: stopped, its next run would pay for the call again.
    sigterm_paid_grace_s: float = 45.0
    max_attempts: int = 6
    retry_base_s: float = 5.0
    retry_cap_s: float = 300.0
    timeouts: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_TIMEOUTS))
    demo_auto_approve: bool = False
    budget_timezone: str = "UTC"  # the day of the per-channel daily budget

    # The HTTP listener: /healthz, /readyz, /metrics (and Notion webhooks). HTTP_PORT, else PORT
    # (set by Railway and platforms like it), else 8080; 0: no listener. HTTP_HOST: the address it
    # binds; unset, 127.0.0.1 (this machine only: Prometheus or a reverse proxy beside it), or
    # 0.0.0.0 when the port came from PORT (a platform's router reaches the container from outside).
    http_port: int | None = None
    port: int | None = None
    http_host: str | None = None
    # Set: /metrics and /readyz answer only `Authorization: Bearer <METRICS_TOKEN>` (/healthz stays
    # open for the platform's health check). For a listener the internet reaches (Railway's PORT).
    metrics_token: SecretStr | None = None
    # The worker's claim loop not turning for this long means it is stuck: /healthz and /readyz
    # fail and systemd's watchdog is no longer fed (so systemd restarts the daemon). Its longest
    # legitimate turn is a claim waiting out PostgreSQL's 60 s statement timeout.
    worker_stall_s: float = 120.0

    @field_validator("http_port", "port", mode="before")
    @classmethod
    def _port(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        try:
            port = int(str(value).strip())
        except ValueError:
            port = -1
        if not 0 <= port <= 65535:
            raise ValueError(
                f"{value!r} is not a port; use a number from 1 to 65535, or 0 for no HTTP listener"
            )
        return port

    @field_validator("worker_stall_s")
    @classmethod
    def _stall(cls, value: float) -> float:
        if value < 10:
            raise ValueError("must be at least 10 seconds (a claim may wait on the database that long)")
        return value

    def http_listen(self) -> tuple[str, int, str] | None:
        """(host, port, the variable the port came from) of the HTTP listener, or None: none."""
        if self.http_port is not None:
            port, setting = self.http_port, "HTTP_PORT"
        elif self.port is not None:
            port, setting = self.port, "PORT"
        else:
            port, setting = DEFAULT_HTTP_PORT, "HTTP_PORT"
        if port == 0:
            return None
        host = (self.http_host or "").strip() or ("0.0.0.0" if setting == "PORT" else "127.0.0.1")
        return host, port, setting

    # Logs (stderr). LOG_LEVEL: debug, info, warning or error (the daemon's own events; libraries
    # only from warning up). LOG_FORMAT: json (one object a line, for journald, Railway or a log
    # collector) or console (aligned lines for a person); unset, json unless stderr is a terminal.
    log_level: str = "info"
    log_format: str | None = None

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: object) -> str:
        level = str(value).strip().lower()
        if level not in LOG_LEVELS:
            raise ValueError(f"{value!r} is not a log level; use one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format(cls, value: object) -> str | None:
        if value is None or str(value).strip() == "":
            return None
        chosen = str(value).strip().lower()
        if chosen not in LOG_FORMATS:
            raise ValueError(
                f"{value!r} is not a log format; use json or console (or unset it: json unless stderr "
                "is a terminal)"
            )
        return chosen

    def log_json(self, terminal: bool) -> bool:
        """JSON lines unless LOG_FORMAT says console, or is unset and stderr is a terminal."""
        return self.log_format == "json" if self.log_format else not terminal

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

    @field_validator("retention_days", mode="before")
    @classmethod
    def _days(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None  # RETENTION_DAYS= (empty): keep everything
        text = str(value).strip()
        if isinstance(value, bool) or not text.isdigit():
            raise ValueError(
                f"{value!r} is not a number of days; give a whole number (0 or more: 30 keeps a done "
                "video's intermediate files for 30 days), or unset it to keep everything"
            )
        return int(text)

    @field_validator("retention_interval_s")
    @classmethod
    def _interval(cls, value: float) -> float:
        if value < 1:
            raise ValueError("must be at least 1 second (3600: hourly, the default)")
        return value

    @field_validator("max_running")
    @classmethod
    def _at_least_one(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError("must be at least 1 (or unset for the sum of the provider limits)")
        return value

    @property
    def sqlalchemy_url(self) -> str:
        return normalise_database_url(self.database_url, self.workspace_dir)

    @field_validator("notion_webhook_secret")
    @classmethod
    def _one_word(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        token = value.get_secret_value().strip()
        if not token:
            return None  # NOTION_WEBHOOK_SECRET= (empty): the stored token is used
        if any(c.isspace() for c in token):
            raise ValueError(
                "must be the subscription's verification token, one word (secret_...), as Notion sent it"
            )
        return SecretStr(token)

    @field_validator("metrics_token")
    @classmethod
    def _metrics_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None  # METRICS_TOKEN= (empty): no token asked
        token = value.get_secret_value().strip()
        if any(c.isspace() for c in token) or not token.isascii():
            raise ValueError("must be one word of ASCII characters (e.g. `openssl rand -hex 32`)")
        return SecretStr(token)

    def webhooks_on(self) -> bool:
        """Whether POST /notion/webhook is mounted: only when the operator turned webhooks on."""
        return self.notion_webhooks or self.notion_webhook_secret is not None

    def secret_values(self) -> list[str]:
        """Every configured secret, for the log redactor."""
        secrets = [
            self.notion_token,
            self.notion_webhook_secret,
            self.metrics_token,
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
