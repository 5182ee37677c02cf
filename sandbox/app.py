"""The sandbox application: providers, dispatch, fault injection, call log and concurrency stats."""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox import credentials
from sandbox.config import SandboxConfig
from sandbox.faults import Fault, Faults
from sandbox.http import Handler, Request, Response, Router, json_response
from sandbox.store import Store

# Build an error answer in the provider's own envelope: (status, provider code, message, retry_after).
ErrorFactory = Callable[[int, "str | int | None", "str | None", "float | None"], Response]
# Auth, rate limits and the like: an answer short-circuits the call.
Gate = Callable[[Request], "Response | None"]
# The identity of a billable call (e.g. Kling's external_task_id); defaults to a hash of the body.
Identify = Callable[[Request], "str | None"]

TRACE_HEADER = "x-pipeline-trace"  # "client/item", sent by callers that want their calls attributed
IDENTITY_HEADER = "X-Sandbox-Identity"  # a billable call's identity known only after handling
# JSON: what the call used (tokens, units, credits), so a test can price the call log.
USAGE_HEADER = "X-Sandbox-Usage"


@dataclass
class Provider:
    name: str
    prefix: str
    error: ErrorFactory
    gate: Gate | None = None
    not_found: Handler | None = None


@dataclass
class Gauge:
    calls: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self) -> None:
        with self.lock:
            self.calls += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1


