"""A small HTTP layer: requests, responses, a router and a threaded server."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        """The body as JSON; raises ValueError on a body that is not JSON."""
        if not self.body.strip():
            return {}
        return json.loads(self.body)


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # "drop": close the connection without answering (a lost response).
    drop: bool = False


def json_response(status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
    merged = {"Content-Type": "application/json; charset=utf-8"}
    merged.update(headers or {})
    return Response(status, body, merged)


Handler = Callable[[Request], Response]


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    provider: str
    name: str


class Router:
    """Routes by method and a path template such as `/v1/pages/{page_id}`."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, template: str, handler: Handler, *, provider: str, name: str = "") -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
        self.routes.append(Route(method, re.compile(f"^{regex}$"), handler, provider, name or template))

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """The route, its path parameters, and whether the path exists under another method."""
        path_exists = False
        for route in self.routes:
            m = route.pattern.match(path)
            if m is None:
                continue
            path_exists = True
            if route.method == method:
                return route, m.groupdict(), True
        return None, {}, path_exists


Dispatch = Callable[[Request], Response]


def make_server(host: str, port: int, dispatch: Dispatch) -> ThreadingHTTPServer:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "sandbox/1"
        # Headers and body go out in two writes; with Nagle on, a keep-alive client waits ~40 ms
        # (delayed ACK) for every response.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # quiet by default
            return

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = Request(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            response = dispatch(request)
            if response.drop:
                self.close_connection = True
                return
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = do_HEAD = _handle

    class _Server(ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            # A client killed mid-request (the fault tests SIGKILL daemons) is not the server's error.
            if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
                return
            super().handle_error(request, client_address)

    server = _Server((host, port), _Handler)
    server.daemon_threads = True
    return server
