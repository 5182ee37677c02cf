"""The channel database's properties: the start-up check, and `notion-setup` for a new channel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from daemon.channels import Channel
from daemon.errors import ConfigError, ServiceUnreachable
from daemon.notion.gateway import JSON, NotionGateway, NotionNotFound, NotionRejected, NotionUnavailable
from services.status import Status

# Canonical property -> the Notion types it may have.
REQUIRED = {
    "Title": ("title",),
    "Topic": ("rich_text",),
    "Story Direction": ("rich_text",),
    "Status": ("select", "status"),
    "Progress": ("rich_text",),
    "Cost": ("number",),
    "Error Log": ("rich_text",),
    "Updated": ("date",),
    "Output": ("url",),
}
OPTIONAL = {"Channel": ("select",), "Priority": ("select",), "Video": ("files",)}
PRIORITIES = ("High", "Normal", "Low")
# A data source with a channel that publishes to YouTube: where the video's address goes (required),
# and what the operator may choose per video (optional: the channel's defaults otherwise).
YOUTUBE_URL = "YouTube URL"
PUBLISHING = {
    "Visibility": ("select",),
    "Publish At": ("date",),
    "Tags": ("multi_select", "rich_text"),
    "Description": ("rich_text",),
}
VISIBILITIES = ("Private", "Unlisted", "Public")
# Statuses only a channel that publishes ever shows.
PUBLISHED_ONLY = frozenset({Status.UPLOADING, Status.PUBLISHED, Status.SCHEDULED})
_FIX = {
    "title": "the database's title column, renamed to {name}",
    "rich_text": "a Text property named {name}",
    "select": "a Select property named {name}",
    "status": "a Status property named {name}",
    "number": "a Number property named {name}",
    "date": "a Date property named {name}",
    "url": "a URL property named {name}",
    "files": "a Files & media property named {name}",
    "multi_select": "a Multi-select property named {name}",
}


@dataclass(frozen=True)
class SourceInfo:
    data_source_id: str
    status_type: str  # select | status
    status_options: frozenset[str]
    has_priority: bool
    has_channel: bool
    notes: tuple[str, ...] = ()  # what works without an optional property, and how to add it
    database_id: str | None = None  # the database holding it: older webhook events name only that


def _unreadable(data_source_id: str, names: str, exc: Exception) -> ConfigError:
    return ConfigError(
        f"Notion data source {data_source_id} (channels {names}) cannot be read: {exc}. Share the "
        "database with the integration (••• menu, Connections) and check notion.data_source_id"
    )


async def check_data_source(
    notion: NotionGateway, data_source_id: str, channels: list[Channel]
) -> SourceInfo:
    """Raises ConfigError listing every missing or mistyped property with the fix."""
    names = ", ".join(c.id for c in channels)
    try:
        source = await notion.call("GET", f"data_sources/{data_source_id}")
    except NotionRejected as exc:
        if exc.status == 401:
            raise ConfigError(
                "NOTION_TOKEN: Notion refused the token (401 unauthorized); set NOTION_TOKEN to the "
                "integration's secret (Notion: Settings, Connections, Develop or manage integrations)"
            ) from exc
        raise _unreadable(data_source_id, names, exc) from exc
    except NotionNotFound as exc:
        raise _unreadable(data_source_id, names, exc) from exc
    except NotionUnavailable as exc:
        raise ServiceUnreachable(
            f"NOTION_BASE_URL: cannot reach Notion at {getattr(notion, 'base_url', 'its address')} "
            f"({exc.reason}); check the network, or NOTION_BASE_URL if it is set"
        ) from exc
    props: dict[str, Any] = source.get("properties", {})
    publishes = any(c.youtube is not None for c in channels)
    problems = _property_problems(
        props,
        shared=len(channels) > 1 or any(c.notion and c.notion.channel_option for c in channels),
        publishes=publishes,
    )
    status = props.get("Status", {})
    options = frozenset(o["name"] for o in status.get(status.get("type", ""), {}).get("options", []))
    if status.get("type") == "status":
        shown = [s for s in Status if publishes or s not in PUBLISHED_ONLY]
        missing = [s.value for s in shown if s.value not in options]
        if missing:
            problems.append(
                "Status is a Notion status property, whose options only a person can add: add the options "
                + ", ".join(missing)
                + " (or make Status a Select property; the daemon adds select options itself)"
            )
    if problems:
        raise ConfigError(
            f"Notion data source {data_source_id} (channels {names}) is not ready:\n  "
            + "\n  ".join(problems)
        )
    notes: list[str] = []
    if "Video" not in props:
        notes.append(
            "Video is missing: the final cut shows in the page body only; add "
            + _FIX["files"].format(name="Video")
            + " to have it as a property too"
        )
    if publishes:
        notes += [
            f"{name} is missing: every video takes the channel's default; add "
            f"{_FIX[types[0]].format(name=name)} to choose it per video"
            for name, types in PUBLISHING.items()
            if name not in props
        ]
    return SourceInfo(
        data_source_id,
        str(status.get("type")),
        options,
        "Priority" in props,
        "Channel" in props,
        tuple(notes),
        (source.get("parent") or {}).get("database_id"),
    )


def _property_problems(props: dict[str, Any], *, shared: bool, publishes: bool = False) -> list[str]:
    problems = []
    wanted = dict(REQUIRED)
    if shared:
        wanted["Channel"] = OPTIONAL["Channel"]
    if publishes:
        wanted[YOUTUBE_URL] = ("url",)
    for name, types in PUBLISHING.items():
        found = props.get(name)
        if found is not None and found.get("type") not in types:
            problems.append(
                f"{name} is a {found.get('type')} property: change it to {_FIX[types[0]].format(name=name)}"
            )
    for name, types in wanted.items():
        found = props.get(name)
        if found is None:
            problems.append(f"{name} is missing: add {_FIX[types[0]].format(name=name)}")
        elif found.get("type") not in types:
            problems.append(
                f"{name} is a {found.get('type')} property: change it to {_FIX[types[0]].format(name=name)}"
            )
    priority = props.get("Priority")
    if priority is not None and priority.get("type") != "select":
        problems.append(
            f"Priority is a {priority.get('type')} property: change it to a Select property "
            "with the options High, Normal, Low"
        )
    video = props.get("Video")
    if video is not None and video.get("type") != "files":
        problems.append(
            f"Video is a {video.get('type')} property: change it to {_FIX['files'].format(name='Video')}"
        )
    return problems


def database_properties(channel_names: list[str]) -> JSON:
    """The properties of a ready channel database (Status as a select, whose options the API can add)."""
    status_options = [{"name": s.value} for s in Status]
    return {
        "Title": {"title": {}},
        "Topic": {"rich_text": {}},
        "Story Direction": {"rich_text": {}},
        "Channel": {"select": {"options": [{"name": n} for n in channel_names]}},
        "Status": {"select": {"options": status_options}},
        "Priority": {"select": {"options": [{"name": p} for p in PRIORITIES]}},
        "Progress": {"rich_text": {}},
        "Cost": {"number": {"format": "dollar"}},
        "Error Log": {"rich_text": {}},
        "Updated": {"date": {}},
        "Output": {"url": {}},
        "Video": {"files": {}},
        YOUTUBE_URL: {"url": {}},
        "Visibility": {"select": {"options": [{"name": v} for v in VISIBILITIES]}},
        "Publish At": {"date": {}},
        "Tags": {"multi_select": {}},
        "Description": {"rich_text": {}},
    }


async def create_database(
    notion: NotionGateway, parent_page_id: str, title: str, channel_names: list[str]
) -> JSON:
    """`notion-setup`: a database with the canonical properties under a page shared with the integration."""
    return await notion.call(
        "POST",
        "databases",
        body={
            "parent": {"type": "page_id", "page_id": parent_page_id},
            "title": [{"type": "text", "text": {"content": title}}],
            "initial_data_source": {"properties": database_properties(channel_names)},
        },
        idempotent=False,
    )
