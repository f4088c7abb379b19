"""Prometheus metrics at `GET /metrics`, per account and endpoint.

Event metrics (invocations, durations, cold starts, dollars) are updated when a job becomes
final; state metrics (queue, workers, running jobs) are read from the scheduler at scrape time.
Every series carries an `account` label, so a non-admin key is shown only its own series.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram as PromHistogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from coldbrew.store.models import Job

if TYPE_CHECKING:
    from coldbrew.control.scheduler import Scheduler

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
#: coldStartDetail keys → stage label of the cold-start histogram.
_STAGES = {
    "processStartMs": "process_start",
    "importMs": "import",
    "forkMs": "fork",
    "setupMs": "setup",
    "totalMs": "total",
}


class _StateCollector(Collector):
    """Gauges read from the scheduler when Prometheus scrapes."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def collect(self) -> Iterator[Metric]:
        workers = GaugeMetricFamily(
            "coldbrew_workers", "Workers by state", labels=["account", "endpoint", "state"]
        )
        counts: Counter[tuple[str, str, str]] = Counter(
            (w.version.account, w.version.endpoint, w.state.value.lower())
            for w in self.scheduler.workers.values()
        )
        for (account, endpoint, state), n in sorted(counts.items()):
            workers.add_metric([account, endpoint, state], n)
        yield workers
        queue = GaugeMetricFamily(
            "coldbrew_queue_length", "Jobs waiting IN_QUEUE", labels=["account", "endpoint"]
        )
        for (account, endpoint), n in sorted(self.scheduler.queue_lengths().items()):
            queue.add_metric([account, endpoint], n)
        yield queue
        running = GaugeMetricFamily(
            "coldbrew_concurrent_executions", "Jobs running now", labels=["account", "endpoint"]
        )
        per_endpoint: Counter[tuple[str, str]] = Counter()
        for worker in self.scheduler.workers.values():
            per_endpoint[(worker.version.account, worker.version.endpoint)] += len(worker.jobs)
        for (account, endpoint), n in sorted(per_endpoint.items()):
            running.add_metric([account, endpoint], n)
        yield running
        cap = GaugeMetricFamily(
            "coldbrew_account_concurrency_cap",
            "Running jobs allowed per account",
            labels=["account"],
        )
        for account in sorted({a for a, _ in per_endpoint} | set(self.scheduler.known_accounts())):
            cap.add_metric([account], self.scheduler.settings.account_concurrency_cap)
        yield cap


class Metrics:
    """The platform's metrics registry (one per platform; no global state)."""

    def __init__(
        self, scheduler: Scheduler, version_number: Callable[[int], int | None] | None = None
    ) -> None:
        self.registry = CollectorRegistry()
        self._version_number = version_number or (lambda _vid: None)
        labels = ["account", "endpoint"]
        # per version, so a canary's errors and latency stand apart from the current version's
        self.version_invocations = PromCounter(
            "coldbrew_version_invocations",
            "Jobs that reached a final status, per version number",
            [*labels, "version", "status"],
            registry=self.registry,
        )
        self.version_duration = PromHistogram(
            "coldbrew_version_request_duration_seconds",
            "Accepted to final, per version number",
            [*labels, "version"],
            buckets=_SECONDS,
            registry=self.registry,
        )
        self.invocations = PromCounter(
            "coldbrew_invocations",
            "Jobs that reached a final status",
            [*labels, "status"],
            registry=self.registry,
        )
        self.request_duration = PromHistogram(
            "coldbrew_request_duration_seconds",
            "Accepted to final",
            labels,
            buckets=_SECONDS,
            registry=self.registry,
        )
        self.queue_delay = PromHistogram(
            "coldbrew_queue_delay_seconds",
            "Accepted to started on a worker",
            labels,
            buckets=_SECONDS,
            registry=self.registry,
        )
        self.execution = PromHistogram(
            "coldbrew_execution_seconds",
            "Started to final",
            labels,
            buckets=_SECONDS,
            registry=self.registry,
        )
        self.cold_starts = PromCounter(
            "coldbrew_cold_starts",
            "Jobs that waited for a new worker",
            labels,
            registry=self.registry,
        )
        self.cold_start_stage = PromHistogram(
            "coldbrew_cold_start_stage_seconds",
            "Cold-start time by stage (process_start, import, fork, setup, first_predict, total)",
            [*labels, "stage"],
            buckets=_SECONDS,
            registry=self.registry,
        )
        self.cache_hits = PromCounter(
            "coldbrew_cache_hits",
            "Jobs answered from the result cache",
            labels,
            registry=self.registry,
        )
        self.spent = PromCounter(
            "coldbrew_spent_usd",
            "Dollars charged to jobs (execution time at the hardware rate)",
            labels,
            registry=self.registry,
        )
        self.registry.register(_StateCollector(scheduler))
        #: each final job's metric children, by (labels, version number, status): `labels()` takes
        #: a lock and builds a key per call, six times a job on the warm path otherwise
        self._children: dict[tuple[tuple[str, str], int | None, Any], tuple[Any, ...]] = {}

    def _children_for(
        self, labels: tuple[str, str], number: int | None, status: str
    ) -> tuple[Any, ...]:
        version = None if number is None else str(number)
        return (
            self.invocations.labels(*labels, status),
            None if version is None else self.version_invocations.labels(*labels, version, status),
            None if version is None else self.version_duration.labels(*labels, version),
            self.request_duration.labels(*labels),
            self.queue_delay.labels(*labels),
            self.execution.labels(*labels),
        )

    def observe(self, job: Job) -> None:
        """Record a job that just became final."""
        labels = (job.account, job.endpoint)
        number = self._version_number(job.version_id)
        children = self._children.get((labels, number, job.status))
        if children is None:
            children = self._children[(labels, number, job.status)] = self._children_for(
                labels, number, job.status.value
            )
        invocations, version_invocations, version_duration, duration, delay, execution = children
        invocations.inc()
        if version_invocations is not None:
            version_invocations.inc()
        if job.finished_at is not None:
            duration.observe(job.finished_at - job.created_at)
            if version_duration is not None:
                version_duration.observe(job.finished_at - job.created_at)
        if job.started_at is not None:
            delay.observe(job.started_at - job.created_at)
            if job.finished_at is not None:
                execution.observe(job.finished_at - job.started_at)
        if job.cold_start:
            self._observe_cold_start(job, labels)
        if job.cost_usd:
            self.spent.labels(*labels).inc(job.cost_usd)
        if job.cached:
            self.cache_hits.labels(*labels).inc()

    def _observe_cold_start(self, job: Job, labels: tuple[str, str]) -> None:
        self.cold_starts.labels(*labels).inc()
        for key, stage in _STAGES.items():
            value = (job.cold_start_detail or {}).get(key)
            if isinstance(value, int | float):
                self.cold_start_stage.labels(*labels, stage).observe(value / 1000)
        if job.started_at is not None and job.finished_at is not None:
            first = job.finished_at - job.started_at
            self.cold_start_stage.labels(*labels, "first_predict").observe(first)

    def render(self, account: str | None) -> bytes:
        """The exposition text; with `account`, only that account's series."""
        text = generate_latest(self.registry)
        if account is None:
            return text
        keep = f'account="{account}"'.encode()
        lines = [
            line
            for line in text.split(b"\n")
            if line.startswith(b"#") or b"account=" not in line or keep in line
        ]
        return b"\n".join(lines)
