"""What `doctor` checks on this machine: the configuration files, the workspace and its free space,
FFmpeg and the captions' font. Nothing here is written but a probe file, removed at once."""

from __future__ import annotations

import asyncio
import importlib.resources
import os
import shutil
from pathlib import Path

from daemon.channels import Channel, load_channels, load_provider_limits, load_youtube_quotas
from daemon.costs import load_pricing_file
from daemon.doctor.report import Result, fail, failed, ok, warn
from daemon.errors import ConfigError
from daemon.paths import ffmpeg_executable
from daemon.settings import Settings

# The captions' and thumbnail's font, as scripts/_lib/captions.py finds it (a pip package, so no
# system font is needed): every weight a channel's `captions.weight` may choose.
FONT_PACKAGE = "font_source_sans_pro"
FONT_FILES = (
    "SourceSansPro-Regular.ttf",
    "SourceSansPro-Semibold.ttf",
    "SourceSansPro-Bold.ttf",
    "SourceSansPro-Black.ttf",
)
# What the scripts ask of FFmpeg beyond the basics: burned-in captions and H.264.
FFMPEG_NEEDS = {"--enable-libass": "libass (burned-in captions)", "--enable-libx264": "libx264 (H.264)"}


def channels(settings: Settings) -> tuple[list[Result], dict[str, Channel] | None]:
    """The channel files' line, and the channels (None when they do not load)."""
    try:
        found = load_channels(settings.channels_dir)
    except ConfigError as exc:
        return [failed("channels", exc)], None
    if not found:
        return [
            warn(
                "channels",
                f"no <channel>.yaml in {settings.channels_dir}: nothing will be made",
                "add a channel file there (README, Configuration) or set CHANNELS_DIR",
            )
        ], found
    lines = [ok("channels", f"{len(found)} in {settings.channels_dir}: {', '.join(_described(found))}")]
    unused = sorted(c.id for c in found.values() if c.sfx_level_db is not None)
    if unused:
        lines.append(
            warn(
                "channels",
                f"sfx_level_db is no longer used ({', '.join(unused)})",
                "set levels.ambience_lu (LU under the voice, default -13) and remove sfx_level_db",
            )
        )
    return lines, found


def _described(found: dict[str, Channel]) -> list[str]:
    out = []
    for channel in found.values():
        uses = [name for name, used in (("Notion", channel.notion), ("YouTube", channel.youtube)) if used]
        out.append(f"{channel.id} ({', '.join(uses)})" if uses else channel.id)
    return out


def tables(settings: Settings) -> list[Result]:
    """The price table and the providers file (limits and YouTube quotas)."""
    lines = []
    try:
        load_pricing_file(settings.pricing_file)
        lines.append(ok("pricing", str(settings.pricing_file)))
    except ConfigError as exc:
        lines.append(failed("pricing", exc, "correct the file or set PRICING_FILE"))
    try:
        limits = load_provider_limits(settings.providers_file).as_dict()
        load_youtube_quotas(settings.providers_file)
        at_once = ", ".join(f"{name} {n}" for name, n in limits.items())
        where = settings.providers_file if settings.providers_file.exists() else "no file: the defaults"
        lines.append(ok("providers file", f"{where}; at once: {at_once}"))
    except ConfigError as exc:
        lines.append(failed("providers file", exc, "correct the file or set PROVIDERS_FILE"))
    return lines


def workspace(settings: Settings) -> list[Result]:
    """The workspace takes files, and has more free space than MIN_FREE_MB."""
    path = settings.workspace_dir
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
    lines = []
    if existing != path:
        if os.access(existing, os.W_OK):
            lines.append(ok("workspace", f"{path} does not exist yet; the daemon makes it at start-up"))
        else:
            lines.append(
                fail(
                    "workspace",
                    f"{path} does not exist and {existing} is not writable",
                    "create it, writable by the daemon's user, or point WORKSPACE_DIR at a writable folder",
                )
            )
    else:
        probe = path / f".doctor-{os.getpid()}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
            lines.append(ok("workspace", f"{path} is writable"))
        except OSError as exc:
            lines.append(
                fail(
                    "workspace",
                    f"{path}: cannot write there ({exc.strerror})",
                    "give the daemon's user write access to it, or point WORKSPACE_DIR at a writable "
                    "folder (a mounted volume in production)",
                )
            )
    free_mb = shutil.disk_usage(existing).free / 1_000_000
    said = f"{_size(free_mb)} free in {existing} (MIN_FREE_MB {settings.min_free_mb:g})"
    if free_mb < settings.min_free_mb:
        lines.append(
            fail(
                "disk",
                f"{said}: no new step starts below it",
                "free space on that disk, move WORKSPACE_DIR to a larger one, or lower MIN_FREE_MB",
            )
        )
    elif free_mb < 2 * settings.min_free_mb:
        lines.append(warn("disk", f"{said}: close to the floor", "free space on that disk soon"))
    else:
        lines.append(ok("disk", said))
    return lines


def _size(mb: float) -> str:
    return f"{mb / 1000:.1f} GB" if mb >= 1000 else f"{mb:.0f} MB"


async def ffmpeg() -> list[Result]:
    """The FFmpeg the scripts will use runs, and has what they ask of it."""
    fix = "reinstall the project (its imageio-ffmpeg wheel ships one), or put an FFmpeg on PATH"
    try:
        exe, origin = ffmpeg_executable()
    except (ImportError, RuntimeError) as exc:
        return [fail("ffmpeg", f"no FFmpeg found ({exc})", fix)]
    try:
        proc = await asyncio.create_subprocess_exec(
            exe, "-hide_banner", "-version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        try:
            out, _ = await proc.communicate()
        except asyncio.CancelledError:  # the time limit: leave no FFmpeg behind
            proc.kill()
            await proc.wait()
            raise
    except OSError as exc:
        return [fail("ffmpeg", f"{exe} ({origin}) does not run: {exc.strerror}", fix)]
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        return [fail("ffmpeg", f"{exe} -version exited {proc.returncode}: {text.strip()[:200]}", fix)]
    version = text.split("\n", 1)[0].removeprefix("ffmpeg version ").split(" ", 1)[0]
    missing = [what for flag, what in FFMPEG_NEEDS.items() if flag not in text]
    if missing:
        return [
            fail(
                "ffmpeg",
                f"{version} at {exe} ({origin}) lacks {', '.join(missing)}",
                "install an FFmpeg built with them, or take it off PATH so imageio-ffmpeg's is used",
            )
        ]
    return [ok("ffmpeg", f"{version} ({origin}: {exe})")]


def font() -> list[Result]:
    """The captions' font files are installed beside the scripts."""
    fix = "install it: pip install font-source-sans-pro (a dependency of the project: reinstall it)"
    try:
        folder = Path(str(importlib.resources.files(FONT_PACKAGE) / "files"))
    except ModuleNotFoundError:
        return [fail("captions font", f"the package {FONT_PACKAGE} is not installed", fix)]
    missing = [name for name in FONT_FILES if not (folder / name).is_file()]
    if missing:
        return [fail("captions font", f"{', '.join(missing)} missing in {folder}", fix)]
    return [ok("captions font", f"Source Sans Pro, {len(FONT_FILES)} weights, in {folder}")]
