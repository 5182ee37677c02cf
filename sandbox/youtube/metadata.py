"""videos.insert's checks on the snippet and status, with the reasons YouTube gives."""

from __future__ import annotations

from typing import Any

from sandbox.youtube import clock
from sandbox.youtube.errors import YouTubeError

PRIVACY = ("private", "unlisted", "public")
TITLE_MAX_CHARS = 100
DESCRIPTION_MAX_BYTES = 5000
TAGS_MAX_CHARS = 500


def validate(body: Any, now: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """(snippet, status) as stored, from an insert's JSON body; raises YouTubeError (400)."""
    if not isinstance(body, dict):
        raise YouTubeError(400, "badRequest", "The request body must be a video resource (a JSON object).")
    snippet = body.get("snippet") or {}
    status = body.get("status") or {}
    if not isinstance(snippet, dict) or not isinstance(status, dict):
        raise YouTubeError(400, "invalidVideoMetadata", "snippet and status must be objects.")
    return _snippet(snippet), _status(status, now)


def _snippet(snippet: dict[str, Any]) -> dict[str, Any]:
    title = snippet.get("title")
    if not isinstance(title, str) or not title.strip():
        raise YouTubeError(400, "invalidTitle", "The request must specify a video title.")
    if len(title) > TITLE_MAX_CHARS or _angled(title):
        raise YouTubeError(
            400, "invalidTitle", "The request metadata specifies an invalid or empty video title."
        )
    description = snippet.get("description", "")
    if not isinstance(description, str):
        raise YouTubeError(400, "invalidDescription", "The video description must be a string.")
    if len(description.encode()) > DESCRIPTION_MAX_BYTES or _angled(description):
        raise YouTubeError(
            400, "invalidDescription", "The request metadata specifies an invalid video description."
        )
    tags = snippet.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise YouTubeError(400, "invalidTags", "The video keywords must be a list of strings.")
    if _tags_length(tags) > TAGS_MAX_CHARS:
        raise YouTubeError(400, "invalidTags", "The request metadata specifies invalid video keywords.")
    category = str(snippet.get("categoryId", "22"))
    if not category.isdigit():
        raise YouTubeError(
            400, "invalidCategoryId", "The snippet.categoryId property specifies an invalid category ID."
        )
    out: dict[str, Any] = {"title": title, "description": description, "tags": tags, "categoryId": category}
    language = snippet.get("defaultLanguage")
    if isinstance(language, str) and language:
        out["defaultLanguage"] = language
    return out


def _status(status: dict[str, Any], now: float) -> dict[str, Any]:
    privacy = status.get("privacyStatus", "public")  # the API's default when none is given
    if privacy not in PRIVACY:
        raise YouTubeError(
            400,
            "invalidVideoMetadata",
            f"privacyStatus must be one of {', '.join(PRIVACY)}, not {privacy!r}.",
        )
    out: dict[str, Any] = {
        "privacyStatus": privacy,
        "selfDeclaredMadeForKids": bool(status.get("selfDeclaredMadeForKids", False)),
    }
    publish_at = status.get("publishAt")
    if publish_at is not None:
        if privacy != "private":
            raise YouTubeError(
                400, "invalidPublishAt", "A scheduled publishing time needs privacyStatus private."
            )
        try:
            at = clock.parse_rfc3339(str(publish_at))
        except ValueError as exc:
            raise YouTubeError(400, "invalidPublishAt", f"publishAt is not an RFC 3339 time: {exc}") from exc
        if at <= now:
            raise YouTubeError(
                400, "invalidPublishAt", "The scheduled publishing time must be in the future."
            )
        out["publishAt"] = clock.rfc3339(at)
    return out


def _angled(text: str) -> bool:
    return "<" in text or ">" in text


def _tags_length(tags: list[str]) -> int:
    """YouTube's count: the tags, the commas between them, and quotes around a tag with a space."""
    return sum(len(t) + (2 if " " in t else 0) for t in tags) + max(0, len(tags) - 1)
