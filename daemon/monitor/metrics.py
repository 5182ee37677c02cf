"""This daemon's Prometheus instruments: what happens in this process, counted where it happens.

Each App has its own `Metrics` and so its own CollectorRegistry, never prometheus-client's global
one: several Apps in one process (tests, benchmarks) count apart and register the same names
without a clash. Figures of the whole database (items by state, backlog, outbox, cost today) are
read at scrape time by `daemon.monitor.figures`; the counters here are this daemon's since its start
(with several daemons on one database, sum them; the database figures are the same from each).
Labels take bounded values only: kinds, states, providers, channels, HTTP methods, fixed classes;
never a page id, task id or message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from daemon.notion.traffic import NotionTraffic

# A script takes from a second (a local composite) to an hour (a long clip or upload).
DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)

# An attempt's outcome as the worker saw it (the `outcome` label), and which of them are a
# provider's error of which class (the `class` label of nvd_provider_errors_total).
SUCCEEDED = "succeeded"
TRANSIENT = "transient"  # exit 75: try again later
RATE_LIMITED = "rate_limited"  # exit 75 with the provider's own retry hint
PERMANENT = "permanent"  # exit 1: the item fails
USAGE = "usage"  # exit 2: the daemon called the script wrongly
TIMEOUT = "timeout"  # killed at its kind's time limit
CRASH = "crash"  # a signal, an exit code outside the contract, or success without its output
LOST = "lost"  # killed: its lease was taken away
RELEASED = "released"  # handed back at shutdown
ERROR_CLASSES = frozenset({TRANSIENT, RATE_LIMITED, PERMANENT, USAGE, TIMEOUT, CRASH})

# Why a lease was lost (nvd_leases_lost_total's `reason`).
LEASE_TAKEN = "taken"  # a heartbeat found it gone: expired, cancelled or taken over
LEASE_UPLOAD_UNRENEWED = "upload_unrenewed"  # an upload stopped before its lease could run out
LEASE_FENCED = "fenced"  # a completion found another holder: its output was discarded


class Metrics:
    """The instruments; `render()` is the text /metrics answers with."""

    def __init__(self) -> None:
        # No `_created` series beside each counter and histogram: they double the series for a
        # timestamp Prometheus does not need (the flag is prometheus-client's, process-wide).
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        r = self.registry
        self.script_seconds = Histogram(
            "nvd_script_duration_seconds",
            "How long a script ran, by item kind and outcome.",
            ["kind", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.provider_errors = Counter(
            "nvd_provider_errors",
            "Failed attempts by provider and class: transient, rate_limited, permanent, usage, timeout, "
            "crash.",
            ["provider", "class"],
            registry=r,
        )
        self.leases_lost = Counter(
            "nvd_leases_lost",
            "Leases this daemon lost while its script ran (taken, upload_unrenewed, fenced).",
            ["reason"],
            registry=r,
        )
        self.cost = Counter(
            "nvd_cost_usd",
            "Actual cost booked by this daemon's completed items, in US dollars.",
            ["channel", "provider"],
            registry=r,
        )
        self.budget_waits = Counter(
            "nvd_budget_waits", "Times a video was made to wait for its budget.", registry=r
        )
        self.upload_waits = Counter(
            "nvd_upload_waits",
            "Times an upload was handed back to wait (quota, sign_in, client, key, channel, no_gate).",
            ["reason"],
            registry=r,
        )
        self.provider_limit = Gauge(
            "nvd_provider_limit",
            "Scripts a provider may run at once, all daemons together.",
            ["provider"],
            registry=r,
        )
        self.heartbeat_age = Gauge(
            "nvd_worker_heartbeat_age_seconds",
            "Seconds since the worker's claim loop last turned (stuck past WORKER_STALL_S).",
            registry=r,
        )
        self.heartbeat_age.set_function(lambda: 0.0)

    def register(self, collector: Collector) -> None:
        """A collector of figures read at scrape time (the database's, Notion's traffic)."""
        self.registry.register(collector)

    def set_limits(self, limits: Mapping[str, int]) -> None:
        for provider, limit in limits.items():
            self.provider_limit.labels(provider).set(limit)

    def watch_heartbeat(self, age: Callable[[], float]) -> None:
        self.heartbeat_age.set_function(age)

    def script_done(self, kind: str, provider: str, outcome: str, seconds: float) -> None:
        self.script_seconds.labels(kind, outcome).observe(seconds)
        if outcome in ERROR_CLASSES:
            self.provider_errors.labels(provider, outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class NotionRequests(Collector):
    """nvd_notion_requests_total from the gateway's own counts (daemon/notion/traffic.py), so the
    gateway stays free of Prometheus and the counts are never read twice into two registries."""

    def __init__(self, traffic: NotionTraffic) -> None:
        self.traffic = traffic

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "nvd_notion_requests",
            "Notion HTTP requests (each retry counts) by method and result; rate_limited is a 429.",
            labels=["method", "result"],
        )
        for (method, result), count in sorted(self.traffic.counts.items()):
            family.add_metric([method, result], count)
        yield family
