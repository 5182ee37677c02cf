"""A page's publishing choices (Visibility, Publish At, Tags, Description), read when the page is
queued and again when its final review is approved: what the upload sends to YouTube."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from daemon.notion.gateway import JSON
from daemon.notion.props import option_name, plain_text
from daemon.notion.schema import VISIBILITIES
from services.plan import TAGS_LIMIT
from services.storyboard import YOUTUBE_DESCRIPTION_LIMIT

# The marker tag the upload adds (`nvd-` and 12 hex digits), counted with its comma.
MARKER_LENGTH = 17


def publish_choices(
    props: JSON, now: datetime, channel_tags: tuple[str, ...] = ()
) -> tuple[dict[str, Any], list[str]]:
    """The page's choices (only those it makes) and the problems with them, each naming the fix.
    The tags are counted as YouTube will count them: with the channel's and the upload's marker."""
    choices: dict[str, Any] = {}
    problems: list[str] = []
    visibility = option_name(props.get("Visibility"))
    if visibility:
        if visibility not in VISIBILITIES:
            problems.append(
                f"Visibility '{visibility}' is not one YouTube knows: pick {', '.join(VISIBILITIES)} "
                "(or leave it empty for the channel's default)."
            )
        else:
            choices["visibility"] = visibility.lower()
    when = _publish_at(props.get("Publish At"), now, problems)
    if when is not None:
        choices["publish_at"] = when
        if visibility and visibility != "Private":
            problems.append(
                f"Publish At is set and Visibility is {visibility}: YouTube publishes at a time only a "
                "video that is private until then; set Visibility to Private (or empty), or clear Publish At."
            )
    tags = _tags(props.get("Tags"))
    if tags:
        every = list(dict.fromkeys([*tags, *channel_tags]))
        length = sum(len(t) + 2 * (" " in t) + 1 for t in every) + MARKER_LENGTH
        if length > TAGS_LIMIT:
            problems.append(
                f"Tags come to {length} characters with the channel's own and the daemon's marker, over "
                f"YouTube's {TAGS_LIMIT}: remove a few."
            )
        if any(("<" in t or ">" in t) for t in tags):
            problems.append("Tags: YouTube refuses < and > in a tag; remove them.")
        choices["tags"] = tags
    description = plain_text(props.get("Description")).strip()
    if description:
        sent = description.replace("<", "‹").replace(">", "›")  # as the upload sends it
        if len(sent.encode()) > YOUTUBE_DESCRIPTION_LIMIT:
            problems.append(
                f"Description is {len(sent.encode()):,} bytes, over YouTube's "
                f"{YOUTUBE_DESCRIPTION_LIMIT:,}: shorten it."
            )
        choices["description"] = description
    return choices, problems


def _publish_at(prop: JSON | None, now: datetime, problems: list[str]) -> str | None:
    date = (prop or {}).get("date") if (prop or {}).get("type") == "date" else None
    if not date or not date.get("start"):
        return None
    start = str(date["start"])
    if "T" not in start:
        problems.append(
            f"Publish At is {start}, a day without a time: include the time to publish at (Notion: the "
            "date's 'Include time' switch)."
        )
        return None
    try:
        moment = datetime.fromisoformat(start.replace("Z", "+00:00"))
    except ValueError:
        problems.append(f"Publish At '{start}' is not a date and time Notion gives; pick it again.")
        return None
    if moment.tzinfo is None:
        problems.append("Publish At has no time zone: pick it again with a time zone.")
        return None
    if moment <= now:
        problems.append(
            f"Publish At ({moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC) is in the past: move it to a later "
            "time, or clear it to publish at once."
        )
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _tags(prop: JSON | None) -> list[str]:
    if not prop:
        return []
    if prop.get("type") == "multi_select":
        names = [str(o.get("name", "")) for o in prop.get("multi_select") or []]
    else:
        names = plain_text(prop).split(",")
    return [n.strip() for n in names if n.strip()]
