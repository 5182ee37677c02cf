"""Google's error envelopes: the Data API's `{"error": {"code", "message", "errors": [...]}}` and the
OAuth token endpoint's `{"error", "error_description"}`."""

from __future__ import annotations

import math

from sandbox.gemini import STATUS_NAMES
from sandbox.http import Response, json_response

_REASON_FOR_STATUS = {
    400: "badRequest",
    401: "authError",
    403: "forbidden",
    404: "notFound",
    409: "conflict",
    429: "rateLimitExceeded",
    500: "backendError",
    503: "backendError",
}
_DOMAINS = {
    "quotaExceeded": "youtube.quota",
    "rateLimitExceeded": "usageLimits",
    "userRateLimitExceeded": "usageLimits",
    "authError": "global",
    "insufficientPermissions": "global",
    "required": "global",
    "backendError": "global",
}
QUOTA_MESSAGE = (
    'The request cannot be completed because you have exceeded your <a href="/youtube/v3/getting-started'
    '#quota">quota</a>.'
)
AUTH_MESSAGE = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other"
    " valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
)


class YouTubeError(Exception):
    """A refusal in the Data API's envelope: HTTP status, reason, message, extra headers."""

    def __init__(self, status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message
        self.headers = headers or {}

    def response(self) -> Response:
        return error_response(self.status, self.reason, self.message, None, self.headers)


def error_response(
    status: int,
    reason: str | int | None,
    message: str | None,
    retry_after: float | None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The Data API's envelope; also the fault injector's error factory for provider `youtube`."""
    name = str(reason) if reason is not None else _REASON_FOR_STATUS.get(status, "backendError")
    text = message or (QUOTA_MESSAGE if name == "quotaExceeded" else f"{name} ({status})")
    domain = _DOMAINS.get(name, "youtube.video" if status < 500 else "global")
    detail: dict[str, object] = {"message": text, "domain": domain, "reason": name}
    if name == "authError":
        detail.update(location="Authorization", locationType="header")
    body = {
        "error": {
            "code": status,
            "message": text,
            "errors": [detail],
            "status": STATUS_NAMES.get(status, "UNKNOWN"),
        }
    }
    extra = dict(headers or {})
    if retry_after is not None:
        extra["Retry-After"] = str(math.ceil(retry_after))
    return json_response(status, body, extra)


def auth_error() -> Response:
    return error_response(
        401,
        "authError",
        AUTH_MESSAGE,
        None,
        {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'},
    )


def oauth_error(
    status: int, code: str | int | None, description: str | None, retry_after: float | None = None
) -> Response:
    """The token endpoint's envelope; also the fault injector's error factory for `google_oauth`."""
    error = str(code) if code is not None else ("invalid_request" if status < 500 else "internal_failure")
    body = {"error": error, "error_description": description or error.replace("_", " ")}
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    if retry_after is not None:
        headers["Retry-After"] = str(math.ceil(retry_after))
    return json_response(status, body, headers)