class Sandbox:
    def __init__(self, state_dir: Path, config: SandboxConfig | None = None) -> None:
        self.state_dir = state_dir
        self.store = Store(state_dir)
        self.config = config or SandboxConfig.load(state_dir / "config.json")
        self.config.save(state_dir / "config.json")
        self.credentials = credentials.load_or_create(state_dir)
        self.faults = Faults()
        self.router = Router()
        self.providers: dict[str, Provider] = {}
        self.gauges: dict[str, Gauge] = {}
        self.media_dir = state_dir / "media"
        self.media_dir.mkdir(parents=True, exist_ok=True)
        self.base_url = ""  # set by the server once the port is known
        # Extra per-provider stats (e.g. Kling task concurrency), merged into /_sandbox/stats.
        self.stat_sources: dict[str, Callable[[], dict[str, object]]] = {}
        # Called with the settings as they were after POST /_sandbox/config changed them.
        self.config_hooks: list[Callable[[dict[str, Any]], None]] = []
        self._billable: dict[int, Identify | None] = {}
        self._journal_lock = threading.Lock()
        # Every request but the control API's, billable or not (polls, media downloads): what a
        # client spent between its requests (benchmarks/script_overhead.py). The last 10,000.
        self.requests: collections.deque[dict[str, object]] = collections.deque(maxlen=10_000)
        self._request_seq = itertools.count(1)

    # Registration --------------------------------------------------------------------------------
    def add_provider(self, provider: Provider) -> None:
        self.providers[provider.name] = provider
        self.gauges.setdefault(provider.name, Gauge())

    def route(
        self,
        method: str,
        template: str,
        handler: Handler,
        *,
        provider: str,
        billable: bool = False,
        identify: Identify | None = None,
        name: str = "",
    ) -> None:
        """Adds a route; `name` (default: the template) is the endpoint the call log shows."""
        self.router.add(method, template, handler, provider=provider, name=name)
        if billable:
            self._billable[id(self.router.routes[-1])] = identify

    def config_changed(self, before: dict[str, Any]) -> None:
        for hook in self.config_hooks:
            hook(before)

    # Dispatch ------------------------------------------------------------------------------------
    def dispatch(self, request: Request) -> Response:
        if request.path.startswith("/_sandbox/"):
            return self._dispatch(request)
        received = time.time()
        try:
            return self._dispatch(request)
        finally:
            seq = next(self._request_seq)
            self.requests.append(
                {"seq": seq, "method": request.method, "path": request.path, "received": received,
                 "answered": time.time()}
            )  # fmt: skip

    def _dispatch(self, request: Request) -> Response:
        route, params, path_exists = self.router.match(request.method, request.path)
        provider = self._provider_for(request.path, route.provider if route else None)
        if provider is None:
            if route is None:
                return json_response(404, {"error": f"no sandbox route for {request.method} {request.path}"})
            request.params = params
            return route.handler(request)

        gauge = self.gauges[provider.name]
        gauge.enter()
        try:
            return self._provider_call(provider, route, params, path_exists, request)
        finally:
            gauge.leave()

    def _provider_call(
        self, provider: Provider, route: object, params: dict[str, str], path_exists: bool, request: Request
    ) -> Response:
        credential = " ".join(request.header(h) for h in ("authorization", "x-goog-api-key", "xi-api-key"))
        received = time.time()
        latency_ms, fault = self.faults.take(provider.name, request.method, request.path, credential)
        if latency_ms:
            time.sleep(latency_ms / 1000)
        if fault is not None and fault.kind in ("error", "outage"):
            return self._fault_response(provider, fault)
        if provider.gate is not None:
            refused = provider.gate(request)
            if refused is not None:
                return refused
        if route is None:
            if provider.not_found is not None:
                return provider.not_found(request)
            status = 405 if path_exists else 404
            return provider.error(status, None, f"no route {request.method} {request.path}", None)

        from sandbox.http import Route  # local: typing only at runtime

        assert isinstance(route, Route)
        request.params = params
        key = id(route)
        seq = None
        if key in self._billable:
            identify = self._billable[key]
            identity = identify(request) if identify else hashlib.sha256(request.body).hexdigest()[:16]
            client, item = _trace(request)
            seq = self.store.call_started(provider.name, route.name, identity, item, client)
        response = route.handler(request)
        if provider.name == "notion" and (request.method != "GET" or "/pages/" in request.path):
            self._journal_write(request, credential, received, response.status)
        if seq is not None:
            # Handlers hand back what only they know through private headers, never sent out.
            self.store.call_finished(
                seq,
                response.status,
                response.headers.pop(IDENTITY_HEADER, None),
                response.headers.pop(USAGE_HEADER, None),
            )
        if fault is not None and fault.kind == "apply_then_fail":
            return self._fault_response(provider, fault)
        return response

    def _journal_write(self, request: Request, credential: str, received: float, status: int) -> None:
        """Appends a Notion write (or a page read) to notion-writes.jsonl in the state folder: who
        (daemon or operator, never the token), when it came and when it was applied (a late write
        shows as a gap), and the Status it set. What a chaos run reads to tell whose write won."""
        who = "operator" if self.credentials["notion_operator_token"] in credential else "daemon"
        entry: dict[str, object] = {
            "who": who,
            "call": f"{request.method} {request.path}",
            "received": round(received, 3),
            "applied": round(time.time(), 3),
            "status": status,
        }
        body = _json_object(request.body)
        page = (body.get("parent") or {}).get("page_id")  # a comment's page
        if page:
            entry["page"] = page
        status_prop = (body.get("properties") or {}).get("Status") or {}
        chosen = status_prop.get("select") or status_prop.get("status") or {}
        if chosen.get("name"):
            entry["Status"] = chosen["name"]
        with self._journal_lock, (self.state_dir / "notion-writes.jsonl").open("a") as out:
            out.write(json.dumps(entry) + "\n")

    def _provider_for(self, path: str, name: str | None) -> Provider | None:
        if name is not None:
            return self.providers.get(name)
        for provider in self.providers.values():
            if path == provider.prefix or path.startswith(provider.prefix + "/"):
                return provider
        return None

    @staticmethod
    def _fault_response(provider: Provider, fault: Fault) -> Response:
        if fault.drop:
            return Response(0, drop=True)
        return provider.error(fault.status, fault.code, fault.message, fault.retry_after)

    # Stats ---------------------------------------------------------------------------------------
    def stats(self) -> dict[str, dict[str, object]]:
        out: dict[str, dict[str, object]] = {}
        for name, gauge in self.gauges.items():
            out[name] = {
                "calls": gauge.calls,
                "in_flight": gauge.in_flight,
                "max_concurrency": gauge.max_in_flight,
            }
        for name, source in self.stat_sources.items():
            out.setdefault(name, {}).update(source())
        return out


def _trace(request: Request) -> tuple[str | None, str | None]:
    trace = request.header(TRACE_HEADER)
    if not trace:
        return None, None
    client, _, item = trace.partition("/")
    return client or None, item or None


def _json_object(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object; {} for an empty body or anything else (the handler answers
    a malformed one with its own error: the journal only notes the call)."""
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
