"""Google OAuth for an installed app: the consent page (the sandbox's user agrees at once and is
sent back to the loopback redirect with a code) and the token endpoint (the code exchange with a
PKCE verifier, and refreshes). Provider `google_oauth`, served under `/google-oauth`."""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlencode

from sandbox.http import Request, Response, json_response
from sandbox.youtube.errors import oauth_error
from sandbox.youtube.grants import UPLOAD_SCOPE, GrantError, Grants
from sandbox.youtube.state import YouTube

if TYPE_CHECKING:
    from sandbox.app import Sandbox

LOOPBACK = ("http://127.0.0.1:", "http://localhost:")


class OAuth:
    def __init__(self, app: Sandbox, youtube: YouTube, grants: Grants) -> None:
        self.youtube = youtube
        self.grants = grants
        self.client_id = app.credentials["youtube_client_id"]
        self.client_secret = app.credentials["youtube_client_secret"]

    def consent(self, request: Request) -> Response:
        """GET /o/oauth2/v2/auth: a refusal is a page for the person at the browser, as Google's is;
        a consent is a 302 back to the app with the code and the state."""
        client_id = request.arg("client_id") or ""
        redirect_uri = request.arg("redirect_uri") or ""
        if client_id != self.client_id:
            return _page(400, "invalid_client", "The OAuth client was not found.")
        if not redirect_uri.startswith(LOOPBACK):
            return _page(
                400,
                "redirect_uri_mismatch",
                "An installed app's redirect_uri must be a loopback address (http://127.0.0.1:PORT or"
                " http://localhost:PORT).",
            )
        if request.arg("response_type") != "code":
            return _page(400, "unsupported_response_type", "response_type must be code.")
        scopes = (request.arg("scope") or "").split()
        if UPLOAD_SCOPE not in scopes:
            return _page(400, "invalid_scope", f"The sandbox's YouTube needs the scope {UPLOAD_SCOPE}.")
        method = request.arg("code_challenge_method") or "plain"
        if method not in ("S256", "plain"):
            return _page(400, "invalid_request", "code_challenge_method must be S256 or plain.")
        channel = self.youtube.channel_for(self.youtube.config.youtube_channel_title)
        code = self.grants.issue_code(
            client_id=client_id,
            channel_id=channel["id"],
            redirect_uri=redirect_uri,
            scopes=scopes,
            challenge=request.arg("code_challenge"),
            challenge_method=method,
            offline=request.arg("access_type") == "offline",
        )
        answer = {"code": code, "scope": " ".join(scopes)}
        state = request.arg("state")
        if state is not None:
            answer = {"state": state, **answer}
        separator = "&" if "?" in redirect_uri else "?"
        return Response(302, b"", {"Location": redirect_uri + separator + urlencode(answer)})

    def token(self, request: Request) -> Response:
        """POST /token, form-encoded: grant_type authorization_code or refresh_token."""
        form = {
            k: v[0]
            for k, v in parse_qs(request.body.decode(errors="replace"), keep_blank_values=True).items()
        }
        client_id, client_secret = _basic_auth(request) or (
            form.get("client_id", ""),
            form.get("client_secret", ""),
        )
        if client_id != self.client_id:
            return oauth_error(401, "invalid_client", "The OAuth client was not found.")
        if client_secret != self.client_secret:
            return oauth_error(401, "invalid_client", "Unauthorized")
        grant_type = form.get("grant_type", "")
        try:
            if grant_type == "authorization_code":
                answer = self.grants.redeem_code(
                    form.get("code", ""), client_id, form.get("redirect_uri", ""), form.get("code_verifier")
                )
            elif grant_type == "refresh_token":
                answer = self.grants.refresh(form.get("refresh_token", ""), client_id)
            else:
                return oauth_error(400, "unsupported_grant_type", f"Invalid grant_type: {grant_type}")
        except GrantError as exc:
            return oauth_error(exc.status, exc.error, exc.description)
        return json_response(200, answer, {"Cache-Control": "no-store", "Pragma": "no-cache"})


def _basic_auth(request: Request) -> tuple[str, str] | None:
    """A client may authenticate with HTTP Basic instead of the form's client_id and client_secret."""
    header = request.header("authorization")
    if not header.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return unquote(user), unquote(password)


def _page(status: int, error: str, detail: str) -> Response:
    html = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Error</title></head><body>"
        f"<h1>Access blocked: authorization error</h1><p>Error {status}: {error}</p><p>{detail}</p>"
        "</body></html>"
    )
    return Response(status, html.encode(), {"Content-Type": "text/html; charset=utf-8"})
