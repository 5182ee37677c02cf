"""Google's sign-in for an installed app: the consent page in a browser, its answer caught by a
listener on the loopback address (or pasted back on a server without a browser), the code
exchanged with a PKCE verifier for a refresh token."""

from __future__ import annotations

import base64
import hashlib
import queue
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from daemon.errors import DaemonError

SCOPES = (
    "https://www.googleapis.com/auth/youtube.upload",
    "https://www.googleapis.com/auth/youtube.force-ssl",  # captions
)


class SignInFailed(DaemonError):
    """The sign-in did not give a refresh token; the message says why and what to do."""


@dataclass(frozen=True)
class Consent:
    url: str  # to open in a browser signed in to the channel's Google account
    redirect_uri: str
    state: str
    verifier: str


def consent(auth_url: str, client_id: str, redirect_uri: str) -> Consent:
    """The consent page's address, with a fresh PKCE verifier (S256) and state."""
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state = secrets.token_urlsafe(16)
    query = urlencode(
        {
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": " ".join(SCOPES),
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "access_type": "offline",  # a refresh token
            "prompt": "consent",  # a new one even when this client was consented to before
        }
    )
    return Consent(f"{auth_url}?{query}", redirect_uri, state, verifier)


def code_of(answer: str, state: str) -> str:
    """The authorisation code from the address Google sent the browser to (or its query)."""
    query = urlsplit(answer.strip()).query or answer.strip().lstrip("?")
    fields = {k: v[0] for k, v in parse_qs(query).items()}
    if "error" in fields:
        raise SignInFailed(
            f"Google refused the sign-in ({fields['error']}); run the command again and allow the "
            "access asked for"
        )
    if fields.get("state") != state:
        raise SignInFailed(
            "the address pasted is not the answer to this sign-in (its state differs); paste the address of "
            "the page the browser was sent to after this run's consent"
        )
    if not fields.get("code"):
        raise SignInFailed("the address has no code; paste the whole address the browser was sent to")
    return fields["code"]


class Loopback:
    """A one-shot listener on 127.0.0.1 for the consent's redirect (its query is put in `answers`)."""

    def __init__(self, port: int = 0) -> None:
        self.answers: queue.Queue[str] = queue.Queue()
        answers = self.answers

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                answers.put(self.path)
                body = b"Signed in: you can close this tab and go back to the terminal.\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = HTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass(frozen=True)
class Tokens:
    refresh_token: str
    access_token: str


def exchange(token_url: str, client: tuple[str, str], code: str, start: Consent) -> Tokens:
    """The code for tokens (with the PKCE verifier); a refresh token is required."""
    try:
        answer = httpx.post(
            token_url,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "client_id": client[0],
                "client_secret": client[1],
                "redirect_uri": start.redirect_uri,
                "code_verifier": start.verifier,
            },
            timeout=30,
        )
    except httpx.HTTPError as exc:
        raise SignInFailed(
            f"Google's token endpoint {token_url} cannot be reached ({exc}); try again"
        ) from exc
    body = _json(answer)
    if answer.status_code != 200:
        error = body.get("error", answer.status_code)
        hint = (
            "the OAuth client is wrong: check YOUTUBE_CLIENT_ID and YOUTUBE_CLIENT_SECRET"
            if error == "invalid_client"
            else "run the command again (a code works once, for a few minutes)"
        )
        raise SignInFailed(f"Google refused the code ({error}: {body.get('error_description', '')}); {hint}")
    if not body.get("refresh_token"):
        raise SignInFailed(
            "Google gave no refresh token; remove this app's access in the Google account (Security, "
            "Third-party access) and run the command again"
        )
    return Tokens(str(body["refresh_token"]), str(body.get("access_token", "")))


def youtube_channel(base_url: str, access_token: str) -> str | None:
    """The signed-in YouTube channel's title (channels.list mine, 1 unit), for the operator."""
    try:
        answer = httpx.get(
            f"{base_url}/youtube/v3/channels",
            params={"part": "snippet", "mine": "true"},
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=30,
        )
        items: Any = _json(answer).get("items") or []
        return str(items[0]["snippet"]["title"]) if items else None
    except (httpx.HTTPError, KeyError, TypeError):
        return None


def wait_for_answer(loopback: Loopback, read_line: Callable[[], str] | None, timeout: float) -> str:
    """The redirect caught by the listener, or an address pasted on stdin, whichever comes first."""
    if read_line is not None:

        def pasted() -> None:
            line = read_line()
            if line.strip():
                loopback.answers.put(line)

        threading.Thread(target=pasted, daemon=True).start()
    try:
        return loopback.answers.get(timeout=timeout)
    except queue.Empty:
        raise SignInFailed(
            f"no answer from the browser within {timeout:.0f} s; run the command again"
        ) from None


def _json(answer: httpx.Response) -> dict[str, object]:
    try:
        body = answer.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
