"""The monitoring routes on the listener: /healthz, /readyz and /metrics."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from daemon.monitor.figures import DatabaseFigures
from daemon.monitor.health import Health
from daemon.monitor.listener import Listener
from daemon.monitor.metrics import Metrics


class Monitoring:
    def __init__(self, health: Health, metrics: Metrics, figures: DatabaseFigures) -> None:
        self.health = health
        self.metrics = metrics
        self.figures = figures

    def mount(self, listener: Listener) -> None:
        listener.add_get("/healthz", self.health.healthz)
        listener.add_get("/readyz", self.health.readyz)
        listener.add_get("/metrics", self.metrics_page)
        listener.app.on_cleanup.append(self._close)

    async def _close(self, app: web.Application) -> None:
        """The listener is closing: checks still waiting on a hung database are stopped."""
        self.health.database_probe.close()
        self.figures.probe.close()

    async def metrics_page(self, request: web.Request) -> web.Response:
        """The database's figures read now (within their time limit), then every family as text."""
        await self.figures.refresh()
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})
