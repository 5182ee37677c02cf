"""Notion: the integration's token (users.me), then each channel's data source, read and its
properties checked as start-up checks them (daemon/notion/schema.py, the same messages)."""

from __future__ import annotations

from collections.abc import Sequence

from daemon.channels import Channel
from daemon.doctor.report import Result, fail, failed, ok, warn
from daemon.errors import ConfigError, DaemonError
from daemon.notion.gateway import NotionApi, NotionNotFound, NotionRejected, NotionUnavailable
from daemon.notion.schema import check_data_source
from daemon.settings import Settings

TOKEN_FIX = (
    "set NOTION_TOKEN to the integration's secret (Notion: Settings, Connections, Develop integrations)"
)


def by_source(bound: Sequence[Channel]) -> dict[str, list[Channel]]:
    sources: dict[str, list[Channel]] = {}
    for channel in bound:
        assert channel.notion is not None
        sources.setdefault(channel.notion.data_source_id, []).append(channel)
    return sources


def connect(settings: Settings, timeout: float) -> NotionApi:
    """A gateway that tries each call once: `doctor` reports a failure instead of waiting it out."""
    assert settings.notion_token is not None
    return NotionApi(
        settings.notion_token.get_secret_value(),
        settings.notion_base_url,
        rate=settings.notion_rate,
        burst=settings.notion_burst,
        attempts=1,
        timeout_s=timeout,
        max_wait_s=timeout,
    )


async def token(notion: NotionApi, settings: Settings) -> Result:
    """users.me: the token works, and whose integration it is."""
    try:
        me = await notion.call("GET", "users/me")
    except NotionRejected as exc:
        if exc.status == 401:
            return fail(
                "notion",
                f"Notion refused NOTION_TOKEN (401 unauthorized) at {settings.notion_base_url}",
                TOKEN_FIX,
            )
        return fail("notion", f"users/me was refused: {exc}", TOKEN_FIX)
    except NotionUnavailable as exc:
        return fail(
            "notion",
            f"cannot reach Notion at {settings.notion_base_url} ({exc.reason})",
            "check the network, or NOTION_BASE_URL if it is set",
        )
    bot = me.get("bot") or {}
    workspace = bot.get("workspace_name")
    where = f" in workspace {workspace!r}" if workspace else ""
    return ok("notion", f"NOTION_TOKEN works: integration {me.get('name')!r}{where}")


async def source(notion: NotionApi, source_id: str, channels: list[Channel]) -> Result:
    """The data source is shared with the integration and has every property the channels need."""
    name = f"notion {','.join(c.id for c in channels)}"
    try:
        info = await check_data_source(notion, source_id, channels)
    except ConfigError as exc:
        cause = exc.__cause__
        if isinstance(cause, NotionNotFound | NotionRejected) and cause.status != 401:
            files = ", ".join(f"{c.id}.yaml" for c in channels)
            return fail(
                name,
                f"data source {source_id} cannot be read ({cause})",
                "share the database with the integration (its ••• menu, Connections), or correct "
                f"notion.data_source_id in {files}",
            )
        return failed(name, exc)
    except DaemonError as exc:
        return failed(name, exc)
    if info.notes:
        return warn(
            name, f"data source {source_id} is ready; optional properties missing", "; ".join(info.notes)
        )
    return ok(name, f"data source {source_id} is ready (Status a {info.status_type} property)")
