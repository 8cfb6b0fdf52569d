"""Gauges computed when Prometheus scrapes: queue depths and ages from the database (here), GPU load from NVML
(``gateway.gpu_metrics``).

Both collectors fail soft: a query or NVML call that fails drops its series from that scrape (the families stay,
empty), counts one ``mediagate_scrape_errors_total{collector}`` and is logged, and ``/metrics`` still answers.
Neither has a tenant label: one tenant's backlog is a question for ``GET /v1/reviews``, not for a series per tenant.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from gateway.gpu_metrics import GpuCollector
from gateway.models import Job, Review

log = logging.getLogger(__name__)

JOB_STATES = ("queued", "running")


def age_seconds(oldest: datetime | None, now: datetime) -> float:
    """Seconds from ``oldest`` to ``now`` (0 when there is none). The gateway writes UTC; SQLite hands timestamps
    back without their zone, so a naive one is taken as UTC."""
    if oldest is None:
        return 0.0
    oldest, now = (t if t.tzinfo is not None else t.replace(tzinfo=UTC) for t in (oldest, now))
    return max(0.0, (now - oldest).total_seconds())


class QueueCollector(Collector):
    """Async jobs waiting and running, reviews pending, and how long the oldest of each has waited.

    Three aggregate queries over indexed status columns (``jobs.status``, ``reviews.status``), touching only the
    rows still waiting, per scrape."""

    def __init__(self, db: Engine, errors: Counter) -> None:
        self.db = db
        self.errors = errors

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, ...]:
        return (
            GaugeMetricFamily("mediagate_job_queue_depth", "Async jobs by state: queued (waiting for a worker) or "
                              "running.", labels=["state"]),
            GaugeMetricFamily("mediagate_job_queue_oldest_age_seconds",
                              "Age of the oldest queued async job (0 when none is queued)."),
            GaugeMetricFamily("mediagate_review_queue_depth", "Held generations waiting for a reviewer."),
            GaugeMetricFamily("mediagate_review_queue_oldest_age_seconds",
                              "Age of the oldest pending review (0 when none is pending)."),
        )

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())  # names only: registering must not query the database

    def collect(self) -> Iterator[Metric]:
        jobs, job_age, reviews, review_age = self._families()
        try:
            with Session(self.db) as session:
                by_state = dict(session.exec(
                    select(Job.status, func.count()).where(col(Job.status).in_(JOB_STATES)).group_by(Job.status)
                ).all())
                oldest_job = session.exec(select(func.min(Job.created_at)).where(Job.status == "queued")).one()
                pending, oldest_review = session.exec(
                    select(func.count(), func.min(Review.created_at)).where(Review.status == "pending")).one()
        except Exception:  # noqa: BLE001 - a scrape must answer even while the database does not
            log.warning("queue metrics unavailable for this scrape", exc_info=True)
            self.errors.labels("queues").inc()
        else:
            now = datetime.now(UTC)
            for state in JOB_STATES:
                jobs.add_metric([state], by_state.get(state, 0))
            job_age.add_metric([], age_seconds(oldest_job, now))
            reviews.add_metric([], pending)
            review_age.add_metric([], age_seconds(oldest_review, now))
        yield from (jobs, job_age, reviews, review_age)


class ScrapeCollectors(Collector):
    """The scrape-time collectors as one, followed by ``mediagate_scrape_errors_total``, so that a failure shows in
    the very scrape it happened in. ``queues`` is set once the database exists (``Metrics.track_queues``)."""

    def __init__(self, errors: Counter, gpu: GpuCollector) -> None:
        self.errors = errors  # not registered itself: reported here, after the collectors that count into it
        self.gpu = gpu
        self.queues: QueueCollector | None = None

    def describe(self) -> Iterator[Metric]:
        yield from QueueCollector._families()
        yield from self.gpu.describe()
        yield from self.errors.describe()

    def collect(self) -> Iterator[Metric]:
        queues = self.queues
        if queues is not None:
            yield from queues.collect()
        yield from self.gpu.collect()
        yield from self.errors.collect()
