"""The Notion API (version 2025-09-03) as notion-client 3.x speaks it, served under `/notion`.

Pages, blocks, databases, data sources and comments live in the sandbox store, so a restarted
sandbox keeps them. Every request goes through the provider gate (auth, then a token bucket over
`notion_rate` / `notion_burst`), and is counted per endpoint for `/_sandbox/stats`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sandbox.app import Provider
from sandbox.http import Request, Response
from sandbox.notion import blocks, comments, databases, pages, query, uploads, users, view
from sandbox.notion.errors import error_response
from sandbox.notion.state import Notion

if TYPE_CHECKING:
    from sandbox.app import Sandbox

PREFIX = "/notion"
# A stand-in for the mock HTTP-status host notion-client's own tests use for non-JSON errors.
HTTPSTATUS_PREFIX = "/_sandbox/httpstatus"


def register(app: Sandbox) -> Notion:
    notion = Notion(app)

    def invalid_url(request: Request) -> Response:
        notion.count("invalid_request_url", by_endpoint=True)
        return error_response(400, "invalid_request_url", "Invalid request URL.", None)

    app.add_provider(
        Provider(name="notion", prefix=PREFIX, error=error_response, gate=notion.gate, not_found=invalid_url)
    )
    for module in (users, pages, blocks, databases, query, comments, uploads):
        for method, template, name, handler in module.ROUTES:
            # Each send is in the call log (`/_sandbox/calls`): a file sent twice shows there.
            sent = name == "file_uploads.send"
            app.route(
                method,
                PREFIX + template,
                notion.endpoint(name, handler),
                provider="notion",
                billable=sent,
                identify=uploads.sent_upload if sent else None,
            )
    app.route(
        "GET",
        "/_sandbox/files/{upload_id}/{filename}",
        lambda request: uploads.serve_file(notion, request),
        provider="_sandbox",
    )
    app.route(
        "GET",
        "/_sandbox/pages/{page_id}",
        lambda request: view.page_view(notion, request),
        provider="_sandbox",
    )
    app.route("GET", HTTPSTATUS_PREFIX + "/v1/{code}", _http_status, provider="_sandbox")
    app.stat_sources["notion"] = notion.stats
    return notion


def _http_status(request: Request) -> Response:
    """`{code} {reason}` as text/plain, like mock.httpstatus.io: a non-JSON error body."""
    from http import HTTPStatus

    try:
        status = HTTPStatus(int(request.params["code"]))
    except ValueError:
        return Response(404, b"unknown status", {"Content-Type": "text/plain"})
    return Response(status.value, f"{status.value} {status.phrase}".encode(), {"Content-Type": "text/plain"})
