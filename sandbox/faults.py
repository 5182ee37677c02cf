"""Fault injection: per provider, errors for the next N calls or a period, latency, outages, and
"apply then fail" (the write happens, the answer is an error or a dropped connection)."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any


class FaultSpecError(ValueError):
    pass


_KINDS = ("error", "latency", "outage", "apply_then_fail")


@dataclass
class Fault:
    provider: str
    kind: str
    status: int = 500
    code: str | int | None = None
    message: str | None = None
    retry_after: float | None = None
    latency_ms: int = 0
    drop: bool = False
    endpoint: re.Pattern[str] | None = None  # searched in "METHOD /path"
    # Only calls made with this credential (e.g. the integration's token, not the operator's).
    token: str | None = None
    remaining: int | None = None  # None: unlimited within the period
    until: float | None = None  # epoch seconds; None: until used up
    id: int = 0
    hits: int = field(default=0)

    def active(self, now: float) -> bool:
        if self.until is not None and now >= self.until:
            return False
        return self.remaining is None or self.remaining > 0

    def matches(self, provider: str, method: str, path: str, credential: str = "") -> bool:
        if provider != self.provider:
            return False
        if self.token is not None and self.token not in credential:
            return False
        return self.endpoint is None or self.endpoint.search(f"{method} {path}") is not None

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "provider": self.provider,
            "kind": self.kind,
            "status": self.status,
            "code": self.code,
            "latency_ms": self.latency_ms,
            "drop": self.drop,
            "endpoint": self.endpoint.pattern if self.endpoint else None,
            "remaining": self.remaining,
            "until": self.until,
            "hits": self.hits,
        }


def parse_fault(spec: dict[str, Any], now: float, latency_scale: float) -> Fault:
    """Builds a fault from a POST /_sandbox/faults body; `seconds` is scaled like provider latency."""
    provider = spec.get("provider")
    if not isinstance(provider, str) or not provider:
        raise FaultSpecError(
            "'provider' is required (notion, gemini, kling, elevenlabs, youtube, google_oauth)"
        )
    kind = spec.get("kind", "error")
    if kind not in _KINDS:
        raise FaultSpecError(f"'kind' must be one of {', '.join(_KINDS)}")
    count = spec.get("count")
    seconds = spec.get("seconds")
    if count is None and seconds is None:
        count = 1
    if count is not None and (not isinstance(count, int) or count < 1):
        raise FaultSpecError("'count' must be a positive integer")
    if seconds is not None and (not isinstance(seconds, (int, float)) or seconds <= 0):
        raise FaultSpecError("'seconds' must be a positive number")
    scale = latency_scale if spec.get("scaled", False) else 1.0
    endpoint = spec.get("endpoint")
    return Fault(
        provider=provider,
        kind=kind,
        status=int(spec.get("status", 503 if kind == "outage" else 500)),
        code=spec.get("code"),
        message=spec.get("message"),
        retry_after=spec.get("retry_after"),
        latency_ms=int(spec.get("latency_ms", 0)),
        drop=bool(spec.get("drop", False)),
        endpoint=re.compile(endpoint) if endpoint else None,
        token=spec.get("token"),
        remaining=count,
        until=None if seconds is None else now + float(seconds) * scale,
    )


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._next_id = 1

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            fault.id = self._next_id
            self._next_id += 1
            self._faults.append(fault)
            return fault

    def clear(self, provider: str | None = None) -> None:
        with self._lock:
            self._faults = [f for f in self._faults if provider is not None and f.provider != provider]

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            now = time.time()
            return [f.describe() for f in self._faults if f.active(now)]

    def take(self, provider: str, method: str, path: str, credential: str = "") -> tuple[int, Fault | None]:
        """The latency to add (ms) and the error fault to apply to this call, consuming counts."""
        with self._lock:
            now = time.time()
            self._faults = [f for f in self._faults if f.active(now)]
            latency = 0
            chosen: Fault | None = None
            for fault in self._faults:
                if not fault.matches(provider, method, path, credential):
                    continue
                if fault.kind == "latency":
                    latency += fault.latency_ms
                    self._consume(fault)
                elif chosen is None:
                    chosen = fault
                    self._consume(fault)
                latency += fault.latency_ms if fault.kind != "latency" else 0
            return latency, chosen

    @staticmethod
    def _consume(fault: Fault) -> None:
        fault.hits += 1
        if fault.remaining is not None:
            fault.remaining -= 1
