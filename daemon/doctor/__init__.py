"""`doctor`: everything a daemon needs, checked the way it will be used, before it is needed.

The settings, the channel and price files, the database and its migrations, the workspace and its
free space, FFmpeg and the captions' font, every provider key a channel needs (each with its
cheapest read-only call), Notion's token and each channel's data source, and each publishing
channel's YouTube sign-in. One line per check, a fix under each failure, exit 1 when any failed.
Each check has a time limit; checks that reach the network run side by side. Nothing is printed
that holds a secret, and nothing is changed (no database file made, no quota spent).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

import httpx
from pydantic import SecretStr, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from daemon import logs
from daemon.channels import Channel
from daemon.doctor import database, local, notion_access, providers, youtube
from daemon.doctor.report import Outcome, Printer, Result, fail, failed, limited, ok, skip, split_fix
from daemon.errors import ConfigError
from daemon.settings import Settings

TIMEOUT_S = 10.0


def main(timeout: float = TIMEOUT_S) -> int:
    """Runs every check, printing each line as it is known; the exit status (1 when any failed)."""
    printer = Printer(sys.stdout)
    settings, problems = load_settings()
    if settings is None:
        printer.show(problems)
        printer.show([skip("the rest", "every other check needs the settings: fix them first")])
        return printer.summary()
    printer.secrets(settings.secret_values())
    # The checks' own lines say what failed; the daemon's log lines would only repeat them.
    quiet = "debug" if settings.log_level == "debug" else "error"
    logs.configure(settings.secret_values(), json_lines=settings.log_json(sys.stderr.isatty()), level=quiet)
    printer.show(
        [
            ok(
                "settings",
                f"all valid; WORKSPACE_DIR {settings.workspace_dir}, CHANNELS_DIR {settings.channels_dir}",
            )
        ]
    )
    return asyncio.run(Doctor(settings, timeout, printer).run())


def load_settings() -> tuple[Settings | None, list[Result]]:
    """The settings, or one failure per variable that is wrong (its name, what it must be)."""
    try:
        return Settings(), []
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]).upper()
            problem, fix = split_fix(error["msg"].removeprefix("Value error, "))
            lines.append(
                fail("settings", f"{name}: {problem}", fix or f"correct {name}, or unset it for its default")
            )
        return None, lines
    except ConfigError as exc:
        return None, [failed("settings", exc)]


class Doctor:
    def __init__(self, settings: Settings, timeout: float, printer: Printer) -> None:
        self.settings = settings
        self.timeout = timeout
        self.printer = printer
        self.channels: dict[str, Channel] | None = None
        self.engine: AsyncEngine | None = None

    async def run(self) -> int:
        self.printer.show(await self._files())
        async with httpx.AsyncClient(timeout=self.timeout) as http:
            ready = asyncio.create_task(self._database())
            sections = [
                ready,
                asyncio.create_task(self._host()),
                asyncio.create_task(self._providers(http)),
                asyncio.create_task(self._notion()),
                asyncio.create_task(self._youtube(http, ready)),
            ]
            try:
                for section in sections:  # in this order, each as soon as it is known
                    self.printer.show(await section)
            finally:
                for section in sections:
                    section.cancel()
                if self.engine is not None:
                    await self.engine.dispose()
        return self.printer.summary()

    async def _files(self) -> list[Result]:
        """The channel files (the other sections need them) and the tables, read off the loop: a
        folder on a mount that hangs fails its line instead of holding every check."""

        async def read() -> list[Result]:
            lines, self.channels = await asyncio.to_thread(local.channels, self.settings)
            return [*lines, *await asyncio.to_thread(local.tables, self.settings)]

        return await self.limited(
            "channels",
            read(),
            str(self.settings.channels_dir),
            "check the disk or mount holding CHANNELS_DIR",
        )

    def limited(
        self, name: str, check: Awaitable[list[Result]], where: str, fix: str
    ) -> Awaitable[list[Result]]:
        return limited(name, check, self.timeout, where, fix)

    async def _database(self) -> list[Result]:
        async def connect() -> list[Result]:
            lines, self.engine = await database.connect(self.settings)
            return lines

        try:
            where = database.where(self.settings)
        except ConfigError as exc:
            return [failed("database", exc), skip("migrations", "the database is not reachable")]
        return await self.limited(
            "database", connect(), where, "check that the server runs and DATABASE_URL's host and port"
        )

    async def _host(self) -> list[Result]:
        workspace = self.limited(
            "workspace",
            asyncio.to_thread(local.workspace, self.settings),
            str(self.settings.workspace_dir),
            "check the disk or mount under WORKSPACE_DIR",
        )
        ffmpeg = self.limited("ffmpeg", local.ffmpeg(), "ffmpeg -version", "check the FFmpeg named above")
        font = self.limited(
            "captions font", asyncio.to_thread(local.font), "the font package", "check the disk of the venv"
        )
        return [*await workspace, *await ffmpeg, *await font]

    async def _providers(self, http: httpx.AsyncClient) -> list[Result]:
        checks: list[tuple[providers.Provider, list[str], Callable[[], Awaitable[Result]]]] = [
            (
                providers.gemini(self.settings),
                _unset(GEMINI_API_KEY=self.settings.gemini_api_key),
                lambda: providers.check_gemini(http, self.settings),
            ),
            (
                providers.kling(self.settings),
                _unset(
                    KLING_ACCESS_KEY=self.settings.kling_access_key,
                    KLING_SECRET_KEY=self.settings.kling_secret_key,
                ),
                lambda: providers.check_kling(http, self.settings),
            ),
            (
                providers.elevenlabs(self.settings),
                _unset(ELEVENLABS_API_KEY=self.settings.elevenlabs_api_key),
                lambda: providers.check_elevenlabs(http, self.settings),
            ),
        ]
        found = await asyncio.gather(*(self._provider(*check) for check in checks))
        return [line for lines in found for line in lines]

    async def _provider(
        self, provider: providers.Provider, unset: list[str], check: Callable[[], Awaitable[Result]]
    ) -> list[Result]:
        if self.channels is None:
            if unset:
                return [skip(provider.name, f"{' and '.join(unset)} not set; the channel files did not load")]
        elif not self.channels:
            return [providers.not_needed(provider)]
        elif unset:
            return [providers.missing_key(provider, unset, sorted(self.channels))]

        async def one() -> list[Result]:
            return [await check()]

        return await self.limited(
            provider.name, one(), f"{provider.title} at {provider.base_url}", provider.unreachable_fix
        )

    async def _notion(self) -> list[Result]:
        if self.channels is None:
            return [skip("notion", "the channel files did not load (above)")]
        bound = [c for c in self.channels.values() if c.notion is not None]
        if not bound:
            return [skip("notion", "no channel names a Notion data source")]
        if self.settings.notion_token is None or not self.settings.notion_token.get_secret_value():
            names = ", ".join(c.id for c in bound)
            return [
                fail(
                    "notion",
                    f"NOTION_TOKEN not set; channels {names} name a data source",
                    notion_access.TOKEN_FIX,
                )
            ]
        where = f"Notion at {self.settings.notion_base_url}"
        fix = "check the network, or NOTION_BASE_URL if it is set"
        notion = notion_access.connect(self.settings, self.timeout)
        try:
            lines = await self.limited("notion", _one(notion_access.token(notion, self.settings)), where, fix)
            for source_id, channels in notion_access.by_source(bound).items():
                name = f"notion {','.join(c.id for c in channels)}"
                if lines[0].outcome is not Outcome.OK:
                    lines.append(skip(name, f"data source {source_id}: the token did not work (above)"))
                    continue
                lines += await self.limited(
                    name, _one(notion_access.source(notion, source_id, channels)), where, fix
                )
            return lines
        finally:
            await notion.close()

    async def _youtube(self, http: httpx.AsyncClient, ready: asyncio.Task[list[Result]]) -> list[Result]:
        if self.channels is None:
            return [skip("youtube", "the channel files did not load (above)")]
        publishing = [c for c in self.channels.values() if c.youtube is not None]
        if not publishing:
            return [skip("youtube", "no channel has a youtube: block, so nothing is published")]
        lines = youtube.clients(self.settings, publishing)
        key_works = all(line.outcome is Outcome.OK for line in lines if line.name == "token key")
        await asyncio.wait([ready])  # the sign-ins are in the database
        where = f"Google's token endpoint at {self.settings.youtube_oauth_base_url}"
        fix = "check the network, or YOUTUBE_OAUTH_BASE_URL if it is set"
        for channel in publishing:
            name = f"youtube {channel.id}"
            if not key_works:
                lines.append(skip(name, "its sign-in cannot be read without TOKEN_KEY (above)"))
                continue
            check = youtube.sign_in(http, self.settings, self.engine, channel, self.printer.secrets)
            lines += await self.limited(name, _one(check), where, fix)
        return lines


async def _one(check: Awaitable[Result]) -> list[Result]:
    return [await check]


def _unset(**values: SecretStr | None) -> list[str]:
    """The names of the settings among these that have no value."""
    return [name for name, value in values.items() if value is None or not value.get_secret_value()]
