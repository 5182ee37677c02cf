"""The sandbox's own control API under /_sandbox: call log, request log, stats, faults, settings."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from sandbox.faults import FaultSpecError, parse_fault
from sandbox.http import Request, Response, json_response

if TYPE_CHECKING:
    from sandbox.app import Sandbox


def register(app: Sandbox) -> None:
    def calls(request: Request) -> Response:
        since = int(request.arg("since", "0") or 0)
        return json_response(200, {"calls": app.store.calls(request.arg("provider"), since)})

    def requests(request: Request) -> Response:
        since = int(request.arg("since", "0") or 0)
        return json_response(200, {"requests": [r for r in list(app.requests) if int(str(r["seq"])) > since]})

    def stats(request: Request) -> Response:
        return json_response(200, app.stats())

    def add_faults(request: Request) -> Response:
        try:
            body = request.json()
            specs = body if isinstance(body, list) else [body]
            added = [app.faults.add(parse_fault(s, time.time(), app.config.latency_scale)) for s in specs]
        except (ValueError, FaultSpecError) as exc:
            return json_response(400, {"error": str(exc)})
        return json_response(200, {"faults": [f.describe() for f in added]})

    def list_faults(request: Request) -> Response:
        return json_response(200, {"faults": app.faults.list()})

    def clear_faults(request: Request) -> Response:
        app.faults.clear(request.arg("provider"))
        return json_response(200, {"faults": app.faults.list()})

    def get_config(request: Request) -> Response:
        return json_response(200, app.config.to_dict())

    def set_config(request: Request) -> Response:
        before = app.config.to_dict()
        try:
            app.config.update(request.json())
        except (ValueError, TypeError) as exc:
            return json_response(400, {"error": str(exc)})
        app.config.save(app.state_dir / "config.json")
        app.config_changed(before)
        return json_response(200, app.config.to_dict())

    def health(request: Request) -> Response:
        return json_response(200, {"ok": True})

    app.route("GET", "/_sandbox/calls", calls, provider="_sandbox")
    app.route("GET", "/_sandbox/requests", requests, provider="_sandbox")
    app.route("GET", "/_sandbox/stats", stats, provider="_sandbox")
    app.route("POST", "/_sandbox/faults", add_faults, provider="_sandbox")
    app.route("GET", "/_sandbox/faults", list_faults, provider="_sandbox")
    app.route("DELETE", "/_sandbox/faults", clear_faults, provider="_sandbox")
    app.route("GET", "/_sandbox/config", get_config, provider="_sandbox")
    app.route("POST", "/_sandbox/config", set_config, provider="_sandbox")
    app.route("GET", "/_sandbox/health", health, provider="_sandbox")
