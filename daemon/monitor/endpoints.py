"""The monitoring routes on the listener: /healthz, /readyz and /metrics.

/metrics (cost per channel, the backlog) and /readyz are for the operator's tools; with
METRICS_TOKEN set they answer only `Authorization: Bearer <METRICS_TOKEN>`, else 401. /healthz
stays open: a platform's health check sends no header, and it says no more than alive or not.
"""

from __future__ import annotations

import hmac

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from daemon.monitor.figures import DatabaseFigures
from daemon.monitor.health import Health
from daemon.monitor.listener import Handler, Listener
from daemon.monitor.metrics import Metrics


class Monitoring:
    def __init__(
        self, health: Health, metrics: Metrics, figures: DatabaseFigures, *, token: str | None = None
    ) -> None:
        self.health = health
        self.metrics = metrics
        self.figures = figures
        self.token = token or None  # METRICS_TOKEN

    def mount(self, listener: Listener) -> None:
        listener.add_get("/healthz", self.health.healthz)
        listener.add_get("/readyz", self._guarded(self.health.readyz))
        listener.add_get("/metrics", self._guarded(self.metrics_page))
        listener.app.on_cleanup.append(self._close)

    def _guarded(self, handler: Handler) -> Handler:
        """The handler behind METRICS_TOKEN, when one is set."""
        token = self.token
        if token is None:
            return handler
        expected = f"Bearer {token}".encode()

        async def guarded(request: web.Request) -> web.StreamResponse:
            given = request.headers.get("Authorization", "").strip().encode("utf-8", "replace")
            if not hmac.compare_digest(given, expected):
                return web.json_response(
                    {"error": "this page needs `Authorization: Bearer <METRICS_TOKEN>`"},
                    status=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            return await handler(request)

        return guarded

    async def _close(self, app: web.Application) -> None:
        """The listener is closing: checks still waiting on a hung database are stopped."""
        self.health.database_probe.close()
        self.figures.probe.close()

    async def metrics_page(self, request: web.Request) -> web.Response:
        """The database's figures read now (within their time limit), then every family as text."""
        await self.figures.refresh()
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})
