"""The Notion gateway: notion-client with its own retries off, one token bucket, one retry policy.

Every call takes a token. 429 waits for Retry-After (and empties the bucket for everyone); 5xx,
timeouts and dropped connections are retried for calls that are safe to repeat. A write that is
not safe to repeat (append blocks, create a comment) raises AmbiguousWrite instead, so its caller
can look before writing again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import httpx
from notion_client import AsyncClient
from notion_client.client import ClientOptions
from notion_client.errors import APIResponseError, HTTPResponseError, RequestTimeoutError

from daemon.errors import DaemonError
from daemon.notion.bucket import TokenBucket
from daemon.notion.traffic import CONNECTION, OK, TIMEOUT, NotionTraffic, result_of_status
from daemon.retry import backoff_seconds

T = TypeVar("T")
JSON = dict[str, Any]


class NotionError(DaemonError):
    """A Notion call failed; `status` and `code` as Notion gave them."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class NotionUnavailable(NotionError):
    """Notion kept failing (5xx, 429, timeouts) past the retry budget: try again later. `reason` is
    the last failure (a status and code, or a connection error)."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class NotionNotFound(NotionError):
    """404: the page was deleted, trashed or is no longer shared with the integration."""


class NotionRejected(NotionError):
    """400/401/403: the request or the setup is wrong; repeating it will not help."""


class AmbiguousWrite(NotionError):
    """A write that is not safe to repeat may or may not have happened."""


class NotionGateway(Protocol):
    async def call(
        self,
        method: str,
        path: str,
        *,
        body: JSON | None = None,
        query: JSON | None = None,
        form: JSON | None = None,
        idempotent: bool = True,
        paid: bool = False,
        spare: bool = False,
    ) -> JSON: ...

    async def take(self) -> None: ...


class NotionApi:
    def __init__(
        self,
        token: str,
        base_url: str,
        *,
        rate: float = 3.0,
        burst: int = 3,
        attempts: int = 6,
        timeout_s: float = 30.0,
        max_wait_s: float = 60.0,
    ) -> None:
        logger = logging.getLogger("daemon.notion.client")
        self.client = AsyncClient(
            options=ClientOptions(
                auth=token,
                base_url=base_url.rstrip("/"),
                retry=False,
                timeout_ms=int(timeout_s * 1000),
                logger=logger,
                log_level=logging.WARNING,
            )
        )
        self.token = token
        self.base_url = base_url
        self.bucket = TokenBucket(rate, burst)
        self.attempts = attempts
        self.max_wait_s = max_wait_s
        self.traffic = NotionTraffic()  # every exchange's result: /metrics and /readyz read it

    async def close(self) -> None:
        await self.client.aclose()

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: JSON | None = None,
        query: JSON | None = None,
        form: JSON | None = None,
        idempotent: bool = True,
        paid: bool = False,
        spare: bool = False,
    ) -> JSON:
        """One call, waiting for its token first unless `paid` (taken with `take` beforehand: a write
        that must follow a read without a wait between them). `form`: a multipart/form-data body
        (a file as (name, bytes, content type)) instead of JSON. `spare`: a call that can wait (a
        file upload) takes only tokens the others leave (TokenBucket.take)."""
        prepaid = paid

        async def once() -> JSON:
            nonlocal prepaid
            if not prepaid:
                await self.bucket.take(spare=spare)
            prepaid = False  # a retry waits for a token of its own
            result = await self.client.request(
                path=path, method=method, body=body, query=query, form_data=form
            )
            assert isinstance(result, dict)
            return result

        return await self._with_retries(once, idempotent, f"{method} {path}", method)

    async def take(self) -> None:
        """Takes a call's token now, for a later `call(..., paid=True)`."""
        await self.bucket.take()

    async def _with_retries(
        self, once: Callable[[], Awaitable[T]], idempotent: bool, what: str, method: str
    ) -> T:
        reason = ""
        for attempt in range(1, self.attempts + 1):
            try:
                answer = await once()
                self.traffic.record(method, OK)
                return answer
            except APIResponseError as exc:
                reason = f"{exc.status} {exc.code.value if hasattr(exc.code, 'value') else exc.code}"
                self.traffic.record(method, result_of_status(exc.status), reason)
                delay = self._delay_for(exc, attempt, idempotent, what)
            except (RequestTimeoutError, httpx.TransportError, HTTPResponseError) as exc:
                reason = type(exc).__name__
                status = getattr(exc, "status", None)
                self.traffic.record(method, _result_of_failure(exc, status), reason)
                if status is not None and status < 500:
                    raise NotionRejected(f"{what}: Notion answered {status}", status) from exc
                if not idempotent:
                    raise AmbiguousWrite(
                        f"{what}: no clear answer from Notion ({type(exc).__name__})", status
                    ) from exc
                delay = backoff_seconds(attempt, 0.5, self.max_wait_s)
            if attempt == self.attempts:
                break
            await asyncio.sleep(delay)
        raise NotionUnavailable(
            f"{what}: Notion did not answer after {self.attempts} attempts ({reason}); will retry later",
            reason,
        )

    def _delay_for(self, exc: APIResponseError, attempt: int, idempotent: bool, what: str) -> float:
        status, code = exc.status, str(exc.code.value if hasattr(exc.code, "value") else exc.code)
        if status == 429:
            wait = _retry_after(exc.headers) or backoff_seconds(attempt, 1.0, self.max_wait_s)
            self.bucket.pause(min(wait, self.max_wait_s))
            return min(wait, self.max_wait_s)
        if status == 409:
            return backoff_seconds(attempt, 0.3, 5.0)  # a conflict was not applied: repeat the write
        if status >= 500:
            if not idempotent:
                raise AmbiguousWrite(f"{what}: Notion answered {status} {code}", status, code) from exc
            return backoff_seconds(attempt, 0.5, self.max_wait_s)
        # Notion's own words go into logs and the outbox's last error: never the token they may quote.
        said = str(exc).replace(self.token, "[redacted]") if self.token else str(exc)
        if status == 404 or (status == 400 and "archived" in said):
            # 404: deleted or unshared; 400 "Can't edit block that is archived": in the trash.
            raise NotionNotFound(f"{what}: {said}", status, code) from exc
        raise NotionRejected(f"{what}: {status} {code}: {said}", status, code) from exc


def _result_of_failure(exc: Exception, status: int | None) -> str:
    """A failed exchange with no API error body: an HTTP status, a timeout or a broken connection."""
    if status is not None:
        return result_of_status(status)
    if isinstance(exc, RequestTimeoutError | httpx.TimeoutException):
        return TIMEOUT
    return CONNECTION


def _retry_after(headers: Any) -> float | None:
    try:
        value = headers.get("retry-after") if headers is not None else None
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
