"""Notion's error envelope and the messages the real API uses for the common failures."""

from __future__ import annotations

import json
import math
import uuid

from sandbox.http import Response

# The code Notion answers with for each HTTP status (what notion-client's APIErrorCode knows).
STATUS_CODES: dict[int, str] = {
    400: "validation_error",
    401: "unauthorized",
    403: "restricted_resource",
    404: "object_not_found",
    409: "conflict_error",
    429: "rate_limited",
    500: "internal_server_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
    529: "service_overload",
}

DEFAULT_MESSAGES: dict[str, str] = {
    "validation_error": "body failed validation.",
    "invalid_json": "Error parsing JSON body.",
    "invalid_request_url": "Invalid request URL.",
    "invalid_request": "This request is not supported.",
    "unauthorized": "API token is invalid.",
    "restricted_resource": "API token does not have access to this resource.",
    "object_not_found": "Could not find object. Make sure the relevant pages and databases are shared "
    "with your integration.",
    "conflict_error": "Conflict occurred while saving. Please try again.",
    "rate_limited": "You have been rate limited. Please try again in a few minutes.",
    "internal_server_error": "Unexpected error occurred.",
    "bad_gateway": "Bad gateway.",
    "service_unavailable": "Notion is unavailable. This can occur when the time to respond to a request "
    "takes longer than 60 seconds, the maximum request timeout. Please try again later.",
    "gateway_timeout": "Notion timed out while processing the request. Please try again later.",
    "service_overload": "Notion is overloaded. Please try again later.",
}

SHARE_HINT = "Make sure the relevant pages and databases are shared with your integration."


class NotionError(Exception):
    """Raised by handlers; the dispatcher turns it into Notion's error envelope."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


def validation(message: str) -> NotionError:
    return NotionError(400, "validation_error", message)


def body_validation(path: str, expectation: str, actual: object) -> NotionError:
    """The "body failed validation" wording Notion uses for schema violations."""
    return validation(f"body failed validation: {path} {expectation}, instead was `{_shown(actual)}`.")


def not_found(kind: str, object_id: str) -> NotionError:
    return NotionError(404, "object_not_found", f"Could not find {kind} with ID: {object_id}. {SHARE_HINT}")


def archived_block() -> NotionError:
    return validation("Can't edit block that is archived. You must unarchive the block before editing.")


def _shown(value: object) -> str:
    if value is None:
        return "undefined"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)[:80]


def error_response(
    status: int, code: str | int | None, message: str | None, retry_after: float | None
) -> Response:
    """Notion's envelope for any status; an explicit code (e.g. from a fault) wins over the status's."""
    name = str(code) if code is not None else STATUS_CODES.get(status, _fallback_code(status))
    body = {
        "object": "error",
        "status": status,
        "code": name,
        "message": message or DEFAULT_MESSAGES.get(name, "Unexpected error occurred."),
        "request_id": str(uuid.uuid4()),
    }
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if status == 429 or retry_after is not None:
        # Notion sends whole seconds; a client that honours it must never be told "0".
        headers["Retry-After"] = str(max(1, math.ceil(retry_after if retry_after is not None else 1)))
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(status, data, headers)


def _fallback_code(status: int) -> str:
    if status >= 500:
        return "internal_server_error"
    return "invalid_request"
