"""HTTP with httpx: one client per run, the trace header, and transport failures made transient."""

from __future__ import annotations

import ssl
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import httpx

from scripts._lib import env
from scripts._lib.errors import transient

TRACE_HEADER = "X-Pipeline-Trace"
USER_AGENT = "notion-video-daemon-scripts/0.1"


def make_client(
    base_url: str,
    headers: dict[str, str] | None = None,
    timeout: float = 120.0,
    auth: httpx.Auth | None = None,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    merged = {"User-Agent": USER_AGENT, **(headers or {})}
    trace = env.trace()
    if trace:
        merged[TRACE_HEADER] = trace
    with _trio_hidden():
        # Connecting should be quick; generation calls may legitimately take a minute or more.
        return httpx.Client(
            base_url=base_url,
            headers=merged,
            timeout=httpx.Timeout(timeout, connect=15.0),
            auth=auth,
            transport=transport,
            follow_redirects=True,
            verify=_tls(),
        )


@cache
def _tls() -> ssl.SSLContext:
    """One TLS context per run, shared by its clients: loading the CA bundle is the dearest part
    of making a client (about 30 ms), and a clip's run makes two (Kling's API, then the CDN)."""
    return httpx.create_ssl_context()


def preload() -> None:
    """What a run's first client imports (httpcore, trio kept out as below) and its TLS context (the
    CA bundle loaded), for the process that forks the runs (scripts/_lib/zygote.py): each run then
    finds them made. A forked run's TLS context is its own copy; OpenSSL reseeds its random numbers
    in a forked child."""
    with _trio_hidden():
        import httpcore  # noqa: F401
    _tls()


@contextmanager
def _trio_hidden() -> Iterator[None]:
    """The first client imports httpcore, which looks for trio (to run under trio's event loop).
    The scripts are synchronous and never do; where trio is installed (the dev tools bring it) the
    look costs about 0.1 s of every run's start, so it is kept from finding trio while it loads.
    Nothing changes once httpcore is loaded, or where trio was already imported."""
    if "httpcore" in sys.modules or "trio" in sys.modules:
        yield
        return
    sys.modules["trio"] = None  # type: ignore[assignment]  # an import of it fails at once
    try:
        yield
    finally:
        del sys.modules["trio"]


def send(client: httpx.Client, provider: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request; a timeout or a broken connection is transient (the daemon retries later)."""
    try:
        return client.request(method, url, **kwargs)
    except httpx.TimeoutException as exc:
        raise transient(
            f"{provider} did not answer in time ({type(exc).__name__}); it is usually busy, retry later.",
            "timeout",
        ) from exc
    except httpx.TransportError as exc:
        raise transient(
            f"Could not reach {provider} ({type(exc).__name__}: {exc}); check the network or the base URL, "
            "then retry.",
            "connection",
        ) from exc


def json_body(response: httpx.Response) -> dict[str, Any]:
    """The body as a JSON object, or {} when it is not one (error pages from proxies, for example)."""
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
