"""HTTP with httpx: one client per run, the trace header, and transport failures made transient."""

from __future__ import annotations

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
    # Connecting should be quick; generation calls may legitimately take a minute or more.
    return httpx.Client(
        base_url=base_url,
        headers=merged,
        timeout=httpx.Timeout(timeout, connect=15.0),
        auth=auth,
        transport=transport,
        follow_redirects=True,
    )


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
