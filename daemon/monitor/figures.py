"""The database's figures for /metrics, read at scrape time within a time limit.

prometheus-client collects synchronously and the database is async, so a scrape first `refresh`es
(one connection, a handful of grouped counts, waited for at most `timeout_s`: daemon/monitor/probe.py),
then the registry's collect
yields what was read. A database that does not answer in time gives `nvd_database_up 0` and no
database figures in that scrape (stale numbers would look current), never a hung scrape.

These are the whole database's figures, the same from every daemon on it: with several daemons,
aggregate them with max(), not sum().
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from daemon.budget import Budget
from daemon.db.models import Comment, Item, Ledger, Outbox, Task, YouTubeQuota
from daemon.logs import get_logger
from daemon.monitor.probe import Probe
from daemon.queries import SPENT
from daemon.youtube.gate import WAITS
from daemon.youtube.quota import quota_day
from services.states import CommentState, ItemState

MICROS = 1_000_000


@dataclass
class Today:
    """What the figures need from the running configuration: the budget day and the budgets."""

    day_of: Callable[[datetime], str]
    budgets: Callable[[], dict[str, Budget]] = dict
    quota_offset: timedelta = field(default_factory=timedelta)  # YOUTUBE_CLOCK_OFFSET_S


class DatabaseFigures(Collector):
    def __init__(
        self, engine: AsyncEngine, today: Today, now: Callable[[], datetime], *, timeout_s: float = 2.0
    ) -> None:
        self.engine = engine
        self.today = today
        self.now = now
        self.probe = Probe(self._read, timeout_s)
        self.latest: list[Metric] = []
        self.up = 0.0
        self.took_s = 0.0
        self.failures = 0

    async def refresh(self) -> None:
        started = time.monotonic()
        try:
            self.latest = await self.probe()
            self.up = 1.0
            self.failures = 0
        except Exception as exc:  # a database away or slow: this scrape says so and goes on
            self.latest, self.up = [], 0.0
            self.failures += 1
            if self.failures == 1 or self.failures % 20 == 0:
                why = "no answer in time" if isinstance(exc, TimeoutError) else type(exc).__name__
                get_logger().warning("metrics_database_unread", reason=why, failures=self.failures)
        self.took_s = time.monotonic() - started

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "nvd_database_up", "1 when the database answered this scrape's queries in time.", value=self.up
        )
        yield GaugeMetricFamily(
            "nvd_database_scrape_seconds", "How long reading the database's figures took.", value=self.took_s
        )
        yield from self.latest

    async def _read(self) -> list[Metric]:
        now = self.now()
        async with self.engine.connect() as conn:
            families = [
                *await _items(conn),
                *await _providers(conn, now),
                *await _outbox(conn, now),
                *await self._money(conn, now),
                *await self._uploads(conn, now),
            ]
            await conn.rollback()
        return families

    async def _money(self, conn: AsyncConnection, now: datetime) -> list[Metric]:
        day = self.today.day_of(now)
        rows = await conn.execute(
            select(Ledger.channel_id, Ledger.entry, func.sum(Ledger.amount_micros))
            .where(Ledger.day == day, text(SPENT))
            .group_by(Ledger.channel_id, Ledger.entry)
        )
        spent = GaugeMetricFamily(
            "nvd_channel_cost_today_usd",
            "Money of the channel's budget day (BUDGET_TIMEZONE): spent (actual costs) and reserved "
            "(estimates of running steps), in US dollars.",
            labels=["channel", "entry"],
        )
        for channel, entry, micros in rows:
            name = "spent" if entry == "actual" else "reserved"
            spent.add_metric([channel, name], int(micros or 0) / MICROS)
        budget = GaugeMetricFamily(
            "nvd_channel_budget_per_day_usd",
            "The channel's daily budget (its file's budgets.per_day_usd).",
            labels=["channel"],
        )
        for channel, limits in sorted(self.today.budgets().items()):
            budget.add_metric([channel], limits.per_day_micros / MICROS)
        return [spent, budget]

    async def _uploads(self, conn: AsyncConnection, now: datetime) -> list[Metric]:
        waiting = await conn.scalar(
            select(func.count()).where(
                Item.provider == "youtube",
                Item.state == ItemState.READY,
                Item.next_attempt_at > now,
                Item.error.like(f"{WAITS}%"),
            )
        )
        uploads = GaugeMetricFamily(
            "nvd_uploads_waiting",
            "Uploads waiting for YouTube's quota or a sign-in.",
            value=int(waiting or 0),
        )
        day = quota_day(now + self.today.quota_offset)
        used = GaugeMetricFamily(
            "nvd_youtube_quota_used",
            "YouTube quota used today (Pacific day) per Google Cloud project: uploads and units.",
            labels=["project", "bucket"],
        )
        for project, count, units in await conn.execute(
            select(YouTubeQuota.project, YouTubeQuota.uploads, YouTubeQuota.units).where(
                YouTubeQuota.day == day
            )
        ):
            used.add_metric([project, "uploads"], count)
            used.add_metric([project, "units"], units)
        return [uploads, used]


async def _items(conn: AsyncConnection) -> list[Metric]:
    items = GaugeMetricFamily(
        "nvd_items", "Items (steps of a video) by kind and state.", labels=["kind", "state"]
    )
    for kind, state, count in await conn.execute(
        select(Item.kind, Item.state, func.count()).group_by(Item.kind, Item.state)
    ):
        items.add_metric([kind, state], count)
    tasks = GaugeMetricFamily(
        "nvd_tasks", "Videos by state (budget: waiting for its budget).", labels=["state"]
    )
    for state, count in await conn.execute(select(Task.state, func.count()).group_by(Task.state)):
        tasks.add_metric([state], count)
    return [items, tasks]


async def _providers(conn: AsyncConnection, now: datetime) -> list[Metric]:
    running = GaugeMetricFamily(
        "nvd_provider_running", "Items running per provider, all daemons together.", labels=["provider"]
    )
    for provider, count in await conn.execute(
        select(Item.provider, func.count()).where(Item.state == ItemState.RUNNING).group_by(Item.provider)
    ):
        running.add_metric([provider], count)
    backlog = GaugeMetricFamily(
        "nvd_ready_backlog", "Items ready and due now, waiting for a slot, per provider.", labels=["provider"]
    )
    for provider, count in await conn.execute(
        select(Item.provider, func.count())
        .where(Item.state == ItemState.READY, Item.next_attempt_at <= now)
        .group_by(Item.provider)
    ):
        backlog.add_metric([provider], count)
    return [running, backlog]


async def _outbox(conn: AsyncConnection, now: datetime) -> list[Metric]:
    pending = GaugeMetricFamily(
        "nvd_notion_outbox_pending",
        "Notion writes waiting to be sent: property values and comments.",
        labels=["kind"],
    )
    oldest = GaugeMetricFamily(
        "nvd_notion_outbox_oldest_seconds",
        "Age of the oldest Notion write waiting (0 when none).",
        labels=["kind"],
    )
    for kind, query in (
        (
            "property",
            select(func.count(), func.min(Outbox.updated_at)).where(Outbox.version > Outbox.sent_version),
        ),
        (
            "comment",
            select(func.count(), func.min(Comment.created_at)).where(Comment.state == CommentState.PENDING),
        ),
    ):
        count, since = (await conn.execute(query)).one()
        pending.add_metric([kind], int(count or 0))
        oldest.add_metric([kind], max(0.0, (now - since).total_seconds()) if since is not None else 0.0)
    return [pending, oldest]
